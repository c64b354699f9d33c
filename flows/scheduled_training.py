"""A scheduled training flow: every run trains the example classifier a bit further.

Run it once, here and now (no server needed; a temporary one starts by itself):

    python flows/scheduled_training.py                        # experiment "nightly", epochs 1-10
    python flows/scheduled_training.py                        # again: already there, trains nothing
    python flows/scheduled_training.py --resume extend        # 10 epochs more (11-20)
    PREFECT_TORCH_CHECKPOINTS=/data/ckpt python flows/scheduled_training.py

Deploy it (cron schedule, process work pool, one run of the deployment at a time), from the
repository root, against a running server (see deploy/README.md for all the commands):

    prefect work-pool create local-training --type process
    prefect --no-prompt deploy --prefect-file deploy/prefect.yaml --all
    prefect automation create --from-file deploy/resume-crashed-runs.yaml
    prefect worker start --pool local-training

The flow is ``train_flow`` of :mod:`prefect_torch.orchestration` (Prefect flow name
``train-net``) with defaults for a nightly job: its body is ``train_flow``'s own function, so a
run is one flow run (no subflow) and a crashed run restarted by the automation resumes its own
progress. Checkpoints go to ``checkpoint_dir``, by default ``$PREFECT_TORCH_CHECKPOINTS/<experiment>``
(``./checkpoints/<experiment>`` without the variable; relative to the flow's working directory,
the repository for the deployment).
"""
from __future__ import annotations

import argparse
import os
from typing import Any

from prefect import flow

from prefect_torch.orchestration import train_flow

NET_FACTORY = "prefect_torch.examples:make_net"
DATA = "prefect_torch.examples:make_data"
CHECKPOINTS_ENV = "PREFECT_TORCH_CHECKPOINTS"


def default_checkpoint_dir(experiment: str) -> str:
    """``$PREFECT_TORCH_CHECKPOINTS/<experiment>``, or ``checkpoints/<experiment>`` without it."""
    return os.path.join(os.environ.get(CHECKPOINTS_ENV) or "checkpoints", experiment)


@flow(name="train-net", persist_result=True, result_serializer="json")
def scheduled_training(experiment: str = "nightly", checkpoint_dir: str | None = None,
                       max_epochs: int | None = 10, resume: str = "latest", epochs_per_task: int | str = 1,
                       task_retries: int = 2, max_resumes: int = 3, net_factory: str = NET_FACTORY,
                       data: str = DATA, net_params: dict[str, Any] | None = None,
                       data_params: dict[str, Any] | None = None,
                       storage_block: str | None = None) -> dict[str, Any]:
    """Train ``experiment`` with checkpoints in ``checkpoint_dir`` (default
    ``$PREFECT_TORCH_CHECKPOINTS/<experiment>``, else ``checkpoints/<experiment>``).

    ``resume="latest"`` trains up to ``max_epochs`` in all, so once there, runs do nothing;
    ``"extend"`` trains ``max_epochs`` more epochs on every run (continual training, what
    ``deploy/prefect.yaml`` schedules); ``"never"`` starts over. A crashed
    run restarted by Prefect (same flow run, next attempt) finishes the epochs it set out to
    train, under either policy. ``storage_block`` names the Prefect block with the S3
    credentials (a Secret, or ``aws-credentials/NAME``, ``minio-credentials/NAME``,
    ``s3-bucket/NAME``: see deploy/README.md). Returns ``train_flow``'s training record (JSON).
    """
    return train_flow.fn(net_factory=net_factory, data=data,
                         checkpoint_dir=checkpoint_dir or default_checkpoint_dir(experiment),
                         experiment=experiment, max_epochs=max_epochs, resume=resume,
                         epochs_per_task=epochs_per_task, task_retries=task_retries, max_resumes=max_resumes,
                         net_params=net_params, data_params=data_params, storage_block=storage_block)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="nightly")
    parser.add_argument("--checkpoint-dir", default=None,
                        help=f"default: ${CHECKPOINTS_ENV}/<experiment>, else checkpoints/<experiment>")
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--resume", choices=["latest", "extend", "never"], default="latest")
    args = parser.parse_args(argv)
    record = scheduled_training(experiment=args.experiment, checkpoint_dir=args.checkpoint_dir,
                                max_epochs=args.max_epochs, resume=args.resume)
    trained = "epochs {}-{}".format(*record["trained_epochs"]) if record["trained_epochs"] else "nothing"
    print(f"experiment {record['experiment']!r}: trained {trained}, now at epoch {record['epoch']}; "
          f"checkpoints in {record['checkpoint_dir']}")
    return record


if __name__ == "__main__":
    main()
