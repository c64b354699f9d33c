"""One explicit training run: decisions follow the net as it trains (routed parameters
applied), and fit_in_flow leaves the user's net as it was given."""
from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from prefect import flow
from sklearn.base import clone

from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Checkpoint, LoadInitState
from prefect_torch.checkpoint import CheckpointStore, PendingFile
from prefect_torch.examples import MyModule, make_data
from prefect_torch.orchestration import fit_in_flow, train_flow
from test_orchestration import (  # noqa: F401  (flow_process, reference: fixtures)
    assert_same_weights,
    finish,
    flow_process,
    read_artifacts,
    read_flow_run,
    reference,
    run_fit_flow,
    unique,
    wait_for,
)

N_SAMPLES = 120


def factory_into_a(dirname_a: str = "", **params):
    """A user's factory whose net already checkpoints into directory A."""
    return NeuralNetClassifier(MyModule, max_epochs=3, verbose=0, batch_size=32,
                               callbacks=[("checkpoint", Checkpoint(monitor=None, dirname=dirname_a))], **params)


def commit_foreign_version(dirname, epoch):
    """A version of some other run in ``dirname`` (a decision read from it would show)."""
    store = CheckpointStore(dirname)
    store.begin()
    store.commit([PendingFile("params.pt", "f_params", lambda f: torch.save({"w": torch.ones(1)}, f))], epoch=epoch)


def test_train_flow_experiment_artifacts_and_resume_follow_checkpoint_dir(prefect_server, tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    commit_foreign_version(a, 7)  # A has a version at epoch 7: resuming from it would skip training
    common = {"net_factory": "test_training_run:factory_into_a", "data": "prefect_torch.examples:make_data",
              "checkpoint_dir": str(b), "net_params": {"dirname_a": str(a)},
              "data_params": {"n_samples": N_SAMPLES}}
    record = train_flow(**common)
    assert record["experiment"] == "B"  # the default experiment is the directory trained into
    assert record["checkpoint_dir"] == str(b)
    assert record["trained_epochs"] == [1, 3] and record["current"]["epoch"] == 3
    assert [v["epoch"] for v in json.loads((b / "manifest.json").read_text())["versions"]] == [1, 2, 3]
    assert [v["epoch"] for v in json.loads((a / "manifest.json").read_text())["versions"]] == [7]
    assert read_artifacts("b-checkpoints", record["flow_run_id"])  # keyed by B's experiment
    assert not read_artifacts("a-checkpoints", record["flow_run_id"])

    again = train_flow(**{**common, "max_epochs": 5})  # resumes from B's epoch 3, not A's 7
    assert again["trained_epochs"] == [4, 5] and again["epoch"] == 5


@flow(name="training-run-test")
def fit_and_report(net, resume, experiment):
    X, y = make_data(N_SAMPLES)
    record = fit_in_flow(net, X, y, experiment=experiment, resume=resume)
    return record


def comparable(params):
    """get_params() without what training itself creates (``callbacks__<name>`` entries of
    the initialized callbacks, which exist after any fit)."""
    return {k: v for k, v in params.items() if not k.startswith("callbacks__")}


@pytest.mark.parametrize("resume", ["latest", "extend", "never", None])
@pytest.mark.parametrize("own_loader", [False, True])
def test_fit_in_flow_leaves_the_nets_parameters_and_callbacks_as_given(prefect_server, tmp_path, resume,
                                                                         own_loader):
    cp = Checkpoint(monitor=None, dirname=str(tmp_path / "ckpt"))
    callbacks = [("checkpoint", cp)] + ([("load", LoadInitState(cp))] if own_loader else [])
    net = NeuralNetClassifier(MyModule, max_epochs=2, verbose=0, callbacks=list(callbacks))
    given_callbacks, given_params = list(net.callbacks), comparable(net.get_params())
    plain_names = [name for name, _ in clone(net).initialize().callbacks_]
    experiment = unique("as-given")
    for _ in range(2):  # a first run and a resumed one
        record = fit_and_report(net, resume, experiment)
        assert net.callbacks == given_callbacks
        assert all(a is b for a, b in zip(net.callbacks, given_callbacks))
        assert comparable(net.get_params()) == given_params
        assert [name for name, _ in net.callbacks_] == plain_names  # nothing added stays
        assert not any(isinstance(cb, LoadInitState) and cb is not callbacks[-1][1] for _, cb in net.callbacks_)
        assert "callbacks__resume" not in net.get_params()
    # what the policy decided (for the call only): 'extend', or the net's own LoadInitState, trains 2 more
    assert record["epoch"] == (4 if resume == "extend" or (resume is None and own_loader) else 2)
    assert Path(record["checkpoint_dir"]) == tmp_path / "ckpt"


# -- signals: Ctrl+C / SIGTERM end a flow run Cancelled, after the last commit ---------------------
SIGNAL_SCRIPT = textwrap.dedent('''
    """A training flow in its own process (config: argv[1], JSON): test_training_run.py signals it."""
    import json, os, pathlib, sys, time

    import torch
    from prefect import flow
    from prefect_torch import NeuralNetClassifier
    from prefect_torch.callbacks import Callback, Checkpoint
    from prefect_torch.examples import MyModule, make_data
    from prefect_torch.orchestration import TrainingInterrupted, fit_in_flow

    cfg = json.loads(sys.argv[1])
    torch.set_num_threads(1)


    class Hook(Callback):
        def on_epoch_begin(self, net, **kwargs):
            self.batches_ = 0

        def on_batch_end(self, net, training=False, **kwargs):
            if training and len(net.history) == cfg.get("pause_at"):
                self.batches_ += 1
                if self.batches_ == 3:  # mid-epoch: tell the test, give its signal time to arrive
                    pathlib.Path(cfg["marker"]).write_text(str(os.getpid()))
                    time.sleep(2)


    @flow(name="training-run-signals")
    def train():
        X, y = make_data(cfg["n_samples"])
        net = NeuralNetClassifier(MyModule, max_epochs=8, lr=0.1, batch_size=32, verbose=0,
                                  callbacks=[("checkpoint", Checkpoint(monitor=None, dirname=cfg["dirname"], keep_last=None)),
                                             ("hook", Hook())])
        torch.manual_seed(0)
        record = fit_in_flow(net, X, y, experiment=cfg["experiment"])
        torch.save(net.module_.state_dict(), cfg["out"])
        return record


    try:
        print("RECORD " + json.dumps(train()), flush=True)
    except TrainingInterrupted as stopped:
        print("INTERRUPTED " + json.dumps(stopped.record), flush=True)
        sys.exit(3)
''')


def line_of(output, prefix):
    lines = [line for line in output.splitlines() if line.startswith(prefix)]
    assert lines, output[-3000:]
    return json.loads(lines[-1][len(prefix):])


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_epoch_stops_after_the_commit_and_cancels_the_flow_run(prefect_server, tmp_path,
                                                                              reference, signum):  # noqa: F811
    script, marker, dirname = tmp_path / "signals.py", tmp_path / "in-epoch-5", tmp_path / "ckpt"
    script.write_text(SIGNAL_SCRIPT)
    cfg = {"n_samples": 300, "dirname": str(dirname), "experiment": unique("signal"), "marker": str(marker),
           "out": str(tmp_path / "final.pt")}

    def start(**extra):
        return prefect_server.start_python(script, json.dumps({**cfg, **extra}), env={"PYTHONUNBUFFERED": "1"},
                                           log_path=tmp_path / f"process-{time.monotonic_ns()}.log")

    proc = start(pause_at=5)
    wait_for(marker.exists, proc=proc, timeout=120)
    os.kill(proc.pid, signum)
    code, output = finish(proc)
    assert code == 3, output[-3000:]
    record = line_of(output, "INTERRUPTED ")
    name = signal.Signals(signum).name
    assert record["interrupted"] == {"signal": name, "epoch": 5}
    assert record["current"]["epoch"] == 5  # the epoch in progress finished and committed, no more
    manifest = json.loads((dirname / "manifest.json").read_text())
    assert [v["epoch"] for v in manifest["versions"]] == [1, 2, 3, 4, 5]
    assert manifest["claims"][-1]["finished"]  # a clean stop: the claim is released
    run = read_flow_run(record["flow_run_id"])
    assert run.state.is_cancelled(), run.state
    assert f"interrupted by {name} at epoch 5" in run.state.message
    assert not (tmp_path / "final.pt").exists()

    code, output = finish(start())  # the next run resumes from the last commit, intact
    assert code == 0, output[-3000:]
    again = line_of(output, "RECORD ")
    assert again["trained_epochs"] == [6, 8]
    assert_same_weights(torch.load(tmp_path / "final.pt", weights_only=True), reference(8))
    assert read_flow_run(again["flow_run_id"]).state.is_completed()


def test_store_writes_keep_the_users_crc32_setting():
    """The CRC32 switch is torch's, process-wide: a store write turns it off only while it runs
    and then puts back what the process had, whatever that was."""
    import io

    from prefect_torch.checkpoint.serialize import torch_writer

    for setting in (True, False):
        torch.serialization.set_crc32_options(setting)
        try:
            torch_writer({"w": torch.ones(2)})(io.BytesIO())
            assert torch.serialization.get_crc32_options() is setting
        finally:
            torch.serialization.set_crc32_options(True)


# -- a dead run that was taken over shows Crashed ------------------------------------------------------
@pytest.mark.slow
def test_a_dead_run_taken_over_is_marked_crashed_naming_the_new_run(flow_process, tmp_path):  # noqa: F811
    dirname, experiment = tmp_path / "ckpt", unique("taken-over")
    proc = flow_process(dirname=str(dirname), experiment=experiment, kill_at=4)  # SIGKILLs itself as epoch 4 begins
    code, output = finish(proc)
    assert code == -signal.SIGKILL, output[-3000:]
    (dead,) = json.loads((dirname / "manifest.json").read_text())["claims"]
    assert read_flow_run(dead["flow_run_id"]).state.is_running()  # what the UI showed forever

    state = run_fit_flow(str(dirname), experiment, max_epochs=5)
    assert state.is_completed(), state
    _, record = state.result()
    assert record["trained_epochs"] == [4, 5]
    taker = read_flow_run(record["flow_run_id"])
    crashed = read_flow_run(dead["flow_run_id"]).state
    assert crashed.is_crashed(), crashed
    assert f"flow run {taker.name!r} ({taker.id}) took over experiment {experiment!r}" in crashed.message
    assert f"pid {proc.pid}" in crashed.message and "epoch 3" in crashed.message


def test_sweeps_say_how_to_install_dask_when_it_is_missing(monkeypatch):
    from prefect_torch.orchestration.sweep import dask_task_runner

    monkeypatch.setitem(sys.modules, "prefect_dask", None)  # what an install without the extra has
    with pytest.raises(ImportError, match=r"pip install 'prefect-torch\[dask\]'"):
        dask_task_runner(None, 1)


def test_epochs_per_task_is_refused_before_a_sweep_starts(tmp_path):
    from prefect_torch.orchestration import sweep_flow

    with pytest.raises(ValueError, match="epochs_per_task=0: use a whole number >= 1"):
        sweep_flow.fn("prefect_torch.examples:make_net", "prefect_torch.examples:make_data", {"lr": [0.1]},
                      str(tmp_path / "sweep"), epochs_per_task=0)
    assert not (tmp_path / "sweep").exists()  # nothing planned, nothing written


def test_a_signal_noted_but_not_acted_on_is_delivered_when_the_call_ends():
    """A Ctrl+C that arrives as training ends is not lost: the process's handler gets it then."""
    from prefect_torch.orchestration.signals import InterruptRequests

    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with InterruptRequests() as interrupts:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            assert interrupts.requested == "SIGTERM" and seen == []  # noted only
        assert seen == [signal.SIGTERM]  # delivered once the block ended
        with InterruptRequests() as interrupts:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            interrupts.acted_on()
        assert seen == [signal.SIGTERM]  # training stopped on it: not delivered again
    finally:
        signal.signal(signal.SIGTERM, previous)
