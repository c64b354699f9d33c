"""fit_in_flow and train_flow against a real Prefect server (the ``prefect_server`` fixture).

Every test trains the README's tiny classifier for a few epochs and checks real outcomes: the
weights (bit for bit, against a plain ``net.fit`` from the same seed), the history, the files
and manifest of the checkpoint directory, and what the server recorded (flow and task runs,
their states and run counts, artifacts). Failures are injected the way they happen: an
exception in the middle of an epoch, a flow retry, a SIGKILL of the training process, a second
run on the same experiment.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import signal
import textwrap
import time
from pathlib import Path
from uuid import UUID, uuid4

import pytest
import torch
from prefect import flow
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.context import FlowRunContext

from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Callback, Checkpoint, TrainEndCheckpoint
from prefect_torch.checkpoint import CheckpointConflictError, CheckpointStore, PendingFile
from prefect_torch.examples import MyModule, make_data, make_net
from prefect_torch.orchestration import ResumeLimitError, fit_in_flow, train_flow
from prefect_torch.orchestration.artifacts import ArtifactPublisher
from prefect_torch.orchestration.fencing import claim_check

N_SAMPLES = 300  # 240 to train on: 8 batches of 32 per epoch
X, y = make_data(N_SAMPLES)
EPOCH_NAME = re.compile(r"^(?:epoch-(\d+)|epochs-(\d+)-(\d+))$")


# -- nets, reference runs, comparisons -------------------------------------------------------
def build_net(dirname, max_epochs=8, monitor=None, lr=0.1, keep_last=None, callbacks=()):
    """The classifier every test trains, checkpointing into ``dirname`` (keeping every version,
    so tests can see what was committed)."""
    checkpoint = Checkpoint(monitor=monitor, dirname=str(dirname), keep_last=keep_last)
    return NeuralNetClassifier(MyModule, max_epochs=max_epochs, lr=lr, batch_size=32, verbose=0,
                               callbacks=[("checkpoint", checkpoint), *callbacks])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """``reference(max_epochs, monitor=None, lr=0.1)``: the same net trained undisturbed by a
    plain ``net.fit`` (seed 0, no Prefect), cached per configuration."""
    cache = {}

    def get(max_epochs, monitor=None, lr=0.1):
        key = (max_epochs, monitor, lr)
        if key not in cache:
            net = build_net(tmp_path_factory.mktemp("reference"), max_epochs, monitor=monitor, lr=lr)
            torch.manual_seed(0)
            cache[key] = net.fit(X, y)
        return cache[key]

    return get


def weights(net_or_state):
    state = net_or_state if isinstance(net_or_state, dict) else net_or_state.module_.state_dict()
    return {k: v.detach().clone() for k, v in state.items()}


def assert_same_weights(a, b):
    a, b = weights(a), weights(b)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ in {different}"


def epochs_of(net):
    return list(net.history[:, "epoch"])


def assert_same_history(net, ref):
    assert epochs_of(net) == epochs_of(ref)
    for key in ("train_loss", "valid_loss", "valid_acc"):
        assert net.history[:, key] == ref.history[:, key], key


def params_file(record_or_uri):
    uri = record_or_uri["uri"] if isinstance(record_or_uri, dict) else record_or_uri
    return Path(uri) / "params.pt"


def sha256_of(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_manifest(dirname):
    return json.loads((Path(dirname) / "manifest.json").read_text())


def unique(name):
    """An experiment name of its own: artifact keys are global on the server."""
    return f"{name}-{uuid4().hex[:8]}"


# -- failures to inject ------------------------------------------------------------------------
class Fault(Callback):
    """Raises ``RuntimeError`` in epoch ``epoch``: after ``batch`` training batches (weights
    half-updated), or with ``batch=None`` at the epoch's end, after the Checkpoint committed it
    (``call_order`` 2 runs after the Checkpoint's 1). At most ``times`` times per fit, and only in
    the flow attempts (run counts) listed in ``attempts`` (all when ``None``)."""

    call_order = 2  # after the Checkpoint (1): an end-of-epoch failure comes after the commit

    def __init__(self, epoch=5, batch=None, times=1, attempts=None):
        self.epoch, self.batch, self.times, self.attempts = epoch, batch, times, attempts

    def initialize(self):
        self.raised_, self.batches_ = 0, 0
        return self

    def _fire(self, where):
        context = FlowRunContext.get()
        if self.raised_ >= self.times:
            return
        if self.attempts is not None and context.flow_run.run_count not in self.attempts:
            return
        self.raised_ += 1
        raise RuntimeError(f"injected failure {where}")

    def on_epoch_begin(self, net, **kwargs):
        self.batches_ = 0

    def on_batch_end(self, net, training=False, **kwargs):
        if training and self.batch is not None and len(net.history) == self.epoch:
            self.batches_ += 1
            if self.batches_ == self.batch:
                self._fire(f"after batch {self.batch} of epoch {self.epoch}")

    def on_epoch_end(self, net, **kwargs):
        if self.batch is None and len(net.history) == self.epoch:
            self._fire(f"at the end of epoch {self.epoch}")


@flow(name="orchestration-test")
def fit_flow(dirname: str, experiment: str, max_epochs: int = 8, monitor: str | None = None, lr: float = 0.1,
             keep_last: int | None = None, fault: dict | None = None, options: dict | None = None):
    """Build the net (with a :class:`Fault` if given), seed, and ``fit_in_flow`` it."""
    net = build_net(dirname, max_epochs, monitor=monitor, lr=lr, keep_last=keep_last,
                    callbacks=[("fault", Fault(**fault))] if fault else [])
    torch.manual_seed(0)
    record = fit_in_flow(net, X, y, experiment=experiment, **(options or {}))
    return net, record


def run_fit_flow(*args, flow_fn=fit_flow, **kwargs):
    """Run the flow; its final state (the flow's exception does not propagate)."""
    return flow_fn(*args, return_state=True, **kwargs)


# -- what the server recorded ------------------------------------------------------------------
def task_runs(flow_run_id, count, timeout=30):
    """The flow run's task runs by name, once ``count`` of them reached a final state (the
    server records task runs from events, asynchronously)."""
    deadline = time.monotonic() + timeout
    flt = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(str(flow_run_id))]))
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=flt)
            final = [r for r in runs if r.state is not None and r.state.is_final()]
            if len(final) >= count or time.monotonic() > deadline:
                return {r.name: r for r in runs}
            time.sleep(0.25)


def read_flow_run(flow_run_id):
    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(str(flow_run_id)))


def read_artifacts(key, flow_run_id):
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(str(flow_run_id))])))


def trained_like_reference(state, ref):
    """The net and record of a completed ``fit_flow`` state, checked against the plain run ``ref``:
    the same weights bit for bit, the same history, epochs 1..N once each."""
    assert state.is_completed(), state
    net, record = state.result()
    assert_same_weights(net, ref)
    assert_same_history(net, ref)
    assert epochs_of(net) == list(range(1, len(ref.history) + 1))
    return net, record


def epoch_range(name):
    match = EPOCH_NAME.match(name)
    assert match, name
    if match.group(1):
        return int(match.group(1)), int(match.group(1))
    return int(match.group(2)), int(match.group(3))


# -- 1. undisturbed ------------------------------------------------------------------------------
@pytest.mark.parametrize("epochs_per_task, names", [
    (1, [f"epoch-{i}" for i in range(1, 9)]),
    (3, ["epochs-1-3", "epochs-4-6", "epochs-7-8"]),
    ("auto", None),
])
def test_undisturbed_flow_trains_like_plain_fit(prefect_server, tmp_path, reference, epochs_per_task, names):
    state = run_fit_flow(str(tmp_path / "ckpt"), unique("plain"), options={"epochs_per_task": epochs_per_task})
    ref = reference(8)
    net, record = trained_like_reference(state, ref)

    assert record["epoch"] == 8 and record["trained_epochs"] == [1, 8] and record["attempt"] == 1
    assert record["current"]["epoch"] == 8 and record["current"]["version"] == 8
    assert record["current"]["sha256"] == sha256_of(params_file(record["current"]))
    assert_same_weights(torch.load(params_file(record["current"]), weights_only=True), ref)
    assert json.loads(json.dumps(record)) == record  # JSON-able

    runs = task_runs(record["flow_run_id"], record["tasks"])
    assert len(runs) == record["tasks"]
    if names is not None:
        assert sorted(runs) == sorted(names)
    else:  # "auto": epoch 1 alone (it measures), then groups covering the rest
        assert "epoch-1" in runs
    covered = sorted(epoch_range(name) for name in runs)
    assert [e for first, last in covered for e in range(first, last + 1)] == list(range(1, 9))
    for run in runs.values():
        assert run.state.is_completed() and run.run_count == 1, (run.name, run.state, run.run_count)
        assert str(run.flow_run_id) == record["flow_run_id"]


# -- 2. task retries -----------------------------------------------------------------------------
@pytest.mark.parametrize("fault, retried, monitor, lr, epochs_per_task", [
    pytest.param({"epoch": 5, "batch": 3}, "epoch-5", None, 0.1, 1, id="mid-epoch-5"),
    pytest.param({"epoch": 5}, "epoch-5", None, 0.1, 1, id="end-of-epoch-5-after-its-commit"),
    pytest.param({"epoch": 1, "batch": 3}, "epoch-1", None, 0.1, 1, id="mid-epoch-1-before-any-commit"),
    pytest.param({"epoch": 5, "batch": 3}, "epochs-4-6", None, 0.1, 3, id="mid-epoch-5-of-task-4-6"),
    # valid_loss_best with lr 0.3 commits epochs 1, 2 and 8 only: the retry goes back to epoch 2
    pytest.param({"epoch": 5, "batch": 3}, "epoch-5", "valid_loss_best", 0.3, 1, id="sparse-commits"),
])
def test_task_retry_ends_like_undisturbed_run(prefect_server, tmp_path, reference, fault, retried, monitor, lr,
                                              epochs_per_task):
    ref = reference(8, monitor=monitor, lr=lr)
    if monitor == "valid_loss_best":  # the premise: no commit between epoch 2 and the failure
        assert [bool(b) for b in ref.history[:5, "valid_loss_best"]] == [True, True, False, False, False]
    dirname = tmp_path / "ckpt"
    state = run_fit_flow(str(dirname), unique("task-retry"), monitor=monitor, lr=lr, fault=fault,
                         options={"task_retries": 1, "epochs_per_task": epochs_per_task})
    assert state.is_completed(), state
    net, record = state.result()
    assert dict(net.callbacks_)["fault"].raised_ == 1  # the fault did fire
    assert_same_weights(net, ref)
    assert_same_history(net, ref)
    assert record["trained_epochs"] == [1, 8] and record["attempt"] == 1
    assert_same_weights(torch.load(params_file(record["current"]), weights_only=True),
                        ref if monitor is None else torch.load(params_file(record["best"]), weights_only=True))

    runs = task_runs(record["flow_run_id"], record["tasks"])
    assert runs[retried].run_count == 2 and runs[retried].state.is_completed()
    assert all(r.run_count == 1 and r.state.is_completed() for name, r in runs.items() if name != retried)
    commits = [v["epoch"] for v in read_manifest(dirname)["versions"]]
    assert commits == ([1, 2, 8] if monitor else list(range(1, 9)))  # nothing committed twice


def test_task_retries_exhausted_fail_the_flow_then_a_rerun_resumes(prefect_server, tmp_path, reference):
    dirname, experiment = tmp_path / "ckpt", unique("exhausted")
    state = run_fit_flow(str(dirname), experiment, fault={"epoch": 5, "batch": 3, "times": 99},
                         options={"task_retries": 1})
    assert state.is_failed()
    with pytest.raises(RuntimeError, match="injected failure after batch 3 of epoch 5"):
        state.result()
    flow_run_id = state.state_details.flow_run_id
    runs = task_runs(flow_run_id, 5)
    assert runs["epoch-5"].state.is_failed() and runs["epoch-5"].run_count == 2
    assert sorted(runs) == [f"epoch-{i}" for i in range(1, 6)]
    manifest = read_manifest(dirname)
    assert [v["epoch"] for v in manifest["versions"]] == [1, 2, 3, 4]

    state = run_fit_flow(str(dirname), experiment)
    assert state.is_completed()
    net, record = state.result()
    assert record["trained_epochs"] == [5, 8] and record["flow_run_id"] != str(flow_run_id)
    assert_same_weights(net, reference(8))
    assert_same_history(net, reference(8))


# -- 3. flow retries -----------------------------------------------------------------------------
def test_flow_retry_resumes_after_the_last_commit(prefect_server, tmp_path, reference):
    dirname = tmp_path / "ckpt"
    retrying = fit_flow.with_options(retries=1, retry_delay_seconds=0)
    # raises at the end of epoch 6, after its commit, in the first attempt only
    state = run_fit_flow(str(dirname), unique("flow-retry"), max_epochs=10, fault={"epoch": 6, "attempts": [1]},
                         flow_fn=retrying)
    net, record = trained_like_reference(state, reference(10))
    assert record["attempt"] == 2 and record["trained_epochs"] == [7, 10] and record["tasks"] == 4
    assert read_flow_run(record["flow_run_id"]).run_count == 2

    runs = task_runs(record["flow_run_id"], 10)
    assert sorted(runs, key=lambda n: epoch_range(n)) == [f"epoch-{i}" for i in range(1, 11)]  # none twice
    assert runs["epoch-6"].state.is_failed()
    assert all(r.state.is_completed() for name, r in runs.items() if name != "epoch-6")

    manifest = read_manifest(dirname)
    assert [v["epoch"] for v in manifest["versions"]] == list(range(1, 11))
    claims = [(c["flow_run_id"], c["run_count"], c["epoch"], bool(c["finished"])) for c in manifest["claims"]]
    assert claims == [(record["flow_run_id"], 1, 0, False), (record["flow_run_id"], 2, 6, True)]


@pytest.mark.parametrize("fault, trained", [
    pytest.param({"epoch": 6, "attempts": [1]}, [7, 10], id="after-its-commit-of-epoch-6"),
    pytest.param({"epoch": 1, "batch": 3, "attempts": [1]}, [1, 10], id="before-its-first-commit"),
])
def test_flow_retry_of_a_fresh_start_resumes_only_its_own_progress(prefect_server, tmp_path, reference, fault,
                                                                   trained):
    """resume="never" over an earlier training: the retry continues what its first attempt did,
    never the earlier training."""
    dirname, experiment = tmp_path / "ckpt", unique("never")
    earlier = run_fit_flow(str(dirname), experiment, max_epochs=3, lr=0.3)  # other weights than lr 0.1's
    assert earlier.is_completed()
    retrying = fit_flow.with_options(retries=1, retry_delay_seconds=0)
    state = run_fit_flow(str(dirname), experiment, max_epochs=10, fault=fault, options={"resume": "never"},
                         flow_fn=retrying)
    net, record = trained_like_reference(state, reference(10))
    assert record["attempt"] == 2 and record["trained_epochs"] == trained


# -- subprocess flows (SIGKILL, a second live run, crash loops) ------------------------------------
SCRIPT = textwrap.dedent('''
    """A training flow run as its own process by test_orchestration.py (config: argv[1], JSON)."""
    import json, os, pathlib, signal, sys, time

    import torch
    from prefect import flow
    from prefect_torch import NeuralNetClassifier
    from prefect_torch.callbacks import Callback, Checkpoint
    from prefect_torch.examples import MyModule, make_data
    from prefect_torch.orchestration import fit_in_flow

    cfg = json.loads(sys.argv[1])
    torch.set_num_threads(1)  # as the tests' reference runs


    class Hook(Callback):
        def on_epoch_begin(self, net, **kwargs):
            self.batches_ = 0
            time.sleep(cfg.get("sleep", 0))
            if len(net.history) == cfg.get("kill_at"):
                os.kill(os.getpid(), signal.SIGKILL)

        def on_batch_end(self, net, training=False, **kwargs):
            if training and len(net.history) == cfg.get("pause_at"):
                self.batches_ += 1
                if self.batches_ == 3:  # weights half-updated: tell the test, wait for its SIGKILL
                    pathlib.Path(cfg["marker"]).write_text(str(os.getpid()))
                    time.sleep(120)


    @flow(name="orchestration-test-process")
    def train():
        X, y = make_data(cfg["n_samples"])
        net = NeuralNetClassifier(MyModule, max_epochs=cfg["max_epochs"], lr=0.1, batch_size=32, verbose=0,
                                  callbacks=[("checkpoint", Checkpoint(monitor=None, dirname=cfg["dirname"], keep_last=None)),
                                             ("hook", Hook())])
        torch.manual_seed(0)
        record = fit_in_flow(net, X, y, experiment=cfg["experiment"], max_resumes=cfg.get("max_resumes", 3))
        torch.save(net.module_.state_dict(), cfg["out"])
        return record


    print("RECORD " + json.dumps(train()), flush=True)
''')


@pytest.fixture
def flow_process(prefect_server, tmp_path):
    """``start(**cfg)``: the SCRIPT's flow in a new process against the test server (a Popen
    whose output goes to ``proc.log_path``)."""
    script = tmp_path / "train_process.py"
    script.write_text(SCRIPT)
    started = []

    def start(**cfg):
        cfg = {"n_samples": N_SAMPLES, "max_epochs": 8, "out": str(tmp_path / "final.pt"), **cfg}
        proc = prefect_server.start_python(script, json.dumps(cfg), env={"PYTHONUNBUFFERED": "1"},
                                           log_path=tmp_path / f"process-{len(started)}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def output_of(proc):
    return Path(proc.log_path).read_text(errors="replace")


def finish(proc, timeout=180):
    proc.wait(timeout=timeout)
    return proc.returncode, output_of(proc)


def record_in(output):
    lines = [line for line in output.splitlines() if line.startswith("RECORD ")]
    assert lines, output[-3000:]
    return json.loads(lines[-1][len("RECORD "):])


def wait_for(condition, timeout=60, proc=None):
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended ({proc.returncode}) first:\n{output_of(proc)[-3000:]}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# -- 4. SIGKILL ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigkilled_run_resumes_from_last_commit(flow_process, tmp_path, reference):
    dirname, marker = tmp_path / "ckpt", tmp_path / "in-epoch-5"
    experiment = unique("sigkill")
    proc = flow_process(dirname=str(dirname), experiment=experiment, pause_at=5, marker=str(marker))
    wait_for(marker.exists, proc=proc)
    os.kill(proc.pid, signal.SIGKILL)
    assert finish(proc)[0] == -signal.SIGKILL
    manifest = read_manifest(dirname)
    assert [v["epoch"] for v in manifest["versions"]] == [1, 2, 3, 4]
    assert not (tmp_path / "final.pt").exists()

    code, output = finish(flow_process(dirname=str(dirname), experiment=experiment))
    assert code == 0, output[-3000:]
    record = record_in(output)
    assert record["trained_epochs"] == [5, 8] and record["epoch"] == 8
    assert_same_weights(torch.load(tmp_path / "final.pt", weights_only=True), reference(8))
    assert_same_weights(torch.load(params_file(record["current"]), weights_only=True), reference(8))

    manifest = read_manifest(dirname)
    assert [v["epoch"] for v in manifest["versions"]] == list(range(1, 9))
    claims = manifest["claims"]
    assert len(claims) == 2
    killed, resumed = claims
    assert killed["pid"] == proc.pid and not killed["finished"] and killed["epoch"] == 0
    assert resumed["flow_run_id"] == record["flow_run_id"] != killed["flow_run_id"]
    assert resumed["epoch"] == 4 and resumed["finished"]
    assert {v["writer"]["session"] for v in manifest["versions"][:4]} == {killed["session"]}
    assert {v["writer"]["session"] for v in manifest["versions"][4:]} == {resumed["session"]}


# -- 5. artifacts --------------------------------------------------------------------------------
def test_artifacts_mirror_the_manifest_and_follow_the_latest_run(prefect_server, tmp_path):
    dirname = tmp_path / "ckpt"
    experiment = unique("Artifacts Test")  # mixed case and a space: keys use its slug
    key = experiment.lower().replace(" ", "-")
    # lr 0.3: the best epoch (2) is not the current one; keep_last=3 (the default) keeps it too
    state = run_fit_flow(str(dirname), experiment, max_epochs=6, lr=0.3, keep_last=3)
    assert state.is_completed()
    _, first = state.result()
    manifest = read_manifest(dirname)
    current = next(v for v in manifest["versions"] if v["id"] == manifest["current"])
    best = next(v for v in manifest["versions"] if v["id"] == manifest["best"])
    assert (current["epoch"], best["epoch"]) == (6, 2)

    table, = read_artifacts(f"{key}-checkpoints", first["flow_run_id"])  # one, updated in place
    rows = table.data if isinstance(table.data, list) else json.loads(table.data)
    assert table.type == "table"
    assert [v["epoch"] for v in manifest["versions"]] == [2, 4, 5, 6]
    assert len(rows) == len(manifest["versions"])
    for row, version in zip(rows, manifest["versions"]):
        assert row["epoch"] == version["epoch"] and row["version"] == version["id"]
        assert row["current"] == ("current" if version["id"] == manifest["current"] else "")
        assert row["best"] == ("best" if version["id"] == manifest["best"] else "")
        assert row["sha256"] == version["files"]["params.pt"]["sha256"][:12]
        assert row["sha256"] == sha256_of(dirname / version["folder"] / "params.pt")[:12]
        assert row["folder"] == version["folder"] and (dirname / row["folder"] / "params.pt").is_file()
        assert row["valid_loss"] == float(f"{version['metrics']['valid_loss']:.4g}")

    latest, = read_artifacts(f"{key}-latest", first["flow_run_id"])
    assert latest.type == "markdown"
    text = latest.data
    assert "Trained **6** of 6 epochs" in text
    assert f"Current: epoch 6 (version {current['id']})" in text and f"Best: epoch 2 (version {best['id']})" in text
    assert current["files"]["params.pt"]["sha256"] in text
    assert f"params.pt: `file://{dirname / current['folder'] / 'params.pt'}`" in text  # local: code, not links
    assert f"params.pt: `file://{dirname / best['folder'] / 'params.pt'}`" in text

    progress, = read_artifacts(f"{key}-progress", first["flow_run_id"])
    assert progress.type == "progress" and float(progress.data) == 100.0
    assert progress.description.startswith("**100%** trained: epoch 6 of 6")  # what the UIs' cards show
    for artifact in (table, latest, progress):
        assert str(artifact.flow_run_id) == first["flow_run_id"]

    # a second run of the experiment (resuming to 8 epochs) owns the latest artifact of each key
    state = run_fit_flow(str(dirname), experiment, max_epochs=8, lr=0.3, keep_last=3)
    assert state.is_completed()
    _, second = state.result()
    assert second["trained_epochs"] == [7, 8] and second["flow_run_id"] != first["flow_run_id"]
    for suffix in ("checkpoints", "latest", "progress"):
        artifact = Artifact.get(f"{key}-{suffix}")
        assert str(artifact.flow_run_id) == second["flow_run_id"], suffix
    rows = Artifact.get(f"{key}-checkpoints").data
    rows = rows if isinstance(rows, list) else json.loads(rows)
    assert [r["epoch"] for r in rows] == [6, 7, 8]  # epoch 8 is the new best: epoch 2 was let go
    assert rows[-1]["current"] == "current" and rows[-1]["best"] == "best"
    text = Artifact.get(f"{key}-latest").data
    assert "Trained **8** of 8 epochs" in text and "Current and best: epoch 8" in text
    assert float(Artifact.get(f"{key}-progress").data) == 100.0
    # ...and the first run's artifacts still show what it did
    table, = read_artifacts(f"{key}-checkpoints", first["flow_run_id"])
    assert len(table.data if isinstance(table.data, list) else json.loads(table.data)) == 4


@flow(name="orchestration-test-publisher")
def publisher_flow(dirname: str, key: str) -> tuple[float, str]:
    publisher = ArtifactPublisher("close-test", key, CheckpointStore(dirname), progress_interval=3.0,
                                 checkpoints_interval=3.0)
    publisher.start(None, 0, 2)
    publisher.update(None, 1, 2)
    time.sleep(0.5)  # the helper thread has sent it, and coalesces what comes in the next 3 s
    began = time.monotonic()
    publisher.close(None, 2, 2)
    return time.monotonic() - began


def test_artifact_publisher_closes_without_waiting_out_its_interval(prefect_server, tmp_path):
    key = unique("close")
    seconds = publisher_flow(str(tmp_path / "ckpt"), key)
    assert float(Artifact.get(f"{key}-progress").data) == 100.0  # the final state was sent
    assert seconds < 1.5


# -- 6. fencing ----------------------------------------------------------------------------------
@pytest.mark.slow  # 14-16 s, mostly the second process starting
def test_second_live_run_on_an_experiment_is_refused(flow_process, tmp_path, reference):
    dirname, experiment = tmp_path / "ckpt", unique("fenced")
    proc = flow_process(dirname=str(dirname), experiment=experiment, sleep=0.5)  # >= 4 s of epochs

    def claimed():
        try:
            return any(c["pid"] == proc.pid for c in read_manifest(dirname)["claims"])
        except (FileNotFoundError, json.JSONDecodeError):
            return False

    wait_for(claimed, proc=proc)
    holder = read_manifest(dirname)["claims"][-1]
    state = run_fit_flow(str(dirname), experiment)
    assert state.is_failed()
    with pytest.raises(CheckpointConflictError) as error:
        state.result()
    message = str(error.value)
    assert holder["flow_run_name"] in message and holder["flow_run_id"] in message and "RUNNING" in message
    assert proc.poll() is None  # it was refused while the other one trained

    code, output = finish(proc)
    assert code == 0, output[-3000:]
    record = record_in(output)
    assert record["trained_epochs"] == [1, 8]
    assert_same_weights(torch.load(tmp_path / "final.pt", weights_only=True), reference(8))
    manifest = read_manifest(dirname)
    assert [c["session"] for c in manifest["claims"]] == [holder["session"]]  # the refused run left no claim
    assert {v["writer"]["session"] for v in manifest["versions"]} == {holder["session"]}


def _label(run_id, run_count):
    return {"experiment": "fence", "flow_run_id": run_id, "flow_run_name": "twice-started", "run_count": run_count}


def _commit(store, epoch):
    return store.commit([PendingFile("params.pt", "f_params", lambda f: torch.save({"epoch": epoch}, f))],
                        epoch=epoch)


def _not_asked(claim):
    raise AssertionError(f"liveness of a claim of the same flow run was asked: {claim}")


def test_older_attempt_of_the_same_flow_run_is_fenced(tmp_path):
    run_id = str(uuid4())
    newer, older = CheckpointStore(tmp_path), CheckpointStore(tmp_path)
    # the older attempt claims first, the newer one takes over: the older one's next commit fails
    older.begin()
    older.claim(_label(run_id, 2), claim_check(_label(run_id, 2), 3, is_alive=_not_asked))
    _commit(older, 1)
    newer.begin()
    newer.claim(_label(run_id, 3), claim_check(_label(run_id, 3), 3, is_alive=_not_asked))
    with pytest.raises(CheckpointConflictError):
        _commit(older, 2)
    _commit(newer, 2)
    # an older attempt coming late cannot claim over the newer one
    late = CheckpointStore(tmp_path)
    late.begin()
    with pytest.raises(CheckpointConflictError, match=r"attempt 2 of flow run 'twice-started' stops: attempt 3"):
        late.claim(_label(run_id, 2), claim_check(_label(run_id, 2), 3, is_alive=_not_asked))
    manifest = newer.read_manifest()
    assert [v.epoch for v in manifest.versions] == [1, 2]
    assert [c["run_count"] for c in manifest.claims] == [2, 3]
    assert manifest.version(manifest.current).writer["run_count"] == 3


def test_claim_of_another_flow_run_blocks_only_while_it_is_alive(tmp_path):
    holder, other = CheckpointStore(tmp_path), CheckpointStore(tmp_path)
    holder.claim(_label(str(uuid4()), 1))
    label = {**_label(str(uuid4()), 1), "flow_run_name": "newcomer"}
    with pytest.raises(CheckpointConflictError, match="being trained by flow run 'x'"):
        other.claim(label, claim_check(label, 3, is_alive=lambda claim: "flow run 'x'"))
    other.claim(label, claim_check(label, 3, is_alive=lambda claim: None))  # dead: taken over
    assert other.read_manifest().claims[-1]["flow_run_name"] == "newcomer"


# -- 7. resume policies --------------------------------------------------------------------------
def test_train_flow_resume_policies(prefect_server, tmp_path):
    dirname = tmp_path / "ckpt"
    common = {"net_factory": "prefect_torch.examples:make_net", "data": "prefect_torch.examples:make_data",
              "checkpoint_dir": str(dirname), "experiment": unique("policies"), "net_params": {"verbose": 0},
              "data_params": {"n_samples": N_SAMPLES}}

    def plain(max_epochs):
        torch.manual_seed(0)
        return make_net(max_epochs=max_epochs, verbose=0).fit(*make_data(N_SAMPLES))

    def final_weights(record):
        return torch.load(params_file(record["current"]), weights_only=True)

    torch.manual_seed(0)
    first = train_flow(max_epochs=4, **common)
    assert first["trained_epochs"] == [1, 4] and first["epoch"] == 4
    assert_same_weights(final_weights(first), plain(4))

    again = train_flow(max_epochs=4, **common)  # "latest" of a finished experiment: nothing to do
    assert again["trained_epochs"] == [] and again["epoch"] == 4
    assert again["current"] == first["current"]

    longer = train_flow(max_epochs=6, **common)  # "latest" up to 6 in all
    assert longer["trained_epochs"] == [5, 6] and longer["epoch"] == 6
    assert_same_weights(final_weights(longer), plain(6))

    extended = train_flow(max_epochs=2, resume="extend", **common)  # 2 more
    assert extended["trained_epochs"] == [7, 8] and extended["epoch"] == 8
    assert_same_weights(final_weights(extended), plain(8))

    torch.manual_seed(0)
    fresh = train_flow(max_epochs=3, resume="never", **common)  # starts over, same directory
    assert fresh["trained_epochs"] == [1, 3] and fresh["epoch"] == 3 and fresh["current"]["epoch"] == 3
    assert_same_weights(final_weights(fresh), plain(3))
    manifest = read_manifest(dirname)  # train_flow's Checkpoint keeps the last 3 versions (and the best)
    assert [(v["id"], v["epoch"]) for v in manifest["versions"]][-3:] == [(9, 1), (10, 2), (11, 3)]

    assert train_flow(max_epochs=3, **common)["trained_epochs"] == []  # and "latest" continues that one


# -- 8. crash loops ------------------------------------------------------------------------------
FAILING = {"epoch": 2, "batch": 3, "times": 99}  # every run fails in epoch 2, after epoch 1's commit


def test_failing_runs_stop_after_max_resumes(prefect_server, tmp_path):
    """Run 1 committed epoch 1 and failed; runs 2 and 3 resumed from it and failed: with
    max_resumes=2, run 4 refuses (even without the fault: the cause may be fixed or not)."""
    dirname, experiment = tmp_path / "ckpt", unique("loop")
    for _ in range(3):
        state = run_fit_flow(str(dirname), experiment, fault=FAILING, options={"max_resumes": 2})
        assert state.is_failed()
        with pytest.raises(RuntimeError, match="injected failure"):
            state.result()
    assert [c["epoch"] for c in read_manifest(dirname)["claims"]] == [0, 1, 1]
    state = run_fit_flow(str(dirname), experiment, options={"max_resumes": 2})
    assert state.is_failed()
    with pytest.raises(ResumeLimitError):
        state.result()


def test_resume_limit_names_the_failed_runs_and_can_be_lifted(prefect_server, tmp_path, reference):
    dirname, experiment = tmp_path / "ckpt", unique("limit")
    for run in range(1, 7):
        state = run_fit_flow(str(dirname), experiment, fault=FAILING, options={"max_resumes": 2})
        assert state.is_failed()
        try:
            state.result()
        except ResumeLimitError as refused:
            error = refused
            break
        except RuntimeError as failed:
            assert "injected failure" in str(failed)
    else:
        pytest.fail("never refused")
    assert run == 4
    claims = read_manifest(dirname)["claims"]
    assert len(claims) == run - 1  # refused before claiming
    stuck = [c for c in claims if c["epoch"] == 1]
    assert len(stuck) == run - 2
    message = str(error)
    assert all(c["flow_run_name"] in message for c in stuck)
    assert claims[0]["flow_run_name"] not in message  # run 1 made progress: not part of the loop
    assert "max_resumes=2" in message and "from epoch 1" in message
    before_fix = read_manifest(dirname)

    state = run_fit_flow(str(dirname), experiment, options={"max_resumes": run})  # cause fixed, limit raised
    net, record = trained_like_reference(state, reference(8))
    assert record["trained_epochs"] == [2, 8]
    assert [v["epoch"] for v in read_manifest(dirname)["versions"]] == [v["epoch"] for v in before_fix["versions"]] + list(range(2, 9))


@pytest.mark.slow
def test_crash_loop_of_killed_processes_stops_after_max_resumes(flow_process, tmp_path):
    """SIGKILLed in epoch 2 each time: runs 1-3 crash, run 4 fails fast (max_resumes=2)."""
    dirname, experiment = tmp_path / "ckpt", unique("crash-loop")
    cfg = {"dirname": str(dirname), "experiment": experiment, "kill_at": 2, "max_resumes": 2}
    for run in range(3):
        code, output = finish(flow_process(**cfg))
        assert code == -signal.SIGKILL, (run, output[-3000:])
    claims = read_manifest(dirname)["claims"]
    assert [c["epoch"] for c in claims] == [0, 1, 1]
    code, output = finish(flow_process(**cfg))
    assert code != 0 and code != -signal.SIGKILL, output[-3000:]
    assert "ResumeLimitError" in output
    for claim in claims[1:]:
        assert claim["flow_run_name"] in output
    assert read_manifest(dirname)["claims"] == claims


# -- 9. misuse -----------------------------------------------------------------------------------
def test_fit_in_flow_outside_a_flow_says_so(tmp_path):
    net = build_net(tmp_path / "ckpt", 2)
    with pytest.raises(RuntimeError, match=r"inside a Prefect flow.*@flow.*net\.fit"):
        fit_in_flow(net, X, y)
    assert not (tmp_path / "ckpt").exists()


@flow(name="orchestration-test-misuse")
def misuse_flow(dirname: str, callbacks: str):
    made = {"none": [], "train-end": [TrainEndCheckpoint(dirname=dirname)]}[callbacks]
    net = NeuralNetClassifier(MyModule, max_epochs=2, verbose=0, callbacks=made)
    return fit_in_flow(net, X, y)


@pytest.mark.parametrize("callbacks, hint", [("none", ""), ("train-end", "TrainEndCheckpoint saves only when")])
def test_net_without_checkpoint_is_refused_with_the_fix(prefect_server, tmp_path, callbacks, hint):
    state = misuse_flow(str(tmp_path / "ckpt"), callbacks, return_state=True)
    assert state.is_failed()
    with pytest.raises(ValueError, match=r"add Checkpoint\(monitor=None, dirname=\.\.\.\)") as error:
        state.result()
    assert hint in str(error.value)
    assert not (tmp_path / "ckpt").exists()



# -- 10. PrintLog's table in the run's logs ------------------------------------------------------
@flow(name="orchestration-log-test")
def printing_flow(dirname: str, experiment: str):
    net = build_net(dirname, max_epochs=3)
    net.set_params(verbose=1)
    torch.manual_seed(0)
    return fit_in_flow(net, X, y, experiment=experiment)


def test_print_log_lines_go_to_the_run_logs_and_the_console(prefect_server, tmp_path, capsys):
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    with temporary_settings({PREFECT_LOGGING_TO_API_ENABLED: True}):
        record = printing_flow(str(tmp_path / "ckpt"), unique("logs"))
        APILogWorker.drain_all()
    console = capsys.readouterr().out.splitlines()
    table = [line for line in console if line.strip() and line.split()[0] in ("epoch", "1", "2", "3")]
    assert len(table) == 4  # header and 3 rows, printed once each
    flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(record["flow_run_id"])]))
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            logs = [log for log in client.read_logs(log_filter=flt) if log.name == "prefect_torch.epochs"]
            if len(logs) >= 5 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
    messages = [log.message for log in logs]
    assert messages[0] == table[0] and messages[2:] == table[1:]  # header, separator, the 3 rows
    assert set(messages[1]) <= {"-", " "}
    assert all(log.task_run_id is not None for log in logs)  # logged from inside the epoch tasks


# -- 11. the net never leaves the flow's process -------------------------------------------------
class CountingNet(NeuralNetClassifier):
    """Counts how often it is pickled (Prefect's default cache policy would cloudpickle task
    arguments on every call to hash them)."""

    pickled = 0

    def __getstate__(self):
        CountingNet.pickled += 1
        return super().__getstate__()


@flow(name="orchestration-pickle-test")
def counting_flow(dirname: str, experiment: str):
    net = CountingNet(MyModule, max_epochs=4, batch_size=32, verbose=0,
                      callbacks=[Checkpoint(monitor=None, dirname=dirname)])
    record = fit_in_flow(net, X, y, experiment=experiment, epochs_per_task=2)
    return len(pickle.dumps(record)), CountingNet.pickled


def test_epoch_tasks_never_pickle_or_hash_the_net(prefect_server, tmp_path):
    CountingNet.pickled = 0
    record_size, pickled = counting_flow(str(tmp_path / "ckpt"), unique("pickle"))
    assert pickled == 0
    assert record_size < 2000  # the task and flow results are small records
    pickle.dumps(CountingNet(MyModule))  # (the counter works)
    assert CountingNet.pickled == 1
