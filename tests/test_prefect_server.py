"""The ``prefect_server`` fixture: a real ``prefect server start`` on loopback, shared by the session."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import threading
import time
import urllib.request

import pytest

from prefect_server import PrefectServer

pytest.importorskip("prefect")


def test_server_is_healthy_and_its_ui_calls_this_port(prefect_server: PrefectServer):
    assert prefect_server.api_url == f"http://127.0.0.1:{prefect_server.port}/api"
    assert prefect_server.get_json("/health") is True
    assert prefect_server.is_running()
    assert prefect_server.log_path.is_file()

    with urllib.request.urlopen(prefect_server.ui_url + "/ui-settings", timeout=10) as response:
        ui_settings = json.load(response)
    assert ui_settings["api_url"] == prefect_server.api_url  # not the default :4200
    with urllib.request.urlopen(prefect_server.ui_url + "/", timeout=10) as response:
        assert response.status == 200
        assert b"<html" in response.read().lower()  # the UI is served (after a redirect to /v2/)


def test_env_points_subprocesses_at_the_server(prefect_server: PrefectServer):
    env = prefect_server.env()
    assert env["PREFECT_API_URL"] == prefect_server.api_url
    assert env["PREFECT_HOME"] == str(prefect_server.home)
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert prefect_server.env(log_to_api=True)["PREFECT_LOGGING_TO_API_ENABLED"] == "true"
    full = prefect_server.subprocess_env({"EXTRA": "1"})
    assert full["EXTRA"] == "1" and full["PREFECT_API_URL"] == prefect_server.api_url
    assert full["PATH"] == os.environ["PATH"]


def test_in_process_flows_run_on_the_server(prefect_server: PrefectServer):
    from prefect import flow, task
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, PREFECT_HOME

    @task
    def double(x: int) -> int:
        return 2 * x

    @flow
    def doubles(n: int) -> list[int]:
        return [double(i) for i in range(n)]

    assert PREFECT_API_URL.value() == prefect_server.api_url
    assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is None
    assert str(PREFECT_HOME.value()) == str(prefect_server.home)
    seen_in_thread: list[str | None] = []
    thread = threading.Thread(target=lambda: seen_in_thread.append(PREFECT_API_URL.value()))
    thread.start()
    thread.join()
    assert seen_in_thread == [prefect_server.api_url]  # the process-global settings too

    state = doubles(3, return_state=True)
    assert state.result() == [0, 2, 4]
    flow_run_id = state.state_details.flow_run_id
    with prefect_server.client() as client:
        assert client.read_flow_run(flow_run_id).state.is_completed()
        # the server records task runs from events, asynchronously
        body = {"flow_runs": {"id": {"any_": [str(flow_run_id)]}}}
        deadline = time.monotonic() + 30
        while prefect_server.post_json("/task_runs/count", body) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert prefect_server.post_json("/task_runs/count", body) == 3


def test_run_python_runs_a_flow_in_a_subprocess(prefect_server: PrefectServer):
    code = (
        "from prefect import flow\n"
        "from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings\n"
        "@flow(name='from-subprocess')\n"
        "def f(x: int) -> int:\n"
        "    return x + 1\n"
        "with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):\n"
        "    state = f(41, return_state=True)\n"
        "print(state.result(), state.state_details.flow_run_id)\n"
    )
    done = prefect_server.run_python(code, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    result, flow_run_id = done.stdout.split()[-2:]
    assert result == "42"
    with prefect_server.client() as client:
        run = client.read_flow_run(flow_run_id)
    assert run.state.is_completed()
    assert run.flow_id is not None


def test_start_python_runs_in_its_own_group_and_can_be_killed(prefect_server: PrefectServer,
                                                            tmp_path: pathlib.Path):
    script = tmp_path / "sleeper.py"
    script.write_text("import os, sys, time\n"
                      "print(os.environ['PREFECT_API_URL'], sys.argv[1], flush=True)\n"
                      "time.sleep(120)\n")
    proc = prefect_server.start_python(script, "arg-1")
    try:
        deadline = time.monotonic() + 30
        while b"arg-1" not in proc.log_path.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.log_path.read_text().split() == [prefect_server.api_url, "arg-1"]
        assert os.getpgid(proc.pid) == proc.pid  # its own session: killpg hits it alone
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_start_timeout_raises_with_the_server_log(tmp_path: pathlib.Path):
    server = PrefectServer(tmp_path / "home")
    with pytest.raises(TimeoutError, match="was not healthy in time") as failure:
        server.start(timeout=0.01)
    assert "prefect server start" in str(failure.value)  # the tail of the server's log
    assert not server.is_running()


@pytest.mark.slow
def test_start_failure_raises_with_the_server_log(tmp_path: pathlib.Path):
    server = PrefectServer(tmp_path / "home", db_url="nosuchdialect://")
    with pytest.raises(RuntimeError, match="exited with code") as failure:
        server.start(timeout=60)
    assert "nosuchdialect" in str(failure.value)  # the server's traceback, from its log
    assert not server.is_running()


@pytest.mark.slow
def test_work_pool_worker_runs_a_deployment(prefect_server: PrefectServer, tmp_path: pathlib.Path):
    """A process work pool + ``prefect worker start`` picks up a deployment run within ~1 s."""
    from prefect import flow
    from prefect.deployments import run_deployment

    source = tmp_path / "src"
    source.mkdir()
    (source / "greet.py").write_text(
        "from prefect import flow\n\n"
        "@flow\n"
        "def greet(name: str = 'world') -> str:\n"
        "    return f'hello {name}'\n"
    )
    with prefect_server.work_pool("test-process-pool") as worker:
        assert worker.is_running()
        flow.from_source(source=str(source), entrypoint="greet.py:greet").deploy(
            name="greet-test", work_pool_name="test-process-pool", print_next_steps=False,
            ignore_warnings=True)
        run = run_deployment("greet/greet-test", parameters={"name": "pool"}, timeout=180)
        assert run.state.is_completed(), worker.log_tail()
        with prefect_server.client() as client:
            states = client.read_flow_run_states(run.id)
        times = {}
        for state in states:
            times.setdefault(state.type.value, state.timestamp)
        picked_up = (times["PENDING"] - times["SCHEDULED"]).total_seconds()
        assert picked_up < 10, f"the worker took {picked_up:.1f} s to pick the run up"
    assert not worker.is_running()
