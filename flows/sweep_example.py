"""A hyperparameter sweep of the example classifier: every setting a trial, trials in parallel on Dask.

    python flows/sweep_example.py                          # 4 trials on a LocalCluster of 2 workers
    python flows/sweep_example.py                          # again: every trial finished, all skipped
    python flows/sweep_example.py --max-epochs 15          # every trial resumes and trains 11-15
    python flows/sweep_example.py --root s3://bucket/sweeps/example    # checkpoints on S3 (AWS_* env)
    python flows/sweep_example.py --dask-address tcp://10.0.0.5:8786   # an existing Dask cluster

Each trial trains into ``<root>/<trial>`` (e.g. ``checkpoints/sweeps/example/lr=0.1,num_units=20``)
and commits a checkpoint every epoch; a trial whose worker dies is run again by Dask and resumes
from its last commit. The flow's ``example-trials`` artifact is the table of trials, the best one
marked. It needs a Prefect API: ``bash scripts/demo.sh`` starts a local server when none is set.

Deployed by ``deploy/sweep.yaml`` (see the README, "Run on several machines").
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from prefect import flow

from prefect_torch.orchestration import sweep_flow

NET_FACTORY = "prefect_torch.examples:make_net"
DATA = "prefect_torch.examples:make_data"
CHECKPOINTS_ENV = "PREFECT_TORCH_CHECKPOINTS"
GRID = {"lr": [0.1, 0.05], "num_units": [10, 20]}


def default_root(sweep: str) -> str:
    """``$PREFECT_TORCH_CHECKPOINTS/sweeps/<sweep>``, or ``checkpoints/sweeps/<sweep>`` without it."""
    base = (os.environ.get(CHECKPOINTS_ENV) or "checkpoints").rstrip("/")
    return f"{base}/sweeps/{sweep}"


@flow(name="sweep-nets", persist_result=True, result_serializer="json")
def sweep_example(sweep: str = "example", root: str | None = None, param_grid: dict[str, Any] | None = None,
                  max_epochs: int = 10, dask_address: str | None = None, n_workers: int = 2,
                  storage_block: str | None = None, net_factory: str = NET_FACTORY, data: str = DATA,
                  net_params: dict[str, Any] | None = None, data_params: dict[str, Any] | None = None,
                  scoring: str = "valid_loss") -> dict[str, Any]:
    """Run ``sweep_flow`` over ``param_grid`` (default: lr x num_units, 4 trials) into ``root``
    (default ``$PREFECT_TORCH_CHECKPOINTS/sweeps/<sweep>``); returns its table and best trial."""
    return sweep_flow.fn(net_factory=net_factory, data=data, param_grid=param_grid or GRID,
                         root=root or default_root(sweep), sweep=sweep, scoring=scoring, max_epochs=max_epochs,
                         net_params={"verbose": 0, **(net_params or {})}, data_params=data_params,
                         dask_address=dask_address, n_workers=n_workers, storage_block=storage_block)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", default="example")
    parser.add_argument("--root", default=None, help=f"default: ${CHECKPOINTS_ENV}/sweeps/<sweep>")
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--dask-address", default=None, help="a running Dask scheduler (default: a LocalCluster)")
    parser.add_argument("--n-workers", type=int, default=2)
    args = parser.parse_args(argv)
    result = sweep_example(sweep=args.sweep, root=args.root, max_epochs=args.max_epochs,
                           dask_address=args.dask_address, n_workers=args.n_workers)
    for row in result["trials"]:
        mark = "*" if row["best"] else " "
        print(f"{mark} {row['trial']:<28} {row['state']:<18} best epoch {row['best_epoch']}, "
              f"{result['scoring']} {row[result['scoring']]}")
    print(f"best: {result['best']['trial']}; checkpoints under {result['root']}")
    return result


if __name__ == "__main__":
    main()
