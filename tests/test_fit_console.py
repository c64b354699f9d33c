"""What a user's own fit_in_flow script shows on the console, and what its run's logs keep.

A small flow script runs in a subprocess against the session's Prefect server (logs sent to
the API), as a user runs one: its stdout and stderr are the console. It checks that the epoch
table prints without Prefect's ``Task run 'epoch-N' - Finished in state Completed()`` after each
row, while the run's logs on the server still hold those lines; that another task's line and a
net without a printed table keep theirs on the console; and that a run with nothing to train says
so in one line, on the console and in the run's logs.
"""
from __future__ import annotations

import json
import re
import time
from uuid import UUID, uuid4

from prefect.client.schemas.filters import (
    LogFilter,
    LogFilterFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)

SCRIPT = """
import json, sys
from prefect import flow, get_run_logger, task
from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Callback, Checkpoint
from prefect_torch.examples import MyModule, make_data
from prefect_torch.orchestration import fit_in_flow

X, y = make_data(200)

@task(task_run_name="other-task")
def other():
    return 1

class Says(Callback):  # a user's callback that logs to the run from inside epoch 2's task
    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == 2:
            get_run_logger().info("the user's line in epoch 2")

@flow
def user_flow(dirname, experiment, verbose, hint=None):
    other()
    net = NeuralNetClassifier(MyModule, max_epochs=3, verbose=verbose,
                              callbacks=[Checkpoint(monitor=None, dirname=dirname), Says()])
    return fit_in_flow(net, X, y, experiment=experiment, train_more_hint=hint)

dirname, experiment, verbose = sys.argv[1], sys.argv[2], int(sys.argv[3])
hint = sys.argv[4] if len(sys.argv) > 4 else None
record = user_flow(dirname, experiment, verbose, hint)
print("RECORD " + json.dumps({"flow_run_id": record["flow_run_id"], "trained": record["trained_epochs"]}))
"""
FINISHED = re.compile(r"Task run '(epochs?-[\d-]+|other-task)' - Finished in state Completed\(\)")


def _run(prefect_server, tmp_path, experiment, verbose=1, hint=None):
    done = prefect_server.run_python(SCRIPT, str(tmp_path / experiment), experiment, str(verbose),
                                     *([hint] if hint else []), cwd=tmp_path, timeout=240,
                                     env={"PREFECT_LOGGING_TO_API_ENABLED": "true", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    record = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RECORD "))[7:])
    return done.stdout + done.stderr, record


def _run_logs(prefect_server, flow_run_id, expected, timeout=30.0):
    """The flow run's logs on the server, once ``expected(logs)`` holds (logs arrive in batches)."""
    flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)]))
    deadline = time.monotonic() + timeout
    with prefect_server.client() as client:
        while True:
            logs = client.read_logs(log_filter=flt)
            if expected(logs) or time.monotonic() > deadline:
                tasks = client.read_task_runs(task_run_filter=TaskRunFilter(
                    flow_run_id=TaskRunFilterFlowRunId(any_=[UUID(flow_run_id)])))
                return logs, {task.id: task.name for task in tasks}
            time.sleep(0.5)


def test_the_epoch_table_prints_without_the_epoch_tasks_lines_which_the_run_logs_keep(prefect_server, tmp_path):
    experiment = f"console-{uuid4().hex[:8]}"
    console, record = _run(prefect_server, tmp_path, experiment)
    rows = [line.split()[0] for line in console.splitlines() if re.match(r"^\s+\d+\s+\d\.\d{4}\s", line)]
    assert rows == ["1", "2", "3"]  # the table is there
    assert FINISHED.findall(console) == ["other-task"]  # another task's line stays on the console
    assert re.findall(r"Task run '(epoch-\d+)' - (.*)", console) == [("epoch-2", "the user's line in epoch 2")]

    def finished_in_logs(logs):
        return [log for log in logs if log.message == "Finished in state Completed()"]

    logs, names = _run_logs(prefect_server, record["flow_run_id"], lambda logs: len(finished_in_logs(logs)) >= 4)
    finished = sorted(names[log.task_run_id] for log in finished_in_logs(logs) if log.task_run_id in names)
    assert finished == ["epoch-1", "epoch-2", "epoch-3", "other-task"]  # the UI's logs keep them all


def test_without_a_printed_table_the_epoch_tasks_lines_stay_on_the_console(prefect_server, tmp_path):
    console, record = _run(prefect_server, tmp_path, f"quiet-{uuid4().hex[:8]}", verbose=0)
    assert record["trained"] == [1, 3]
    assert FINISHED.findall(console) == ["other-task", "epoch-1", "epoch-2", "epoch-3"]


def test_a_run_with_nothing_to_train_says_so_once_on_the_console_and_in_the_run_logs(prefect_server, tmp_path):
    experiment = f"done-{uuid4().hex[:8]}"
    first, _ = _run(prefect_server, tmp_path, experiment)
    assert "nothing to train" not in first
    console, record = _run(prefect_server, tmp_path, experiment)
    assert record["trained"] == []
    line = (f"experiment {experiment!r} is already at epoch 3 of max_epochs=3: nothing to train "
            '(resume="latest"); raise max_epochs, or pass resume="extend" to train max_epochs more')
    assert [entry for entry in console.splitlines() if "nothing to train" in entry] == [
        entry for entry in console.splitlines() if entry.endswith(f" - {line}")]
    assert console.count(line) == 1
    logs, _ = _run_logs(prefect_server, record["flow_run_id"], lambda logs: any(line == log.message for log in logs))
    assert [log.message for log in logs if "nothing to train" in log.message] == [line]

    hinted, _ = _run(prefect_server, tmp_path, experiment, hint="run it with --max-epochs 8 to train 5 more")
    assert hinted.count(f"experiment {experiment!r} is already at epoch 3 of max_epochs=3: nothing to train "
                        '(resume="latest"); run it with --max-epochs 8 to train 5 more') == 1
