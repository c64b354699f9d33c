"""A sweep survives a Dask worker process killed mid-trial, with checkpoints on a real S3 server.

A 4-trial ``sweep_flow`` runs on its own ``LocalCluster`` of 2 worker processes against the
session's Prefect server, its checkpoints in the SeaweedFS bucket (credentials and endpoint from
the environment the workers inherit). When one trial has committed its third epoch, the worker
process training it is killed with SIGKILL. Dask's nanny starts a new worker and the scheduler
runs the trial again; it must resume from its last commit (no epoch committed twice, at most
the one in flight trained again), the sweep must finish, and the trial's final weights must
equal those of the same trial trained without interruption (plain ``net.fit`` here).
"""
from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
from typing import Any

import pytest
import torch

from helpers import assert_same_state
from prefect_server import PrefectServer
from s3_server import S3Server

pytest.importorskip("prefect_dask")

FACTORY, DATA = "prefect_torch.examples:make_net", "prefect_torch.examples:make_data"
GRID = {"lr": [0.1, 0.05], "num_units": [10, 20]}
EPOCHS = 12
DATA_PARAMS = {"n_samples": 2000}
KILL_AFTER_EPOCH = 3


def current_epoch(fs: Any, trial_dir: str) -> int:
    try:
        manifest = json.loads(fs.cat_file(f"{trial_dir}/manifest.json"))
    except (FileNotFoundError, ValueError):
        return 0
    return next((v["epoch"] for v in manifest["versions"] if v["id"] == manifest["current"]), 0)


class WorkerKiller:
    """Kills (SIGKILL) the process training the first trial of ``trial_dirs`` that has committed
    ``after_epoch`` epochs but not all of them; its pid is in the trial's latest claim."""

    def __init__(self, fs: Any, trial_dirs: dict[str, str], after_epoch: int):
        self.fs, self.trial_dirs, self.after_epoch = fs, trial_dirs, after_epoch
        self.killed: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "WorkerKiller":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for name, trial_dir in self.trial_dirs.items():
                self.fs.invalidate_cache()
                epoch = current_epoch(self.fs, trial_dir)
                if self.after_epoch <= epoch < EPOCHS:
                    manifest = json.loads(self.fs.cat_file(f"{trial_dir}/manifest.json"))
                    pid = manifest["claims"][-1]["pid"]
                    assert pid != os.getpid(), "the trial ran in the test process, not on a Dask worker"
                    os.kill(pid, signal.SIGKILL)
                    self.killed = {"trial": name, "pid": pid, "epoch": epoch}
                    return
            time.sleep(0.05)


def load_final_params(fs: Any, trial_dir: str) -> dict[str, torch.Tensor]:
    manifest = json.loads(fs.cat_file(f"{trial_dir}/manifest.json"))
    current = next(v for v in manifest["versions"] if v["id"] == manifest["current"])
    name = next(n for n, f in current["files"].items() if f["key"] == "f_params")
    return torch.load(io.BytesIO(fs.cat_file(f"{trial_dir}/{current['folder']}/{name}")), weights_only=True)


def undisturbed_params(params: dict[str, Any], tmp_path: Any) -> dict[str, torch.Tensor]:
    """The trial trained in one go, as a trial does it (seeded, same factory and data), by plain ``fit``."""
    from prefect_torch.examples import make_data
    from prefect_torch.orchestration.flows import prepare_net
    from prefect_torch.orchestration.sweep import seed_everything

    seed_everything(0)
    net = prepare_net(FACTORY, {"verbose": 0, **params}, str(tmp_path / "undisturbed"), EPOCHS)
    net.fit(*make_data(**DATA_PARAMS))
    return {k: v.detach().clone() for k, v in net.module_.state_dict().items()}


@pytest.mark.timeout(600)
def test_a_killed_worker_s_trial_resumes_from_its_last_commit(prefect_server: PrefectServer, s3_server: S3Server,
                                                               tmp_path: Any, monkeypatch: pytest.MonkeyPatch):
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterName,
    )

    from prefect_torch.orchestration import sweep_flow
    from prefect_torch.orchestration.trials import plan_trials

    for name, value in s3_server.env().items():  # what the Dask workers inherit: S3 through the environment
        monkeypatch.setenv(name, value)
    root = s3_server.url(f"sweeps/kill-{os.getpid()}-{time.time_ns()}")
    fs = s3_server.filesystem()
    trial_dirs = {t.name: t.checkpoint_dir for t in plan_trials(GRID, root)}

    with WorkerKiller(fs, trial_dirs, KILL_AFTER_EPOCH) as killer:
        state = sweep_flow(FACTORY, DATA, GRID, root, max_epochs=EPOCHS, net_params={"verbose": 0},
                           data_params=DATA_PARAMS, n_workers=2, return_state=True)
    assert killer.killed is not None, "no trial was caught mid-training: nothing was killed"
    assert state.is_completed(), state
    result = state.result()
    assert [row["state"] for row in result["trials"]] == ["Completed"] * 4
    assert all(row["epochs"] == EPOCHS for row in result["trials"])

    killed = killer.killed["trial"]
    fs.invalidate_cache()
    manifest = json.loads(fs.cat_file(f"{trial_dirs[killed]}/manifest.json"))
    # one claim when the trial started, one when Dask ran it again on the new worker
    claims = [(c["pid"], c["epoch"], bool(c.get("finished"))) for c in manifest["claims"]]
    assert len(claims) == 2 and claims[0] == (killer.killed["pid"], 0, False), claims
    resumed_from = claims[1][1]
    assert killer.killed["epoch"] <= resumed_from < EPOCHS and claims[1][2], claims
    assert claims[1][0] != killer.killed["pid"]
    # version ids count commits: one per epoch, so no epoch was committed twice
    assert manifest["next_id"] == EPOCHS + 1
    record = json.loads(fs.cat_file(f"{trial_dirs[killed]}/trial.json"))
    assert record["epoch"] == EPOCHS and record["current"]["epoch"] == EPOCHS
    history = json.loads(fs.cat_file(f"{trial_dirs[killed]}/history.json"))
    assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))

    # Prefect shows the trial as one task run (Dask ran it again under the same id), Completed
    with prefect_server.client() as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[f"trial-{killed}"])))
    assert [r.state.type.value for r in runs] == ["COMPLETED"], [(r.name, r.state) for r in runs]

    params = next(t.params for t in plan_trials(GRID, root) if t.name == killed)
    assert_same_state(load_final_params(fs, trial_dirs[killed]), undisturbed_params(params, tmp_path))
