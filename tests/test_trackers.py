"""Loggers for experiment trackers, against small fakes of the trackers' objects (none of the
libraries is installed here): what they log per epoch and batch, keys_ignored, closing, and
the install hint when a library is needed and missing."""
from __future__ import annotations

import io
import sys
import types
from collections import defaultdict

import pytest
import torch

from helpers import fit, make_net
from prefect_torch.callbacks import (
    Callback,
    LRScheduler,
    MlflowLogger,
    NeptuneLogger,
    SacredLogger,
    TensorBoard,
    WandbLogger,
)
from prefect_torch.callbacks.trackers import filter_log_keys
from prefect_torch.examples import make_data

X, y = make_data(200)
EPOCH_KEYS = {"train_loss", "valid_loss", "valid_acc", "dur"}


def epoch_values(net, key):
    return [row[key] for row in net.history]


# -- TensorBoard ---------------------------------------------------------------------------------
class Writer:
    def __init__(self):
        self.scalars = []
        self.closed = 0

    def add_scalar(self, tag, scalar_value, global_step=None):
        self.scalars.append((tag, scalar_value, global_step))

    def close(self):
        self.closed += 1


def test_tensorboard_logs_each_epochs_values_at_the_epoch():
    writer = Writer()
    net = fit(make_net(max_epochs=3, callbacks=[TensorBoard(writer)]), X, y)
    by_tag = defaultdict(list)
    for tag, value, step in writer.scalars:
        by_tag[tag].append((step, value))
    assert set(by_tag) == {"Loss/train_loss", "Loss/valid_loss", "Loss/valid_acc", "dur"}
    for tag, key in [("Loss/train_loss", "train_loss"), ("Loss/valid_acc", "valid_acc"), ("dur", "dur")]:
        assert by_tag[tag] == list(zip([1, 2, 3], epoch_values(net, key)))
    assert writer.closed == 1


def test_tensorboard_keys_ignored_mapper_and_keeping_the_writer_open():
    writer = Writer()
    tb = TensorBoard(writer, keys_ignored=["dur", "valid_loss", "unknown"], key_mapper=str.upper,
                     close_after_train=False)
    fit(make_net(callbacks=[tb]), X, y)
    assert {tag for tag, _, _ in writer.scalars} == {"TRAIN_LOSS", "VALID_ACC"}
    assert writer.closed == 0
    assert TensorBoard(writer, keys_ignored="a-key").initialize().keys_ignored_ == {"a-key", "batches"}


def test_tensorboard_skips_missing_keys_and_values_that_are_not_numbers():
    writer = Writer()
    tb = TensorBoard(writer)
    history = [{"epoch": 1, "loss": 0.1, "foo": ["a"]}, {"epoch": 2, "loss": 0.2, "foo": ["b"]}]
    tb.add_scalar_maybe(history, key="loss", tag="loss")
    tb.add_scalar_maybe(history, key="foo", tag="foo")
    tb.add_scalar_maybe(history, key="unknown", tag="unknown")
    tb.add_scalar_maybe(history, key="loss", tag="at", global_step=7)
    assert writer.scalars == [("loss", 0.2, 2), ("at", 0.2, 7)]


def test_tensorboard_directory_needs_tensorboard(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        make_net(callbacks=[TensorBoard(str(tmp_path))]).initialize()
    with pytest.raises(TypeError, match="SummaryWriter"):
        make_net(callbacks=[TensorBoard(None)]).initialize()


def test_tensorboard_directory_builds_a_summary_writer(monkeypatch, tmp_path):
    made = []

    class SummaryWriter(Writer):
        def __init__(self, log_dir):
            super().__init__()
            made.append((log_dir, self))

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = SummaryWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    fit(make_net(callbacks=[TensorBoard(tmp_path / "runs")]), X, y)
    (log_dir, writer), = made
    assert log_dir == str(tmp_path / "runs") and writer.closed == 1 and len(writer.scalars) == 8


# -- MLflow -----------------------------------------------------------------------------------------
class MlflowClient:
    def __init__(self):
        self.metrics = []
        self.artifacts = {}
        self.terminated = []

    def log_metric(self, run_id, key, value, step=None):
        self.metrics.append((run_id, key, value, step))

    def log_artifact(self, run_id, local_path):
        self.artifacts[local_path.name] = (run_id, local_path.read_bytes())

    def set_terminated(self, run_id):
        self.terminated.append(run_id)


def mlflow_run(run_id="r1"):
    return types.SimpleNamespace(info=types.SimpleNamespace(run_id=run_id))


def test_mlflow_epoch_metrics_artifacts_and_termination():
    client = MlflowClient()
    net = fit(make_net(max_epochs=3, callbacks=[MlflowLogger(mlflow_run(), client)]), X, y)
    assert {key for _, key, _, _ in client.metrics} == EPOCH_KEYS
    assert [(v, s) for _, k, v, s in client.metrics if k == "valid_loss"] == list(
        zip(epoch_values(net, "valid_loss"), [1, 2, 3]))
    assert {run_id for run_id, *_ in client.metrics} == {"r1"}
    assert sorted(client.artifacts) == ["criterion.pth", "history.json", "optimizer.pth", "params.pth"]
    params = torch.load(io.BytesIO(client.artifacts["params.pth"][1]), weights_only=True)
    for name, value in net.module_.state_dict().items():
        assert torch.equal(params[name], value)
    assert client.terminated == ["r1"]


def test_mlflow_batches_suffixes_and_steps():
    client = MlflowClient()
    logger = MlflowLogger(mlflow_run(), client, log_on_batch_end=True, create_artifact=False,
                          terminate_after_train=False, keys_ignored=["dur", "valid_acc"])
    net = fit(make_net(callbacks=[logger]), X, y)
    batch = [(k, v, s) for _, k, v, s in client.metrics if k.endswith("_batch")]
    expected = [(f"{k}_batch", v, i + 1) for i, row in enumerate(
        b for epoch in net.history for b in epoch["batches"]) for k, v in row.items()]
    assert batch == expected
    assert {k for _, k, _, _ in client.metrics if not k.endswith("_batch")} == {"train_loss_epoch",
                                                                                "valid_loss_epoch"}
    assert client.artifacts == {} and client.terminated == []
    custom = MlflowLogger(mlflow_run(), client, log_on_batch_end=True, log_on_epoch_end=False,
                          batch_suffix="_b").initialize()
    assert (custom.batch_suffix_, custom.epoch_suffix_) == ("_b", "")


def test_mlflow_defaults_come_from_mlflow_when_installed(monkeypatch):
    active = mlflow_run("active")
    mlflow = types.ModuleType("mlflow")
    mlflow.active_run = lambda: active
    tracking = types.ModuleType("mlflow.tracking")
    tracking.MlflowClient = MlflowClient
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", tracking)
    logger = MlflowLogger().initialize()
    assert logger.run_ is active and isinstance(logger.client_, MlflowClient)
    mlflow.active_run = lambda: None
    with pytest.raises(ValueError, match="mlflow.start_run"):
        MlflowLogger().initialize()


def test_mlflow_missing_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ImportError, match="pip install mlflow"):
        make_net(callbacks=[MlflowLogger()]).initialize()
    MlflowLogger(mlflow_run(), MlflowClient()).initialize()  # given both: mlflow is not needed


# -- Weights & Biases --------------------------------------------------------------------------------
class WandbRun:
    def __init__(self, directory):
        self.dir = str(directory)
        self.watched = []
        self.logged = []

    def watch(self, module):
        self.watched.append(module)

    def log(self, values):
        self.logged.append(values)


def test_wandb_logs_epochs_and_saves_the_best_model(tmp_path):
    run = WandbRun(tmp_path)
    best = {}

    class Snapshot(Callback):
        def on_epoch_end(self, net, **kwargs):
            if net.history[-1, "valid_loss_best"]:
                best["state"] = {k: v.clone() for k, v in net.module_.state_dict().items()}

    net = fit(make_net(max_epochs=3, lr=3.0, callbacks=[WandbLogger(run, keys_ignored="dur"), Snapshot()]), X, y)
    assert run.watched == [net.module_]
    assert run.logged == [{k: row[k] for k in ("train_loss", "valid_loss", "valid_acc")} for row in net.history]
    saved = torch.load(tmp_path / "best_model.pth", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in best["state"].items())


def test_wandb_without_validation_or_saving(tmp_path):
    run = WandbRun(tmp_path)
    fit(make_net(train_split=None, callbacks=[WandbLogger(run)]), X, y)
    assert [set(v) for v in run.logged] == [{"train_loss", "dur"}] * 2
    assert not (tmp_path / "best_model.pth").exists()


def test_wandb_active_run_and_missing_library(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match="pip install wandb"):
        WandbLogger().initialize()
    wandb = types.ModuleType("wandb")
    wandb.run = WandbRun(tmp_path)
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    assert WandbLogger().initialize().wandb_run_ is wandb.run
    wandb.run = None
    with pytest.raises(ValueError, match=r"wandb.init\(\)"):
        WandbLogger().initialize()


# -- Neptune ------------------------------------------------------------------------------------------
class NeptuneRun:
    """Fields set and series appended by path; ``stop`` counted."""

    def __init__(self):
        self.fields = {}
        self.series = defaultdict(list)
        self.stopped = 0

    def __getitem__(self, path):
        return Handler(self, path)

    def __setitem__(self, path, value):
        self.fields[path] = value

    def stop(self):
        self.stopped += 1


class Handler:
    def __init__(self, run, path):
        self.run, self.path = run, path

    def __getitem__(self, key):
        return Handler(self.run, f"{self.path}/{key}")

    def __setitem__(self, key, value):
        self.run.fields[f"{self.path}/{key}"] = value

    def append(self, value):
        self.run.series[self.path].append(value)

    def get_root_object(self):
        return self.run


@pytest.fixture
def neptune_types(monkeypatch):
    files = types.ModuleType("neptune.types")
    files.File = types.SimpleNamespace(from_content=lambda content, extension: ("file", content, extension))
    monkeypatch.setitem(sys.modules, "neptune", types.ModuleType("neptune"))
    monkeypatch.setitem(sys.modules, "neptune.types", files)


def test_neptune_logs_model_config_and_series(neptune_types):
    run = NeptuneRun()
    net = fit(make_net(max_epochs=3, callbacks=[NeptuneLogger(run)]), X, y)
    from prefect_torch import __version__

    assert run.fields["source_code/integrations/prefect-torch"] == __version__
    assert run.fields["training/model/model_type"] == "MyModule"
    assert run.fields["training/model/summary"] == ("file", str(net.module_), "txt")
    assert {k: run.fields[f"training/config/{k}"] for k in ("optimizer", "criterion", "lr", "epochs",
                                                           "batch_size", "device")} == {
        "optimizer": "SGD", "criterion": "NLLLoss", "lr": 0.5, "epochs": 3, "batch_size": 64, "device": "cpu"}
    assert dict(run.series) == {
        "training/train/epoch/loss": epoch_values(net, "train_loss"),
        "training/validation/epoch/loss": epoch_values(net, "valid_loss"),
        "training/validation/epoch/acc": epoch_values(net, "valid_acc"),
        "training/epoch_duration": epoch_values(net, "dur"),
    }
    assert run.stopped == 1


def test_neptune_batches_namespace_keys_ignored_and_learning_rates(neptune_types):
    run = NeptuneRun()
    handler = run["experiment"]
    logger = NeptuneLogger(handler, log_on_batch_end=True, keys_ignored=["dur", "valid_acc"],
                           base_namespace="mine/", close_after_train=True)
    net = fit(make_net(train_split=None, callbacks=[
        logger, LRScheduler("StepLR", step_size=1, event_name="event_lr")]), X, y)
    assert run.series["experiment/mine/train/batch/loss"] == net.history[:, "batches", :, "train_loss"][0] + \
        net.history[:, "batches", :, "train_loss"][1]
    assert run.series["experiment/mine/train/batch/batch_size"] == [64, 64, 64, 8] * 2
    assert run.series["experiment/mine/train/epoch/event_lr"] == [net.history[:, "event_lr"]]
    assert "experiment/mine/epoch_duration" not in run.series
    assert run.stopped == 1  # through the handler's root run


def test_neptune_keeps_the_run_open_and_needs_neptune(neptune_types, monkeypatch):
    run = NeptuneRun()
    fit(make_net(callbacks=[NeptuneLogger(run, close_after_train=False)]), X, y)
    assert run.stopped == 0
    monkeypatch.setitem(sys.modules, "neptune.types", None)
    with pytest.raises(ImportError, match="pip install neptune"):
        NeptuneLogger(run).initialize()


# -- Sacred --------------------------------------------------------------------------------------------
class SacredRun:
    def __init__(self):
        self.scalars = []

    def log_scalar(self, name, value, step=None):
        self.scalars.append((name, value, step))


def test_sacred_epoch_and_batch_scalars():
    run = SacredRun()
    net = fit(make_net(callbacks=[SacredLogger(run, log_on_batch_end=True, keys_ignored="dur")]), X, y)
    epochs = [s for s in run.scalars if s[0].endswith("_epoch")]
    assert epochs == [(f"{k}_epoch", row[k], row["epoch"]) for row in net.history
                      for k in ("train_loss", "valid_loss", "valid_acc")]
    batches = [s for s in run.scalars if s[0].endswith("_batch")]
    assert batches == [(f"{k}_batch", v, None) for row in net.history for b in row["batches"]
                       for k, v in b.items()]
    assert len(run.scalars) == len(epochs) + len(batches)


def test_sacred_only_epochs_by_default_and_rejects_a_non_run():
    run = SacredRun()
    fit(make_net(max_epochs=1, callbacks=[SacredLogger(run, epoch_suffix="!")]), X, y)
    assert {name for name, _, step in run.scalars} == {f"{k}!" for k in EPOCH_KEYS}
    with pytest.raises(TypeError, match="log_scalar"):
        SacredLogger(object()).initialize()


def test_filter_log_keys():
    keys = ["epoch", "dur", "train_loss", "valid_loss_best", "event_lr", "train_batch_count", "f1"]
    assert list(filter_log_keys(keys, keys_ignored={"f1"})) == ["dur", "train_loss"]


def test_no_tracker_library_is_imported_with_the_callbacks():
    import subprocess

    code = ("import sys, prefect_torch.callbacks; "
            "print(sorted(m for m in ('mlflow', 'wandb', 'neptune', 'sacred', 'tensorboard') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
