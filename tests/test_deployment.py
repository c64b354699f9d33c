"""The shipped deployment (deploy/prefect.yaml) and crash automation (deploy/resume-crashed-runs.yaml)
end to end: ``prefect deploy`` against a real server, a process worker, scheduled runs, and a
flow-run process killed with SIGKILL that the automation restarts.

Each test deploys a temporary copy of deploy/prefect.yaml in which only what a test must change
is changed: the work pool (one per test), the deployment name, the schedule (a short interval
instead of the nightly cron, or switched off), the checkpoint directory (a temporary one), and
a small number of epochs. The automation is created from the shipped file with the CLI.

Slow (1-3 minutes each on a 2-core machine): flow runs start as subprocesses of the worker and
import torch and prefect first (10-30 s).
"""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import yaml

from prefect_server import PrefectServer

pytest.importorskip("prefect")

REPO = pathlib.Path(__file__).resolve().parents[1]
PREFECT_YAML = REPO / "deploy" / "prefect.yaml"
AUTOMATION_YAML = REPO / "deploy" / "resume-crashed-runs.yaml"
FLOW_NAME = "train-net"
WORKER_ENV = {"OMP_NUM_THREADS": "1"}  # the flow runs share 2 cores with the server and the worker

SLOW_TIMEOUT = 900  # seconds per slow test (pytest-timeout; the default is 300)


# -- helpers -----------------------------------------------------------------------------------


def prefect_cli(server: PrefectServer, *args: str, timeout: float = 180) -> str:
    """``prefect --no-prompt ARGS`` from the repository root against ``server``; its output."""
    result = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", *args], cwd=REPO,
                            env=server.subprocess_env({"COLUMNS": "200"}), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"prefect {' '.join(args)} exited {result.returncode}:\n{output}"
    return output


def deploy_copy(server: PrefectServer, tmp_path: pathlib.Path, *, pool: str, name: str,
                parameters: dict[str, Any], schedule: dict[str, Any] | None) -> Any:
    """``prefect deploy --all`` of a copy of deploy/prefect.yaml (see the module docstring);
    returns the deployment as the server has it."""
    config = yaml.safe_load(PREFECT_YAML.read_text())
    (deployment,) = config["deployments"]
    deployment["name"] = name
    deployment["work_pool"]["name"] = pool
    deployment["parameters"].update(parameters)
    if schedule is None:
        for entry in deployment["schedules"]:
            entry["active"] = False
    else:
        deployment["schedules"] = [schedule]
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    output = prefect_cli(server, "deploy", "--prefect-file", str(path), "--all")
    assert f"Deployment '{FLOW_NAME}/{name}' successfully created" in " ".join(output.split())
    with server.client() as client:
        return client.read_deployment_by_name(f"{FLOW_NAME}/{name}")


def runs_of(server: PrefectServer, deployment_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with server.client() as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def record_of(flow_run: Any) -> dict[str, Any]:
    """The training record a completed run of train_flow returned (persisted as JSON)."""
    return flow_run.state.result()


def read_manifest(checkpoint_dir: pathlib.Path) -> dict[str, Any]:
    return json.loads((checkpoint_dir / "manifest.json").read_text())


def current_epoch(checkpoint_dir: pathlib.Path) -> int:
    try:
        manifest = read_manifest(checkpoint_dir)
    except (OSError, ValueError):  # not written yet (or being replaced: the rename is atomic)
        return 0
    current = [v["epoch"] for v in manifest["versions"] if v["id"] == manifest["current"]]
    return current[0] if current else 0


def wait_for(condition, timeout: float, what: str, worker: Any, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{worker.log_tail(80)}")
        time.sleep(interval)


def state_history(server: PrefectServer, flow_run_id: Any) -> list[tuple[str, str, str]]:
    with server.client() as client:
        states = client.read_flow_run_states(flow_run_id)
    return [(s.type.value, s.name or "", s.message or "") for s in sorted(states, key=lambda s: s.timestamp)]


@pytest.fixture
def cleanup(prefect_server: PrefectServer):
    """Deletes the deployments and automations a test registers here (their runs go with them)."""
    created: dict[str, list[Any]] = {"deployments": [], "automations": []}
    yield created
    with prefect_server.client() as client:
        for deployment_id in created["deployments"]:
            try:
                client.delete_deployment(deployment_id)
            except Exception:  # best effort: the server lives for the session
                pass
        for automation_id in created["automations"]:
            try:
                client.delete_automation(automation_id)
            except Exception:
                pass


# -- the shipped files ---------------------------------------------------------------------------


def test_shipped_files_say_what_the_readme_says():
    """Fast checks of the shipped configuration (the slow tests below run it)."""
    config = yaml.safe_load(PREFECT_YAML.read_text())
    (deployment,) = config["deployments"]
    assert deployment["entrypoint"] == "flows/scheduled_training.py:scheduled_training"
    assert deployment["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC", "active": True}]
    assert deployment["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert deployment["work_pool"]["name"] == "local-training"
    assert deployment["parameters"]["resume"] in ("extend", "latest")
    assert "resume-on-crash" in deployment["tags"]
    assert config["pull"] == [{"prefect.deployments.steps.set_working_directory":
                               {"directory": "{{ repo-root.stdout }}"}}]

    automation = yaml.safe_load(AUTOMATION_YAML.read_text())
    trigger, (action,) = automation["trigger"], automation["actions"]
    assert trigger["after"] == ["prefect.flow-run.Crashed"] and trigger["posture"] == "Proactive"
    assert {"prefect.resource.id": "prefect.tag.resume-on-crash"} in trigger["match_related"]
    assert action == {**action, "type": "change-flow-run-state", "state": "SCHEDULED",
                      "name": "AwaitingRetry", "force": True}

    from prefect.events.schemas.automations import AutomationCore

    AutomationCore.model_validate(automation)  # what `prefect automation create --from-file` sends

    sys.path.insert(0, str(REPO / "flows"))
    try:
        import scheduled_training
    finally:
        sys.path.remove(str(REPO / "flows"))
    assert scheduled_training.scheduled_training.name == FLOW_NAME
    assert scheduled_training.default_checkpoint_dir("x") == os.path.join(
        os.environ.get("PREFECT_TORCH_CHECKPOINTS") or "checkpoints", "x")


# -- scheduled runs through a process worker ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TIMEOUT)
@pytest.mark.parametrize("resume", ["extend", "latest"])
def test_scheduled_runs_continue_the_experiment(prefect_server: PrefectServer, tmp_path: pathlib.Path,
                                                cleanup: dict[str, list[Any]], resume: str):
    """Two runs of the schedule, one after the other (concurrency limit 1): with resume="extend"
    the second trains max_epochs more epochs from where the first stopped; with "latest" the
    experiment is already at max_epochs, so the second trains nothing."""
    epochs = 3
    checkpoint_dir = tmp_path / "checkpoints" / "nightly"
    pool = f"sched-{resume}"
    with prefect_server.work_pool(pool, env=WORKER_ENV) as worker:
        deployment = deploy_copy(prefect_server, tmp_path, pool=pool, name=f"nightly-{resume}",
                                 parameters={"checkpoint_dir": str(checkpoint_dir), "max_epochs": epochs,
                                             "resume": resume},
                                 schedule={"interval": 10, "timezone": "UTC", "active": True})
        cleanup["deployments"].append(deployment.id)
        assert deployment.global_concurrency_limit.limit == 1
        assert deployment.concurrency_options.collision_strategy.value == "ENQUEUE"
        assert deployment.pull_steps == [{"prefect.deployments.steps.set_working_directory":
                                          {"directory": str(REPO)}}]

        def two_completed():
            runs = runs_of(prefect_server, deployment.id)
            broken = [r for r in runs if r.state and r.state.type.value in ("FAILED", "CRASHED")]
            assert not broken, (f"{broken[0].name}: {broken[0].state.type.value} {broken[0].state.message}\n"
                                f"{worker.log_tail(80)}")
            done = [r for r in runs if r.state and r.state.is_completed()]
            return sorted(done, key=lambda r: r.end_time)[:2] if len(done) >= 2 else None

        first, second = wait_for(two_completed, 420, "two completed scheduled runs", worker, interval=1)

    assert first.auto_scheduled and second.auto_scheduled  # created by the schedule
    assert second.start_time >= first.end_time  # concurrency_limit 1: one run at a time
    a, b = record_of(first), record_of(second)
    assert a["experiment"] == b["experiment"] == "nightly"
    assert a["trained_epochs"] == [1, epochs] and a["epoch"] == epochs and a["attempt"] == 1
    manifest = read_manifest(checkpoint_dir)
    finished = [c for c in manifest["claims"] if c.get("finished")]
    assert [c["flow_run_id"] for c in finished[:2]] == [str(first.id), str(second.id)]
    # version ids count commits: version == epoch means one commit per epoch, none repeated
    assert a["current"]["epoch"] == a["current"]["version"] == epochs
    if resume == "extend":
        assert b["trained_epochs"] == [epochs + 1, 2 * epochs] and b["epoch"] == 2 * epochs
        assert b["current"]["epoch"] == b["current"]["version"] == 2 * epochs
    else:
        assert b["trained_epochs"] == [] and b["epoch"] == epochs and b["tasks"] == 0
        assert b["current"] == a["current"]  # nothing committed


# -- a crash, and the automation that re-runs the run ----------------------------------------------


def run_once(prefect_server: PrefectServer, tmp_path: pathlib.Path, cleanup: dict[str, list[Any]], pool: str,
             experiment: str, checkpoint_dir: pathlib.Path, epochs: int) -> Any:
    """Deploy the shipped deployment without a schedule (as ``nightly-<experiment>``) and start one
    run of it, with epochs long enough (6,000 samples) to act on while it trains."""
    deployment = deploy_copy(prefect_server, tmp_path, pool=pool, name=f"nightly-{experiment}",
                             parameters={"checkpoint_dir": str(checkpoint_dir), "max_epochs": epochs,
                                         "experiment": experiment, "data_params": {"n_samples": 6000}},
                             schedule=None)
    cleanup["deployments"].append(deployment.id)
    with prefect_server.client() as client:
        return client.create_flow_run_from_deployment(deployment.id)


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TIMEOUT)
def test_killed_run_is_restarted_by_the_automation_and_resumes(prefect_server: PrefectServer,
                                                               tmp_path: pathlib.Path,
                                                               cleanup: dict[str, list[Any]]):
    """SIGKILL the flow-run process of a deployment run mid-training: the worker reports it
    Crashed, the automation of deploy/resume-crashed-runs.yaml puts the same flow run back to
    Scheduled (AwaitingRetry), the worker runs it again as attempt 2, and it resumes from the last
    committed epoch to max_epochs: every epoch committed exactly once."""
    epochs = 8
    checkpoint_dir = tmp_path / "checkpoints" / "crash"
    pool = "crash"
    prefect_cli(prefect_server, "automation", "create", "--from-file", str(AUTOMATION_YAML))
    with prefect_server.client() as client:
        (automation,) = client.read_automations_by_name(yaml.safe_load(AUTOMATION_YAML.read_text())["name"])
    cleanup["automations"].append(automation.id)
    assert automation.enabled

    with prefect_server.work_pool(pool, env=WORKER_ENV) as worker:
        flow_run = run_once(prefect_server, tmp_path, cleanup, pool, "crash", checkpoint_dir, epochs)

        wait_for(lambda: current_epoch(checkpoint_dir) >= 2, 300, "epoch 2 to be committed", worker, 0.1)
        claim = read_manifest(checkpoint_dir)["claims"][-1]
        assert claim["flow_run_id"] == str(flow_run.id) and claim["run_count"] == 1
        os.kill(claim["pid"], signal.SIGKILL)  # the flow-run process the worker started
        time.sleep(1)
        killed_at = current_epoch(checkpoint_dir)  # final: the writer is dead
        assert 2 <= killed_at < epochs

        def settled():
            with prefect_server.client() as client:
                run = client.read_flow_run(flow_run.id)
            if run.state.is_completed():
                return run
            assert run.state.type.value != "FAILED", f"{run.state.message}\n{worker.log_tail(80)}"
            return None

        run = wait_for(settled, 360, "the crashed run to be restarted and completed", worker, interval=1)

    history = state_history(prefect_server, flow_run.id)
    kinds = [(kind, name) for kind, name, _ in history]
    crashed = kinds.index(("CRASHED", "Crashed"))
    assert kinds[crashed + 1] == ("SCHEDULED", "AwaitingRetry"), history
    assert "Rescheduled after a crash by the automation" in history[crashed + 1][2]
    assert kinds.count(("CRASHED", "Crashed")) == 1, history  # the worker's second report was refused
    assert kinds.count(("RUNNING", "Running")) == 2, history  # one retry, no duplicate execution
    assert kinds[-1] == ("COMPLETED", "Completed")

    assert run.run_count == 2
    record = record_of(run)
    assert record["flow_run_id"] == str(flow_run.id) and record["attempt"] == 2
    assert record["trained_epochs"] == [killed_at + 1, epochs] and record["epoch"] == epochs
    assert record["current"]["epoch"] == epochs
    manifest = read_manifest(checkpoint_dir)
    # version ids count commits: one per epoch, so no epoch was committed twice
    assert record["current"]["version"] == epochs and manifest["next_id"] == epochs + 1
    attempts = [(c["run_count"], c["epoch"], bool(c.get("finished"))) for c in manifest["claims"]]
    assert attempts == [(1, 0, False), (2, killed_at, True)]


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TIMEOUT)
def test_superseded_attempt_leaves_the_flow_run_to_the_newer_one(prefect_server: PrefectServer,
                                                                 tmp_path: pathlib.Path,
                                                                 cleanup: dict[str, list[Any]]):
    """The duplicate execution that a re-run automation reacting at once caused (measured): the
    flow run is set to AwaitingRetry while its first attempt still trains, and the worker starts
    attempt 2 beside it. Attempt 2 takes over the checkpoints and completes; attempt 1 must stop
    without changing the flow run's state.

    Attempt 1 is paused (SIGSTOP, outside the store's commit lock) until attempt 2 has claimed the
    checkpoints, so the overlap does not depend on how fast epochs are."""
    import fcntl

    from prefect.states import AwaitingRetry

    epochs = 30
    checkpoint_dir = tmp_path / "checkpoints" / "twice"
    commit_lock = checkpoint_dir / "versions" / ".commit.lock"  # CheckpointStore's lock (no prefix)
    first_pid = None
    with prefect_server.work_pool("twice", env=WORKER_ENV) as worker:
        try:
            flow_run = run_once(prefect_server, tmp_path, cleanup, "twice", "twice", checkpoint_dir, epochs)
            wait_for(lambda: current_epoch(checkpoint_dir) >= 2, 300, "epoch 2 to be committed", worker, 0.05)
            first_pid = read_manifest(checkpoint_dir)["claims"][-1]["pid"]
            with open(commit_lock, "a+b") as lock:  # not mid-commit: pause attempt 1 between commits
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
                os.kill(first_pid, signal.SIGSTOP)
                # a thread of attempt 1 waiting for this lock could still take it on its way to stopping
                wait_for(lambda: all_threads_stopped(first_pid), 60, "attempt 1 to stop", worker, 0.05)
            assert current_epoch(checkpoint_dir) < epochs
            with prefect_server.client() as client:  # what a re-run automation does while attempt 1 lives
                client.set_flow_run_state(flow_run.id, AwaitingRetry(), force=True)
            wait_for(lambda: read_manifest(checkpoint_dir)["claims"][-1]["run_count"] == 2, 300,
                     "attempt 2 to claim the checkpoints", worker)
        finally:
            if first_pid is not None:
                os.kill(first_pid, signal.SIGCONT)

        def finished():
            with prefect_server.client() as client:
                run = client.read_flow_run(flow_run.id)
            claims = read_manifest(checkpoint_dir)["claims"]
            done = run.state.is_final() and any(c["run_count"] == 2 and c.get("finished") for c in claims)
            return run if done and not process_alive(first_pid) else None

        wait_for(finished, 300, "both attempts to end", worker, interval=1)
        time.sleep(2)  # the state attempt 1 proposed on its way out
        with prefect_server.client() as client:
            run = client.read_flow_run(flow_run.id)
        history = state_history(prefect_server, flow_run.id)

    assert run.state.is_completed() and record_of(run)["attempt"] == 2
    assert record_of(run)["epoch"] == epochs
    assert [kind for kind, _, _ in history].count("FAILED") == 0, "\n".join(map(str, history))


def all_threads_stopped(pid: int) -> bool:
    """Every thread of ``pid`` is stopped by a signal, so none can still finish a system call."""
    states = []
    for stat in pathlib.Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        except OSError:  # the thread ended
            pass
    return bool(states) and all(state in "tT" for state in states)


def process_alive(pid: int) -> bool:
    """``pid`` runs (a zombie waiting for its parent to reap it counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
