"""Send the history to experiment trackers: :class:`TensorBoard`, :class:`MlflowLogger`,
:class:`WandbLogger`, :class:`NeptuneLogger` and :class:`SacredLogger`.

Each takes the tracker's own object (a ``SummaryWriter``, an MLflow run and client, a wandb
run, a Neptune run, a Sacred run) and logs every number of each epoch's row -- losses, scores,
``dur`` -- leaving out ``epoch``, the ``*_best`` flags, ``event_*`` keys, batch counts, the
batches and whatever ``keys_ignored`` names. The trackers' libraries are optional: a logger
imports its library only when it needs it (when it has to build the tracker's object itself),
and says what to ``pip install`` when it is missing.

>>> from prefect_torch import NeuralNetClassifier
>>> from prefect_torch.callbacks import TensorBoard
>>> from prefect_torch.examples import MyModule
>>> class Writer:  # a stand-in for torch.utils.tensorboard.SummaryWriter
...     def __init__(self):
...         self.scalars = []
...     def add_scalar(self, tag, scalar_value, global_step=None):
...         self.scalars.append((tag, global_step))
...     def close(self):
...         pass
>>> writer = Writer()
>>> from prefect_torch.examples import make_data
>>> net = NeuralNetClassifier(MyModule, max_epochs=2, verbose=0,
...                           callbacks=[TensorBoard(writer, keys_ignored="dur")]).fit(*make_data(100))
>>> sorted(writer.scalars)[:3]
[('Loss/train_loss', 1), ('Loss/train_loss', 2), ('Loss/valid_acc', 1)]
"""
from __future__ import annotations

import contextlib
import importlib
import numbers
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch

from .base import Callback


def require(module: str, package: str, user: str) -> Any:
    """Import ``module`` for ``user``, or raise an ``ImportError`` that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{user} needs the {package!r} package, which is not installed here "
            f"(import {module} failed: {error}); install it with: pip install {package}"
        ) from error


def filter_log_keys(keys: Iterable[str], keys_ignored: Iterable[str] | None = None) -> Iterator[str]:
    """The keys worth logging: not ``epoch``, ``*_best``, ``*_batch_count``, ``event_*``, nor one
    of ``keys_ignored``.

    >>> list(filter_log_keys(["epoch", "train_loss", "train_loss_best", "event_cp", "dur"], ["dur"]))
    ['train_loss']
    """
    ignored = set(keys_ignored or ())
    for key in keys:
        if key == "epoch" or key in ignored or key.endswith(("_best", "_batch_count")) or key.startswith("event_"):
            continue
        yield key


def _ignored_keys(keys_ignored: str | Iterable[str] | None) -> set[str]:
    keys = [keys_ignored] if isinstance(keys_ignored, str) else list(keys_ignored or ())
    return set(keys) | {"batches"}


def _suffix(suffix: str | None, default: str, both: bool) -> str:
    """The given suffix, else ``default`` when batches and epochs are both logged, else none."""
    if suffix is not None:
        return suffix
    return default if both else ""


class _Tracker(Callback):
    """Shared part: ``keys_ignored`` (a key or a list of keys) becomes ``keys_ignored_``."""

    keys_ignored: str | Iterable[str] | None

    def initialize(self) -> "_Tracker":
        self.keys_ignored_ = _ignored_keys(self.keys_ignored)
        return self

    def logged_items(self, row: dict) -> list[tuple[str, Any]]:
        """``(key, value)`` of ``row`` to log, in the row's order."""
        return [(key, row[key]) for key in filter_log_keys(row, self.keys_ignored_)]


# -- TensorBoard -----------------------------------------------------------------------------------
def rename_tensorboard_key(key: str) -> str:
    """Group losses and scores under ``Loss/`` in TensorBoard: keys starting with ``train`` or
    ``valid`` get the prefix.

    >>> rename_tensorboard_key("valid_acc"), rename_tensorboard_key("dur")
    ('Loss/valid_acc', 'dur')
    """
    return f"Loss/{key}" if key.startswith(("train", "valid")) else key


def _is_scalar(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, numbers.Number)


class TensorBoard(_Tracker):
    """Writes each epoch's values to TensorBoard as scalars, at the epoch number.

    Subclass it to log more (histograms, images) from any ``on_*`` hook through
    ``self.writer_``, calling ``super()`` last in ``on_epoch_end``.

    Parameters
    ----------
    writer : SummaryWriter, str or path
        A ``torch.utils.tensorboard.SummaryWriter`` (or any object with ``add_scalar`` and
        ``close``); a directory makes one writing there (this needs ``tensorboard``).
    close_after_train : bool
        Close the writer when training ends (default). Pass False to keep writing to it.
    keys_ignored : str, list of str or None
        Keys not to log, besides the flags, events and counts never logged.
    key_mapper : callable
        Maps a history key to a TensorBoard tag (default :func:`rename_tensorboard_key`).
    """

    def __init__(self, writer: Any, close_after_train: bool = True,
                 keys_ignored: str | Iterable[str] | None = None,
                 key_mapper: Callable[[str], str] = rename_tensorboard_key):
        self.writer = writer
        self.close_after_train = close_after_train
        self.keys_ignored = keys_ignored
        self.key_mapper = key_mapper

    def initialize(self) -> "TensorBoard":
        super().initialize()
        if isinstance(self.writer, (str, os.PathLike)):
            tensorboard = require("torch.utils.tensorboard", "tensorboard", "TensorBoard(writer=<directory>)")
            self.writer_ = tensorboard.SummaryWriter(log_dir=os.fspath(self.writer))
        elif self.writer is None or not callable(getattr(self.writer, "add_scalar", None)):
            raise TypeError(
                f"TensorBoard(writer={self.writer!r}): pass a torch.utils.tensorboard.SummaryWriter "
                "(or a log directory)"
            )
        else:
            self.writer_ = self.writer
        return self

    def add_scalar_maybe(self, history: Any, key: str, tag: str, global_step: int | None = None) -> None:
        """Log ``history[-1][key]`` under ``tag`` if it is there and is a number."""
        row = history[-1]
        value = row.get(key)
        if value is None or not _is_scalar(value):
            return
        step = row["epoch"] if global_step is None else global_step
        writer = getattr(self, "writer_", self.writer)
        with contextlib.suppress(NotImplementedError):  # a type the writer cannot show
            writer.add_scalar(tag=tag, scalar_value=value, global_step=step)

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        row = net.history[-1]
        for key, _ in self.logged_items(row):
            self.add_scalar_maybe(net.history, key=key, tag=self.key_mapper(key), global_step=row["epoch"])

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        if self.close_after_train:
            self.writer_.close()


# -- MLflow -----------------------------------------------------------------------------------------
class MlflowLogger(_Tracker):
    """Logs the history to an MLflow run as metrics and, at the end, the net's files as artifacts.

    Parameters
    ----------
    run : mlflow.entities.Run or None
        The run to log to; ``None``: ``mlflow.active_run()``.
    client : mlflow.tracking.MlflowClient or None
        The client; ``None``: a new ``MlflowClient()`` (tracking URI from MLflow's settings).
    create_artifact : bool
        At the end of training, log ``params.pth``, ``optimizer.pth``, ``criterion.pth`` and
        ``history.json`` (``net.save_params``) as artifacts.
    terminate_after_train : bool
        Mark the run terminated when training ends.
    log_on_batch_end, log_on_epoch_end : bool
        Log each batch's values (step: the batch count since ``fit`` began) and/or each
        epoch's (step: the epoch number).
    batch_suffix, epoch_suffix : str or None
        Appended to metric names; by default ``'_batch'``/``'_epoch'`` when both levels are
        logged, nothing otherwise.
    keys_ignored : str, list of str or None
        Keys not to log.
    """

    def __init__(self, run: Any = None, client: Any = None, create_artifact: bool = True,
                 terminate_after_train: bool = True, log_on_batch_end: bool = False,
                 log_on_epoch_end: bool = True, batch_suffix: str | None = None,
                 epoch_suffix: str | None = None, keys_ignored: str | Iterable[str] | None = None):
        self.run = run
        self.client = client
        self.create_artifact = create_artifact
        self.terminate_after_train = terminate_after_train
        self.log_on_batch_end = log_on_batch_end
        self.log_on_epoch_end = log_on_epoch_end
        self.batch_suffix = batch_suffix
        self.epoch_suffix = epoch_suffix
        self.keys_ignored = keys_ignored

    def initialize(self) -> "MlflowLogger":
        super().initialize()
        self.run_ = self.run
        if self.run_ is None:
            self.run_ = require("mlflow", "mlflow", "MlflowLogger(run=None)").active_run()
            if self.run_ is None:
                raise ValueError(
                    "MlflowLogger(run=None) logs to the active MLflow run, and there is none: "
                    "fit inside `with mlflow.start_run():`, or pass run= and client="
                )
        self.client_ = self.client
        if self.client_ is None:
            self.client_ = require("mlflow.tracking", "mlflow", "MlflowLogger(client=None)").MlflowClient()
        both = self.log_on_batch_end and self.log_on_epoch_end
        self.batch_suffix_ = _suffix(self.batch_suffix, "_batch", both)
        self.epoch_suffix_ = _suffix(self.epoch_suffix, "_epoch", both)
        self.batch_count_ = 0
        return self

    def _log(self, row: dict, suffix: str, step: int) -> None:
        run_id = self.run_.info.run_id
        for key, value in self.logged_items(row):
            self.client_.log_metric(run_id, key + suffix, value, step=step)

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        self.batch_count_ = 0

    def on_batch_end(self, net: Any, **kwargs: Any) -> None:
        if self.log_on_batch_end:
            self.batch_count_ += 1
            self._log(net.history[-1]["batches"][-1], self.batch_suffix_, self.batch_count_)

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        if self.log_on_epoch_end:
            self._log(net.history[-1], self.epoch_suffix_, len(net.history))

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        try:
            if self.create_artifact:
                self.log_artifacts(net)
        finally:
            if self.terminate_after_train:
                self.client_.set_terminated(self.run_.info.run_id)

    def log_artifacts(self, net: Any) -> None:
        """Save the net's files into a temporary directory and log each as an artifact."""
        with tempfile.TemporaryDirectory(prefix="prefect_torch_mlflow_") as tmp:
            files = {"f_params": Path(tmp, "params.pth"), "f_optimizer": Path(tmp, "optimizer.pth"),
                     "f_criterion": Path(tmp, "criterion.pth"), "f_history": Path(tmp, "history.json")}
            net.save_params(**files)
            for path in files.values():
                self.client_.log_artifact(self.run_.info.run_id, path)


# -- Weights & Biases -----------------------------------------------------------------------------
class WandbLogger(_Tracker):
    """Logs each epoch's values to a Weights & Biases run, and saves the best model into it.

    Parameters
    ----------
    wandb_run : wandb Run or None
        The run (``wandb.init()``); ``None``: the active run, ``wandb.run``.
    save_model : bool
        After an epoch with the best ``valid_loss`` so far, save the module's parameters as
        ``best_model.pth`` in the run's directory (W&B uploads it).
    keys_ignored : str, list of str or None
        Keys not to log.
    """

    def __init__(self, wandb_run: Any = None, save_model: bool = True,
                 keys_ignored: str | Iterable[str] | None = None):
        self.wandb_run = wandb_run
        self.save_model = save_model
        self.keys_ignored = keys_ignored

    def initialize(self) -> "WandbLogger":
        super().initialize()
        self.wandb_run_ = self.wandb_run
        if self.wandb_run_ is None:
            self.wandb_run_ = require("wandb", "wandb", "WandbLogger(wandb_run=None)").run
            if self.wandb_run_ is None:
                raise ValueError("WandbLogger(wandb_run=None) logs to the active W&B run, and there is none: "
                                 "call wandb.init() first, or pass wandb_run=wandb.init()")
        return self

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        """Let W&B watch the module (its graph and gradients)."""
        self.wandb_run_.watch(net.module_)

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        row = net.history[-1]
        self.wandb_run_.log(dict(self.logged_items(row)))
        if self.save_model and row.get("valid_loss_best"):
            with open(Path(self.wandb_run_.dir) / "best_model.pth", "wb") as f:
                net.save_params(f_params=f)


# -- Neptune ------------------------------------------------------------------------------------------
class NeptuneLogger(_Tracker):
    """Logs the model, the configuration and the history to a Neptune run.

    Values go to ``<base_namespace>/<train|validation>/<epoch|batch>/<name>`` (``valid_acc``:
    ``training/validation/epoch/acc``); ``dur`` to ``<base_namespace>/epoch_duration``.

    Parameters
    ----------
    run : neptune Run or Handler
        Where to log (``neptune.init_run()``, or a namespace of one: ``run['my/namespace']``).
    log_on_batch_end : bool
        Also log every batch's values.
    close_after_train : bool
        Stop the run when training ends.
    keys_ignored : str, list of str or None
        Keys not to log.
    base_namespace : str
        The namespace in the run everything goes under (default ``'training'``).
    """

    def __init__(self, run: Any, *, log_on_batch_end: bool = False, close_after_train: bool = True,
                 keys_ignored: str | Iterable[str] | None = None, base_namespace: str = "training"):
        self.run = run
        self.log_on_batch_end = log_on_batch_end
        self.close_after_train = close_after_train
        self.keys_ignored = keys_ignored
        self.base_namespace = base_namespace

    def initialize(self) -> "NeptuneLogger":
        super().initialize()
        self.file_type_ = require("neptune.types", "neptune", "NeptuneLogger").File
        self.namespace_ = self.base_namespace.rstrip("/")
        from .. import __version__

        self.run["source_code/integrations/prefect-torch"] = __version__
        return self

    @property
    def metrics(self) -> Any:
        """The run's handler of ``base_namespace``."""
        return self.run[self.namespace_]

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        fields = {
            "model/model_type": type(net.module_).__name__,
            "model/summary": self.file_type_.from_content(str(net.module_), extension="txt"),
            "config/optimizer": type(net.optimizer_).__name__,
            "config/criterion": type(net.criterion_).__name__,
            "config/lr": net.lr,
            "config/epochs": net.max_epochs,
            "config/batch_size": net.batch_size,
            "config/device": net.device,
        }
        for field, value in fields.items():
            self.metrics[field] = value

    def log_value(self, name: str, value: Any, batch: bool) -> None:
        """Append ``value`` to the series ``name`` maps to (see the class docstring)."""
        kind, _, rest = name.partition("_")
        if not rest:
            self.metrics["epoch_duration" if kind == "dur" else kind].append(value)
            return
        phase = "validation" if kind == "valid" else kind
        self.metrics[phase]["batch" if batch else "epoch"][rest].append(value)

    def on_batch_end(self, net: Any, **kwargs: Any) -> None:
        if self.log_on_batch_end:
            for key, value in self.logged_items(net.history[-1]["batches"][-1]):
                self.log_value(key, value, batch=True)

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        for key, value in self.logged_items(net.history[-1]):
            self.log_value(key, value, batch=False)

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        with contextlib.suppress(KeyError):  # learning rates, when an LRScheduler recorded them
            self.metrics["train/epoch/event_lr"].append(net.history[:, "event_lr"])
        if self.close_after_train:
            root = self.run.get_root_object() if hasattr(self.run, "get_root_object") else self.run
            root.stop()


# -- Sacred ---------------------------------------------------------------------------------------------
class SacredLogger(_Tracker):
    """Logs the history to a Sacred run with ``log_scalar`` (epoch values at the epoch number).

    Add scoring callbacks before the logger, so their values are in the row it logs.

    Parameters
    ----------
    experiment : sacred Run
        The ``_run`` of a Sacred main function (anything with ``log_scalar``).
    log_on_batch_end, log_on_epoch_end : bool
        Log each batch's values (Sacred counts the steps) and/or each epoch's.
    batch_suffix, epoch_suffix : str or None
        Appended to metric names; by default ``'_batch'``/``'_epoch'`` when both levels are
        logged, nothing otherwise.
    keys_ignored : str, list of str or None
        Keys not to log.
    """

    def __init__(self, experiment: Any, log_on_batch_end: bool = False, log_on_epoch_end: bool = True,
                 batch_suffix: str | None = None, epoch_suffix: str | None = None,
                 keys_ignored: str | Iterable[str] | None = None):
        self.experiment = experiment
        self.log_on_batch_end = log_on_batch_end
        self.log_on_epoch_end = log_on_epoch_end
        self.batch_suffix = batch_suffix
        self.epoch_suffix = epoch_suffix
        self.keys_ignored = keys_ignored

    def initialize(self) -> "SacredLogger":
        super().initialize()
        if not callable(getattr(self.experiment, "log_scalar", None)):
            raise TypeError(f"SacredLogger(experiment={self.experiment!r}): pass the Sacred run (the _run "
                            "argument of your main function), which has log_scalar")
        both = self.log_on_batch_end and self.log_on_epoch_end
        self.batch_suffix_ = _suffix(self.batch_suffix, "_batch", both)
        self.epoch_suffix_ = _suffix(self.epoch_suffix, "_epoch", both)
        return self

    def on_batch_end(self, net: Any, **kwargs: Any) -> None:
        if self.log_on_batch_end:
            for key, value in self.logged_items(net.history[-1]["batches"][-1]):
                self.experiment.log_scalar(key + self.batch_suffix_, value)

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        if self.log_on_epoch_end:
            row = net.history[-1]
            for key, value in self.logged_items(row):
                self.experiment.log_scalar(key + self.epoch_suffix_, value, row["epoch"])
