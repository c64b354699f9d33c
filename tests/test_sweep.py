"""sweep_flow against a real Prefect server and a real Dask cluster; trials.py and sweep.py's helpers.

The sweeps train the README's tiny classifier (200 samples, 2-3 epochs) on one module-scoped
Dask ``LocalCluster`` (2 worker processes, one thread each) whose address is passed as
``dask_address``; the flow itself runs in the test process against the session's Prefect server
(the Dask workers get its settings through Prefect's serialized context). Each test checks what
really happened: the checkpoint directories (manifests, ``trial.json``, histories, weights
against a plain ``net.fit`` from the same seed), the flow's result, the ``<sweep>-trials`` table
artifact and the task runs the server recorded. Killing a Dask worker mid-trial is tested
elsewhere.
"""
from __future__ import annotations

import base64
import functools
import io
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator
from uuid import UUID

import numpy as np
import pytest
import torch

from prefect_server import PrefectServer
from prefect_torch import NeuralNetClassifier
from prefect_torch.examples import make_data, make_net
from prefect_torch.orchestration import sweep_flow
from prefect_torch.orchestration.sweep import DASK_ADDRESS_ENV, dask_task_runner, finished_result
from prefect_torch.orchestration.trials import (
    MAX_NAME,
    TRIAL_RECORD,
    best_of,
    best_trial,
    expand_grid,
    plan_trials,
    trial_name,
    trial_rows,
)
from test_deployment import current_epoch, read_manifest
from test_orchestration import Fault, assert_same_weights, epoch_range, read_artifacts, unique

N_SAMPLES = 200
FACTORY = "prefect_torch.examples:make_net"
DATA = "prefect_torch.examples:make_data"
FLAKY_FACTORY = "test_sweep:flaky_net"  # importable on the Dask workers: tests/ is on their sys.path
# what could tell botocore/s3fs the test server's endpoint or keys (AWS_CA_BUNDLE, AWS_REGION... cannot)
S3_SETTINGS = ("AWS_ACCESS_KEY", "AWS_SECRET", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_PROFILE",
               "AWS_DEFAULT_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "FSSPEC_S3")
COMMON = {"data": DATA, "data_params": {"n_samples": N_SAMPLES}, "epochs_per_task": 1}


# -- fixtures and helpers ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    """The scheduler of a ``LocalCluster`` of 2 worker processes with one thread each."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def run_sweep(dask_address: str, param_grid: Any, root: str | Path, **kwargs: Any) -> Any:
    """``sweep_flow`` of the README's classifier on the test cluster; its final state."""
    params = {"net_factory": FACTORY, "net_params": {"verbose": 0}, **COMMON, **kwargs}
    return sweep_flow(param_grid=param_grid, root=str(root), dask_address=dask_address, return_state=True,
                      **params)


def flaky_net(marker: str, fail_units: int, **params: Any) -> NeuralNetClassifier:
    """``make_net(**params)``; the one with ``num_units == fail_units`` fails after the first
    training batch of epoch 2 as long as the file ``marker`` exists (a cause a re-run can lack)."""
    net = make_net(**params)
    if params.get("num_units") == fail_units and os.path.exists(marker):
        net.set_params(callbacks=[("fault", Fault(epoch=2, batch=1, times=99))])
    return net


@functools.lru_cache(maxsize=None)
def plain_fit(max_epochs: int, lr: float = 0.1, num_units: int = 10) -> NeuralNetClassifier:
    """The same net trained by a plain ``net.fit`` in this process, from the sweep's seed 0."""
    torch.manual_seed(0)
    return make_net(max_epochs=max_epochs, lr=lr, num_units=num_units, verbose=0).fit(*make_data(N_SAMPLES))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def best_in(history: list[dict[str, Any]], scoring: str, higher: bool = False) -> tuple[int, float]:
    """The first best (1-based epoch, score) of ``scoring`` in a saved history."""
    scores = [row[scoring] for row in history]
    best = (max if higher else min)(scores)
    return scores.index(best) + 1, best


def flow_run_id_of(state: Any) -> str:
    return str(state.state_details.flow_run_id)


def task_runs_of(flow_run_id: str, count: int, timeout: float = 30) -> list[Any]:
    """The flow run's task runs (several share a name: every trial has an ``epoch-1``), once
    ``count`` of them reached a final state (the server records them from events)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flt = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=flt)
            final = sum(r.state is not None and r.state.is_final() for r in runs)
            if final >= count or time.monotonic() > deadline:
                return runs
            time.sleep(0.25)


def trials_with_epochs(runs: list[Any]) -> dict[str, tuple[Any, list[int]]]:
    """``{trial name: (its train-trial task run, the epochs of the task runs nested in it)}``."""
    trials = {r.name.removeprefix("trial-"): r for r in runs if r.name.startswith("trial-")}
    names = {r.id: name for name, r in trials.items()}
    epochs: dict[str, list[int]] = {name: [] for name in trials}
    for run in runs:
        if run.name.startswith("trial-"):
            continue
        (parent,) = [p.id for p in run.task_inputs.get("__parents__", [])]
        first, last = epoch_range(run.name)
        epochs[names[parent]].extend(range(first, last + 1))
    return {name: (trials[name], sorted(epochs[name])) for name in trials}


def table_rows(key: str, flow_run_id: str) -> list[dict[str, Any]]:
    """The rows of the flow run's table artifact ``key`` (updated in place as trials end)."""
    (artifact,) = read_artifacts(key, flow_run_id)
    assert artifact.type == "table"
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


def curves_artifact(key: str, flow_run_id: str) -> tuple[str, Any]:
    """The text of the flow run's ``<sweep>-curves`` markdown artifact and its image (an RGB array)."""
    from PIL import Image

    (artifact,) = read_artifacts(key, flow_run_id)
    assert artifact.type == "markdown"
    (data,) = re.findall(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", artifact.data)
    return artifact.data, np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def red_pixels(image: Any) -> int:
    """Pixels of the best trial's colour (``#d62728``) in a decoded sweep image."""
    return int((np.abs(image.astype(int) - [0xd6, 0x27, 0x28]) <= 30).all(axis=-1).sum())


def check_finished_trial(checkpoint_dir: Path, name: str, params: dict[str, Any], max_epochs: int,
                         flow_run_id: str, scoring: str = "valid_loss",
                         higher: bool = False) -> dict[str, Any]:
    """Asserts the trial's directory holds a finished training of ``max_epochs`` (manifest,
    ``trial.json``, history) by flow run ``flow_run_id``; returns the table row it makes."""
    assert current_epoch(checkpoint_dir) == max_epochs
    history = read_json(checkpoint_dir / "history.json")
    assert [row["epoch"] for row in history] == list(range(1, max_epochs + 1))
    best_epoch, best_score = best_in(history, scoring, higher)
    record = read_json(checkpoint_dir / TRIAL_RECORD)
    assert record["trial"] == name and record["params"] == params
    assert record["spec"]["max_epochs"] == max_epochs and record["spec"]["params"] == params
    assert record["state"] == "Completed" and record["finished"] is True
    assert (record["best_epoch"], record["best_score"]) == (best_epoch, best_score)
    assert record["scoring"] == scoring
    assert record["epoch"] == record["current"]["epoch"] == max_epochs
    assert record["flow_run_id"] == flow_run_id and record["attempt"] == 1
    return {"trial": name, **params, "best_epoch": best_epoch, scoring: round(best_score, 6),
            "epochs": max_epochs, "checkpoints": str(checkpoint_dir)}


def assert_rows(rows: list[dict[str, Any]], expected: dict[str, dict[str, Any]], states: dict[str, str],
                scoring: str = "valid_loss", higher: bool = False) -> None:
    """``rows`` (result or artifact) list the ``expected`` trials in name order with ``states``,
    and mark exactly the best one."""
    assert [row["trial"] for row in rows] == sorted(expected)
    for row in rows:
        assert {k: row[k] for k in expected[row["trial"]]} == expected[row["trial"]]
        assert row["state"] == states[row["trial"]]
    marked = [row["trial"] for row in rows if row["best"] == "best"]
    assert len(marked) == 1 and all(row["best"] in ("best", "") for row in rows)
    best_score = (max if higher else min)(row[scoring] for row in rows)
    assert next(row for row in rows if row["trial"] == marked[0])[scoring] == best_score


# -- 1. a grid sweep ---------------------------------------------------------------------------
def test_grid_sweep_trains_every_trial_and_reports_the_best(prefect_server: PrefectServer, tmp_path: Path,
                                                           dask_address: str):
    root = tmp_path / unique("grid")  # the sweep is named after it: artifact keys are global
    state = run_sweep(dask_address, {"lr": [0.1, 0.05], "num_units": [10, 20]}, root, max_epochs=2)
    assert state.is_completed(), state
    result, flow_run_id = state.result(), flow_run_id_of(state)
    settings = {f"lr={lr},num_units={u}": {"lr": lr, "num_units": u} for lr in (0.1, 0.05) for u in (10, 20)}
    assert sorted(p.name for p in root.iterdir()) == sorted(settings)

    expected = {name: check_finished_trial(root / name, name, params, 2, flow_run_id)
                for name, params in settings.items()}
    for name, params in settings.items():  # seed 0 wherever it ran: the weights of a plain fit
        weights = torch.load(root / name / "params.pt", weights_only=True)
        assert_same_weights(weights, plain_fit(2, **params))

    assert result["sweep"] == root.name and result["root"] == str(root) and result["scoring"] == "valid_loss"
    assert_rows(result["trials"], expected, dict.fromkeys(settings, "Completed"))
    best = min(expected, key=lambda name: expected[name]["valid_loss"])
    assert result["best"]["trial"] == best
    assert result["best"] == {"trial": best, **read_json(root / best / TRIAL_RECORD)}
    assert table_rows(f"{root.name.lower()}-trials", flow_run_id) == result["trials"]
    text, image = curves_artifact(f"{root.name.lower()}-curves", flow_run_id)  # drawn as the last trial ended
    assert image.shape == (360, 640, 3) and red_pixels(image) > 100  # the best trial's thick red line
    assert f"Best trial: **{best}**" in text and "4 of 4 trials finished" in text

    trials = trials_with_epochs(task_runs_of(flow_run_id, count=4 + 4 * 2))
    assert sorted(trials) == sorted(settings)
    for name, (run, epochs) in trials.items():
        assert run.state.is_completed() and run.run_count == 1, (name, run.state)
        assert epochs == [1, 2], name  # epoch-1, epoch-2 nested in the trial's task run


# -- 2. re-runs ----------------------------------------------------------------------------------
def test_rerun_skips_finished_trials_and_more_epochs_resume_them(prefect_server: PrefectServer,
                                                                 tmp_path: Path, dask_address: str):
    root, grid = tmp_path / unique("rerun"), {"lr": [0.1, 0.05]}
    names = {"lr=0.1": {"lr": 0.1}, "lr=0.05": {"lr": 0.05}}
    first = run_sweep(dask_address, grid, root, max_epochs=2)
    assert first.is_completed(), first
    manifests = {name: read_manifest(root / name) for name in names}
    assert all(m["next_id"] == 3 for m in manifests.values())

    again = run_sweep(dask_address, grid, root, max_epochs=2)
    assert again.is_completed(), again
    rows = again.result()["trials"]
    assert rows == [{**row, "state": "Completed earlier"} for row in first.result()["trials"]]
    assert table_rows(f"{root.name.lower()}-trials", flow_run_id_of(again)) == rows
    text, image = curves_artifact(f"{root.name.lower()}-curves", flow_run_id_of(again))  # from the stores
    assert image.shape == (360, 640, 3) and "2 of 2 trials finished" in text
    for name in names:  # nothing trained, nothing committed, the records are the first run's
        assert read_manifest(root / name) == manifests[name]
        assert read_json(root / name / TRIAL_RECORD)["flow_run_id"] == flow_run_id_of(first)

    more = run_sweep(dask_address, grid, root, max_epochs=3)  # another spec: the trials continue
    assert more.is_completed(), more
    flow_run_id = flow_run_id_of(more)
    expected = {name: check_finished_trial(root / name, name, params, 3, flow_run_id)
                for name, params in names.items()}
    assert_rows(more.result()["trials"], expected, dict.fromkeys(names, "Completed"))
    for name, params in names.items():
        manifest = read_manifest(root / name)
        assert manifest["next_id"] == 4 and manifest["versions"][:2] == manifests[name]["versions"]
        assert [v["epoch"] for v in manifest["versions"]] == [1, 2, 3]
        claim = manifest["claims"][-1]
        assert (claim["flow_run_id"], claim["epoch"], claim["target"]) == (flow_run_id, 2, 3)
        history = read_json(root / name / "history.json")
        epoch_2 = root / name / manifests[name]["versions"][1]["folder"]
        assert history[:2] == read_json(epoch_2 / "history.json")  # continued, not retrained
        assert_same_weights(torch.load(root / name / "params.pt", weights_only=True), plain_fit(3, **params))

    trials = trials_with_epochs(task_runs_of(flow_run_id, count=2 + 2))
    assert {name: epochs for name, (_, epochs) in trials.items()} == {name: [3] for name in names}
    assert task_runs_of(flow_run_id_of(again), count=0) == []  # recorded long before: none


def test_rerun_with_another_scoring_ranks_by_it(prefect_server: PrefectServer, tmp_path: Path,
                                               dask_address: str):
    root, grid = tmp_path / unique("rescore"), {"lr": [0.1, 0.05]}
    assert run_sweep(dask_address, grid, root, max_epochs=2).is_completed()
    state = run_sweep(dask_address, grid, root, max_epochs=2, scoring="valid_acc")
    assert state.is_completed(), state
    for row in state.result()["trials"]:
        history = read_json(root / row["trial"] / "history.json")
        best_epoch, best_score = best_in(history, "valid_acc", higher=True)
        assert (row["best_epoch"], row["valid_acc"]) == (best_epoch, round(best_score, 6)), row


# -- 3. a failing trial --------------------------------------------------------------------------
def test_failed_trial_leaves_the_others_and_resumes_on_rerun(prefect_server: PrefectServer, tmp_path: Path,
                                                             dask_address: str):
    root, marker = tmp_path / unique("flaky"), tmp_path / "fail"
    marker.touch()
    kwargs = {"net_factory": FLAKY_FACTORY, "max_epochs": 3, "task_retries": 0,
              "net_params": {"verbose": 0, "marker": str(marker), "fail_units": 20}}
    grid = {"num_units": [10, 20]}
    names = {"num_units=10": {"num_units": 10}, "num_units=20": {"num_units": 20}}
    key = f"{root.name.lower()}-trials"

    failed = run_sweep(dask_address, grid, root, **kwargs)
    assert failed.is_failed(), failed
    with pytest.raises(RuntimeError, match=r"1 of 2 trials failed \(num_units=20\)"):
        failed.result()
    ok = check_finished_trial(root / "num_units=10", "num_units=10", names["num_units=10"], 3,
                              flow_run_id_of(failed))
    assert not (root / "num_units=20" / TRIAL_RECORD).exists()
    assert [v["epoch"] for v in read_manifest(root / "num_units=20")["versions"]] == [1]
    rows = table_rows(key, flow_run_id_of(failed))
    assert [row["trial"] for row in rows] == ["num_units=10", "num_units=20"]
    assert rows[0]["state"] == "Completed" and rows[0]["best"] == "best"
    assert rows[0]["valid_loss"] == ok["valid_loss"]
    assert rows[1]["state"] == "Failed: RuntimeError: injected failure after batch 1 of epoch 2"
    assert rows[1]["best"] == "" and rows[1]["best_epoch"] is None
    runs = trials_with_epochs(task_runs_of(flow_run_id_of(failed), count=4 + 3))
    assert runs["num_units=10"][0].state.is_completed() and runs["num_units=10"][1] == [1, 2, 3]
    assert runs["num_units=20"][0].state.is_failed() and runs["num_units=20"][1] == [1, 2]

    marker.unlink()  # the cause is gone; same sweep, same spec
    rerun = run_sweep(dask_address, grid, root, **kwargs)
    assert rerun.is_completed(), rerun
    flow_run_id = flow_run_id_of(rerun)
    expected = {"num_units=10": ok, "num_units=20": check_finished_trial(
        root / "num_units=20", "num_units=20", names["num_units=20"], 3, flow_run_id)}
    states = {"num_units=10": "Completed earlier", "num_units=20": "Completed"}
    assert_rows(rerun.result()["trials"], expected, states)
    assert table_rows(key, flow_run_id) == rerun.result()["trials"]
    assert read_json(root / "num_units=10" / TRIAL_RECORD)["flow_run_id"] == flow_run_id_of(failed)
    manifest = read_manifest(root / "num_units=20")  # resumed after epoch 1, bit for bit
    assert [v["epoch"] for v in manifest["versions"]] == [1, 2, 3]
    assert (manifest["claims"][-1]["flow_run_id"], manifest["claims"][-1]["epoch"]) == (flow_run_id, 1)
    assert_same_weights(torch.load(root / "num_units=20" / "params.pt", weights_only=True),
                        plain_fit(3, num_units=20))
    runs = trials_with_epochs(task_runs_of(flow_run_id, count=1 + 2))
    assert list(runs) == ["num_units=20"] and runs["num_units=20"][1] == [2, 3]
    assert runs["num_units=20"][0].state.is_completed()


def test_unknown_scoring_fails_after_training_and_a_fixed_rerun_trains_nothing(
        prefect_server: PrefectServer, tmp_path: Path, dask_address: str):
    root, grid = tmp_path / unique("scoring"), {"lr": [0.1]}
    trial_dir = root / "lr=0.1"
    failed = run_sweep(dask_address, grid, root, max_epochs=2, scoring="valid_f1")
    assert failed.is_failed(), failed
    with pytest.raises(RuntimeError, match=r"1 of 1 trials failed \(lr=0\.1\)"):
        failed.result()
    (row,) = table_rows(f"{root.name.lower()}-trials", flow_run_id_of(failed))
    assert row["state"].startswith("Failed: ValueError: scoring='valid_f1' is not in the net's history")
    assert row["valid_f1"] is None and row["best"] == ""
    assert current_epoch(trial_dir) == 2 and not (trial_dir / TRIAL_RECORD).exists()
    manifest = read_manifest(trial_dir)

    fixed = run_sweep(dask_address, grid, root, max_epochs=2, scoring="valid_acc")
    assert fixed.is_completed(), fixed
    expected = check_finished_trial(trial_dir, "lr=0.1", {"lr": 0.1}, 2, flow_run_id_of(fixed), "valid_acc",
                                    higher=True)
    assert_rows(fixed.result()["trials"], {"lr=0.1": expected}, {"lr=0.1": "Completed"}, "valid_acc",
                higher=True)
    assert read_manifest(trial_dir)["versions"] == manifest["versions"]  # trained to the end already
    (run, epochs), = trials_with_epochs(task_runs_of(flow_run_id_of(fixed), count=1)).values()
    assert run.state.is_completed() and epochs == []


# -- 4. checkpoints on S3 ------------------------------------------------------------------------
def test_sweep_on_s3_with_storage_options_from_a_secret_block(prefect_server: PrefectServer, s3_server: Any,
                                                              dask_address: str):
    from distributed import Client
    from prefect.blocks.system import Secret

    with Client(dask_address) as client:  # the workers can reach S3 only through the block
        environments = client.run(lambda: sorted(k for k in os.environ if k.startswith(S3_SETTINGS)))
    assert all(keys == [] for keys in environments.values()), environments
    # (nor can a config file know them: the server's secret key is new in every session)
    block = unique("sweep-s3")
    Secret(value=s3_server.storage_options()).save(block, overwrite=True)
    sweep = unique("s3")
    root = s3_server.url(f"sweeps/{sweep}")
    grid = {"lr": [0.1, 0.05]}

    state = run_sweep(dask_address, grid, root, max_epochs=2, scoring="valid_acc", storage_block=block)
    assert state.is_completed(), state
    fs = s3_server.filesystem()
    prefix = root.removeprefix("s3://")
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(prefix)) == ["lr=0.05", "lr=0.1"]
    rows = state.result()["trials"]
    for row in rows:
        manifest = json.loads(fs.cat(f"{prefix}/{row['trial']}/manifest.json"))
        assert [v["epoch"] for v in manifest["versions"]] == [1, 2] and manifest["current"] == 2
        record = json.loads(fs.cat(f"{prefix}/{row['trial']}/{TRIAL_RECORD}"))
        history = json.loads(fs.cat(f"{prefix}/{row['trial']}/history.json"))
        assert (record["best_epoch"], record["best_score"]) == best_in(history, "valid_acc", higher=True)
        assert (row["state"], row["best_epoch"], row["checkpoints"]) == ("Completed", record["best_epoch"],
                                                                         f"{root}/{row['trial']}")
    best = max(rows, key=lambda row: row["valid_acc"])["valid_acc"]
    assert [row["valid_acc"] for row in rows if row["best"] == "best"] == [best]
    text, image = curves_artifact(f"{sweep}-curves", flow_run_id_of(state))  # histories read from S3
    best_name = next(row["trial"] for row in rows if row["best"] == "best")
    assert image.shape == (360, 640, 3) and red_pixels(image) > 100
    assert f"# Sweep `{sweep}`: valid_acc of each trial" in text and f"Best trial: **{best_name}**" in text
    assert "2 of 2 trials finished" in text

    again = run_sweep(dask_address, grid, root, max_epochs=2, scoring="valid_acc", storage_block=block)
    assert again.is_completed(), again  # the flow read the trial records through the block too
    assert [row["state"] for row in again.result()["trials"]] == ["Completed earlier"] * 2


# -- 5. trials.py and sweep.py helpers, no server ------------------------------------------------
def test_expand_grid_takes_dicts_lists_scalars_and_drops_duplicates():
    assert expand_grid({"lr": [0.1, 0.2], "num_units": 10}) == [
        {"lr": 0.1, "num_units": 10}, {"lr": 0.2, "num_units": 10}]
    assert expand_grid({"lr": (0.1,), "nonlinearity": [None, "relu"]}) == [
        {"lr": 0.1, "nonlinearity": None}, {"lr": 0.1, "nonlinearity": "relu"}]
    assert expand_grid([{"lr": 0.1}, {"lr": [0.1, 0.2], "max_epochs": 3}, {"lr": [0.1]}]) == [
        {"lr": 0.1}, {"lr": 0.1, "max_epochs": 3}, {"lr": 0.2, "max_epochs": 3}]
    assert expand_grid({}) == [{}]
    for bad in ([], [0.1], "lr", [{"lr": 0.1}, 3]):
        with pytest.raises(ValueError, match="dict of lists"):
            expand_grid(bad)


@pytest.mark.parametrize("values", [range(10, 30, 10), np.array([10, 20])], ids=["range", "ndarray"])
def test_expand_grid_takes_any_sequence_of_values(values: Any):
    assert expand_grid({"num_units": values}) == [{"num_units": 10}, {"num_units": 20}]


def test_numpy_values_make_plain_trials():
    (trial,) = plan_trials({"num_units": [np.int64(10)]}, "runs/s")
    assert trial.name == "num_units=10"
    assert json.loads(json.dumps(trial.params)) == {"num_units": 10}


def test_trial_names_are_stable_unique_and_safe():
    assert trial_name({"num_units": 20, "lr": 0.1}) == trial_name({"lr": 0.1, "num_units": 20}) \
        == "lr=0.1,num_units=20"
    assert trial_name({}) == "default"
    # the directory of a setting must not change between runs (or versions): a fixed hash
    assert trial_name({"path": "a/b"}) == "path=a_b-93c752d7"
    settings = [{"lr": 1}, {"lr": 1.0}, {"lr": 0.1}, {"lr": True}, {"lr": None},
                {"opt": "torch.optim:SGD"}, {"opt": "torch.optim_SGD"}, {"path": "a/b"}, {"path": "a_b"},
                {"path": "../up"}, {"lr": 0.1, "num_units": 10}, {"lr": [1, 2]}]
    names = [trial_name(s) for s in settings]
    assert len(set(names)) == len(names), names
    for name in names:  # one directory level, no characters a shell or a URL would mangle
        assert all(c.isalnum() or c in "._=,+-" for c in name), name
    assert names[5].startswith("opt=torch.optim_SGD-") and names[6] == "opt=torch.optim_SGD"
    assert names[-1].startswith("lr=_1,_2_-")  # JSON text of a list, sanitized and hashed
    long_a, long_b = ({"name": "x" * 200 + end} for end in "ab")
    assert len(trial_name(long_a)) == MAX_NAME and trial_name(long_a) != trial_name(long_b)


def test_trial_names_tell_strings_from_numbers():
    assert trial_name({"lr": "0.1"}) != trial_name({"lr": 0.1})
    trials = plan_trials({"lr": [0.1, "0.1"]}, "runs/s")
    assert len({t.checkpoint_dir for t in trials}) == 2


def test_plan_trials_sorts_names_and_carries_the_spec():
    trials = plan_trials({"lr": [0.1, 0.05]}, "s3://bucket/sweeps/one/", {"max_epochs": 3})
    assert [t.name for t in trials] == ["lr=0.05", "lr=0.1"]
    assert [t.checkpoint_dir for t in trials] == ["s3://bucket/sweeps/one/lr=0.05", "s3://bucket/sweeps/one/lr=0.1"]
    assert trials[1].spec == {"max_epochs": 3, "params": {"lr": 0.1}}
    assert trials[1].matches({"spec": {"max_epochs": 3, "params": {"lr": 0.1}}})
    assert not trials[1].matches({"spec": {"max_epochs": 4, "params": {"lr": 0.1}}})
    assert not trials[1].matches(None) and not trials[1].matches({})


@pytest.mark.parametrize("scores, scoring, lower, expected", [
    ([0.5, 0.3, 0.4], "valid_loss", None, (2, 0.3)),
    ([0.5, 0.3, 0.4], "valid_acc", None, (1, 0.5)),
    ([0.5, 0.3, 0.4], "valid_acc", True, (2, 0.3)),
    ([0.5, 0.3, 0.4], "train_loss", False, (1, 0.5)),
    ([None, float("nan"), 0.7, 0.2, 0.2], "valid_loss", None, (4, 0.2)),  # missing skipped; ties: earliest
    ([float("nan"), 1], "valid_acc", None, (2, 1.0)),
    ([None, float("nan")], "valid_loss", None, (None, None)),
    ([], "valid_loss", None, (None, None)),
])
def test_best_of(scores: list[Any], scoring: str, lower: bool | None, expected: tuple[Any, Any]):
    assert best_of(scores, scoring, lower) == expected


def test_best_trial_and_rows():
    trials = plan_trials({"lr": [0.1, 0.05, 0.01], "module__layers": [[10, 10]]}, "runs/s")
    names = [t.name for t in trials]
    done = {"finished": True, "epoch": 3, "state": "Completed"}
    results = {names[0]: {**done, "best_epoch": 2, "best_score": 0.41234567},
               names[1]: {**done, "best_epoch": 3, "best_score": 0.3, "state": "Completed earlier"},
               names[2]: {"state": "Failed: RuntimeError: boom", "best_score": 0.1}}  # not finished
    assert best_trial(results, "valid_loss") == names[1]
    assert best_trial(results, "valid_loss", lower_is_better=False) == names[0]
    assert best_trial(results, "valid_acc") == names[0]
    assert best_trial({names[0]: {**done, "best_score": None}}, "valid_loss") is None
    assert best_trial({}, "valid_loss") is None

    rows = trial_rows(trials, results, "valid_loss")
    assert rows[0] == {"trial": names[0], "best": "", "state": "Completed", "lr": 0.01,
                       "module__layers": "[10, 10]", "best_epoch": 2, "valid_loss": 0.412346, "epochs": 3,
                       "checkpoints": f"runs/s/{names[0]}"}
    assert [row["best"] for row in rows] == ["", "best", ""]
    assert [row["state"] for row in rows] == ["Completed", "Completed earlier", "Failed: RuntimeError: boom"]
    pending = trial_rows(trials, {}, "valid_acc")
    assert [(r["state"], r["best"], r["best_epoch"], r["valid_acc"], r["epochs"]) for r in pending] \
        == [("Pending", "", None, None, None)] * 3


def test_finished_result_needs_a_record_of_the_same_spec(tmp_path: Path):
    (trial,) = plan_trials({"lr": [0.1]}, str(tmp_path), {"max_epochs": 3})
    assert finished_result(trial, {}) is None  # no directory yet
    Path(trial.checkpoint_dir).mkdir()
    record_path = Path(trial.checkpoint_dir) / TRIAL_RECORD
    record_path.write_text("{not json")
    assert finished_result(trial, {}) is None
    record = {"trial": trial.name, "spec": trial.spec, "state": "Completed", "finished": True,
              "best_score": 0.3}
    record_path.write_text(json.dumps(record))
    assert finished_result(trial, {}) == {**record, "state": "Completed earlier"}
    record_path.write_text(json.dumps({**record, "spec": {**trial.spec, "max_epochs": 2}}))
    assert finished_result(trial, {}) is None


def test_dask_task_runner_address(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(DASK_ADDRESS_ENV, raising=False)
    local = dask_task_runner(None, 3)
    assert local.address is None
    assert local.cluster_kwargs["n_workers"] == 3 and local.cluster_kwargs["threads_per_worker"] == 1
    assert local.cluster_kwargs["processes"] is True
    assert dask_task_runner("tcp://10.0.0.1:8786", 3).address == "tcp://10.0.0.1:8786"
    monkeypatch.setenv(DASK_ADDRESS_ENV, "tcp://10.0.0.2:8786")
    assert dask_task_runner(None, 3).address == "tcp://10.0.0.2:8786"
    assert dask_task_runner("tcp://10.0.0.1:8786", 3).address == "tcp://10.0.0.1:8786"  # the argument wins
    monkeypatch.setenv(DASK_ADDRESS_ENV, "")
    assert dask_task_runner(None, 3).address is None


def test_an_address_other_than_the_default_client_s_is_refused():
    """prefect-dask sends tasks to the process's default Dask client whatever address it is
    given; a sweep told to use another cluster must not silently train on that one."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as asked, \
            LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as other:
        assert dask_task_runner(asked.scheduler_address, 1).address == asked.scheduler_address
        with Client(other):
            with pytest.raises(ValueError, match="default Dask client of .*set_as_default=False"):
                dask_task_runner(asked.scheduler_address, 1)
            assert dask_task_runner(other.scheduler_address, 1).address == other.scheduler_address
        with Client(other, set_as_default=False):
            assert dask_task_runner(asked.scheduler_address, 1).address == asked.scheduler_address
