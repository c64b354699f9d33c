"""Checkpoints during training: :class:`Checkpoint`, :class:`TrainEndCheckpoint`, :class:`LoadInitState`.

>>> import tempfile
>>> from prefect_torch import NeuralNetClassifier
>>> from prefect_torch.examples import MyModule, make_data
>>> X, y = make_data(100)
>>> cp = Checkpoint(monitor=None, dirname=tempfile.mkdtemp())
>>> net = NeuralNetClassifier(MyModule, max_epochs=3, verbose=0,
...                           callbacks=[cp, LoadInitState(cp, until_max_epochs=True)])
>>> _ = net.fit(X, y)
>>> _ = net.fit(X, y)          # a re-run (e.g. after a crash) finds all 3 epochs done
>>> net.history[:, "epoch"], cp.store().latest_verified().epoch
([1, 2, 3], 3)

Files keep skorch's names and formats (``params.pt``, ``optimizer.pt``, ``criterion.pt``,
``history.json``) and add ``train_state.pt`` (random generators and callback state) for a
bit-exact resume. Each checkpoint is a verified, atomically committed version of the
directory (see :mod:`prefect_torch.checkpoint`); the plain files at its root always hold the
current one, so skorch reads them too.
"""
from __future__ import annotations

import io
import math
import os
import pickle
import re
import warnings
from typing import Any, Callable

import torch

from .. import train_state
from ..checkpoint import CheckpointConflictError, CheckpointSaveWarning, CheckpointStore, PendingFile
from ..checkpoint.background import BackgroundCommitter, Staging
from ..checkpoint.location import is_url
from ..checkpoint.redact import masked, without_secrets
from ..checkpoint.serialize import bytes_writer, torch_writer
from ..checkpoint.store import VersionName, check_version_name
from ..history import History, epoch_metrics
from ..persistence import history_json, load_state, open_target, part_of, safetensors_bytes, split_f_arguments
from .base import Callback, emit


def noop(*args: Any, **kwargs: Any) -> None:
    """The default sink: say nothing."""


class _SavesFiles(Callback):
    """Parameters include ``f_<part>`` extras given as keyword arguments (custom modules)."""

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        extras = {k: v for k, v in vars(self).items() if k.startswith("f_")}
        return {**extras, **super().get_params(deep)}

    def __repr__(self) -> str:
        """Parameters, with credentials in ``storage_options`` masked at any depth (reprs end
        up in logs)."""
        params = self.get_params()
        if params.get("storage_options"):
            params["storage_options"] = masked(params["storage_options"])
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in params.items())})"

    def set_params(self, **params: Any) -> Any:
        extras = {k: v for k, v in params.items() if k.startswith("f_") and k not in self.get_params()}
        split_f_arguments(type(self).__name__, **extras)
        vars(self).update(extras)
        return super().set_params(**{k: v for k, v in params.items() if k not in extras})


class Checkpoint(_SavesFiles):
    """Saves the net when ``monitor`` says so (default: when ``valid_loss`` improves).

    With a ``dirname`` and relative file names (the usual case), each save is a verified,
    atomically committed version of the directory (see :mod:`prefect_torch.checkpoint`); the
    plain skorch-named files at its root always hold the current version. A failed save is a
    :class:`~prefect_torch.checkpoint.CheckpointSaveWarning` (and a line to ``sink``), counted in
    the history as ``checkpoint_errors``, and training goes on.

    Parameters
    ----------
    monitor : str, callable or None, default="valid_loss_best"
        When to save: a history key holding a bool (``"valid_loss_best"``), a callable
        ``monitor(net) -> bool``, or ``None`` for every epoch (what resuming needs).
    f_params, f_optimizer, f_criterion : str, file object or None
        Files for the module's, optimizer's and criterion's ``state_dict`` (``torch.save``);
        ``None`` skips one. Names may be format strings such as
        ``"params_{last_epoch[epoch]}.pt"`` (``last_epoch``, ``last_batch``, ``net``).
    f_history : str or None, default="history.json"
        The history as JSON.
    f_pickle : str or None, default=None
        The whole net pickled (off by default: a pickle runs code when loaded).
    fn_prefix : str, default=""
        Put in front of every file name (and of the store's manifest): several series may
        share one directory.
    dirname : str or path, default=""
        The directory, or an fsspec URL such as ``"s3://bucket/run"``.
    event_name : str or None, default="event_cp"
        The history key recording, per epoch, whether a checkpoint was saved (``None``: none).
    sink : callable, default=noop
        Where messages go (e.g. ``print``); silent by default.
    load_best : bool, default=False
        Load the best checkpoint back into the net when training ends.
    use_safetensors : bool, default=False
        Write the state dicts of the module and criterion with safetensors instead of
        ``torch.save`` (``pip install 'prefect-torch[safetensors]'``); as in skorch, an optimizer's
        state cannot be stored that way, so ``f_optimizer`` must be ``None``. The train state
        stays a ``torch.save`` file.
    f_train_state : str or None, default="train_state.pt"
        Random generators and callback state, for a bit-exact resume.
    keep_last : int or None, default=3
        Versions kept after each commit, besides the current and the best (``None``: all).
    background : bool, default=False
        Write on a helper thread while training goes on (one commit in flight at a time).
    storage_options : dict or None, default=None
        Options of the fsspec file system of ``dirname``. Credentials (at any depth) are masked
        in every repr and message, and left out of ``f_pickle`` files.
    skip_non_finite : bool, default=True
        Never save an epoch whose ``train_loss`` or ``valid_loss`` is NaN or infinite: weights
        that diverged would become the version every resume continues from. The epoch is
        recorded in the history as ``checkpoint_skipped`` (the reason, e.g.
        ``'train_loss is nan'``) with a ``CheckpointSaveWarning``, and the previous version
        stays current. ``False`` saves such epochs like any other.
    **kwargs
        ``f_<part>`` files of further parts of a custom net (``f_mymodule="mymodule.pt"``).

    Examples
    --------
    >>> import tempfile
    >>> from prefect_torch import NeuralNetClassifier
    >>> from prefect_torch.examples import MyModule, make_data
    >>> cp = Checkpoint(monitor=None, dirname=tempfile.mkdtemp(), keep_last=2)
    >>> net = NeuralNetClassifier(MyModule, max_epochs=4, verbose=0, callbacks=[cp]).fit(*make_data(100))
    >>> [v.epoch for v in cp.store().read_manifest().versions], cp.store().latest_verified().epoch
    ([3, 4], 4)

    A diverging epoch is not saved (``skip_non_finite=True``):

    >>> import math, tempfile
    >>> from prefect_torch import NeuralNetClassifier
    >>> from prefect_torch.examples import MyModule, make_data
    >>> class Diverging(Callback):       # stands in for a learning rate that is far too high
    ...     def on_epoch_end(self, net, **kwargs):
    ...         if len(net.history) == 2:
    ...             net.history.record("train_loss", math.nan)
    >>> cp = Checkpoint(monitor=None, dirname=tempfile.mkdtemp())
    >>> net = NeuralNetClassifier(MyModule, max_epochs=3, verbose=0, callbacks=[Diverging(), cp])
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     _ = net.fit(*make_data(100))
    >>> net.history[:, "event_cp"], net.history[1]["checkpoint_skipped"]
    ([True, False, True], 'train_loss is nan')
    """

    call_order = 1  # after the other callbacks' on_epoch_end, so their state is saved; before PrintLog

    def __init__(self, monitor: Any = "valid_loss_best", f_params: Any = "params.pt",
                 f_optimizer: Any = "optimizer.pt", f_criterion: Any = "criterion.pt",
                 f_history: Any = "history.json", f_pickle: Any = None, fn_prefix: str = "",
                 dirname: Any = "", event_name: str | None = "event_cp", sink: Callable = noop,
                 load_best: bool = False, use_safetensors: bool = False,
                 f_train_state: Any = "train_state.pt", keep_last: int | None = 3,
                 background: bool = False, storage_options: dict | None = None, skip_non_finite: bool = True,
                 **kwargs: Any):
        self.monitor = monitor
        self.f_params = f_params
        self.f_optimizer = f_optimizer
        self.f_criterion = f_criterion
        self.f_history = f_history
        self.f_pickle = f_pickle
        self.fn_prefix = fn_prefix
        self.dirname = dirname
        self.event_name = event_name
        self.sink = sink
        self.load_best = load_best
        self.use_safetensors = use_safetensors
        self.f_train_state = f_train_state
        self.keep_last = keep_last
        self.background = background
        self.storage_options = storage_options
        self.skip_non_finite = skip_non_finite
        split_f_arguments(type(self).__name__, **kwargs)  # only f_<part> extras
        vars(self).update(kwargs)
        self._validate()

    def set_params(self, **params: Any) -> "Checkpoint":
        super().set_params(**params)
        self._validate()
        return self

    def _validate(self) -> None:
        if self.use_safetensors and self.f_optimizer is not None:
            raise ValueError("Cannot save optimizer state when using safetensors, please set "
                             f"f_optimizer=None or don't use safetensors ({type(self).__name__}).")
        if self.dirname and any(v is not None and not isinstance(v, str) for v in self._f_kwargs().values()):
            raise ValueError(f"{type(self).__name__}(dirname={self.dirname!r}) needs file names (strings) "
                             "for every f_* argument; pass file objects only without a dirname")

    def _f_kwargs(self) -> dict[str, Any]:
        """The skorch file arguments (``f_params``... and ``f_<part>`` extras), without the train state."""
        return {k: v for k, v in vars(self).items() if k.startswith("f_") and k != "f_train_state"}

    def _file_args(self) -> dict[str, Any]:
        return {**self._f_kwargs(), "f_train_state": self.f_train_state}

    def uses_store(self) -> bool:
        """True when every file is a plain name under ``dirname`` (the versioned store);
        file objects and paths (absolute, or with folders) are written as given, like skorch does."""
        return all(v is None or (isinstance(v, str) and "/" not in v and os.sep not in v)
                   for v in self._file_args().values())

    # -- life cycle ----------------------------------------------------------------------
    def initialize(self) -> "Checkpoint":
        self._validate()
        self.committer_: BackgroundCommitter | None = BackgroundCommitter() if self.background else None
        self.staging_ = Staging() if self.background else None
        self.errors_ = 0
        self.writing_ = False
        self._store_cache: tuple[tuple, CheckpointStore] | None = None
        return self

    def store(self) -> CheckpointStore:
        """The :class:`~prefect_torch.checkpoint.CheckpointStore` of ``dirname`` and ``fn_prefix``."""
        key = (os.fspath(self.dirname or "."), self.fn_prefix, self.keep_last, repr(self.storage_options))
        cached = getattr(self, "_store_cache", None)
        if cached is None or cached[0] != key:
            store = CheckpointStore(key[0], prefix=self.fn_prefix, keep_last=self.keep_last,
                                    finish_in_background=True, **(self.storage_options or {}))
            self._store_cache = cached = (key, store)
        return cached[1]

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        self.begin_writing()

    def begin_writing(self) -> None:
        """From now on, a commit by another writer to this directory makes this one stop
        (:class:`~prefect_torch.checkpoint.CheckpointConflictError`). Once per ``fit``; a
        :class:`LoadInitState` of this checkpoint calls it before it reads, so nothing
        committed after the loaded version goes unnoticed."""
        if self.uses_store() and not getattr(self, "writing_", False):
            self.store().begin()
            self.writing_ = True

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        self._collect_background_error(net)
        do_checkpoint = self._should_checkpoint(net)
        if do_checkpoint and self.skip_non_finite:
            do_checkpoint = not self._skip_non_finite(net)
        if self.event_name is not None:
            net.history.record(self.event_name, bool(do_checkpoint))
        if do_checkpoint:
            self.save_model(net)
            emit(self.sink, f"A checkpoint was triggered in epoch {len(net.history)}.", net.verbose)

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        self.wait()
        self.writing_ = False
        self._collect_background_error(net)
        if self.load_best and self.monitor is not None:
            emit(self.sink, "Loading best checkpoint after training.", net.verbose)
            net.load_params(checkpoint=self, use_safetensors=self.use_safetensors)

    def wait(self) -> None:
        """Block until the commit in flight (and its root files) are done."""
        committer = getattr(self, "committer_", None)
        if committer is not None:
            committer.wait()
        cached = getattr(self, "_store_cache", None)
        if cached is not None:
            cached[1].wait()

    def _should_checkpoint(self, net: Any) -> bool:
        if self.monitor is None:
            return True
        if callable(self.monitor):
            return bool(self.monitor(net))
        row = net.history[-1]
        if f"{self.monitor}_best" in row:
            warnings.warn(f"Checkpoint(monitor={self.monitor!r}) but the history also has "
                          f"'{self.monitor}_best'; did you mean monitor='{self.monitor}_best'?", UserWarning)
        if self.monitor not in row:
            raise KeyError(f"Checkpoint(monitor={self.monitor!r}): that key is not in the history (keys: "
                           f"{sorted(k for k in row if k != 'batches')}). Validation scores need validation "
                           "data (train_split).")
        return bool(row[self.monitor])

    def _skip_non_finite(self, net: Any) -> bool:
        """True (with a warning and a ``checkpoint_skipped`` entry) when this epoch's loss is not finite."""
        row = net.history[-1]
        bad = [f"{key} is {row[key]}" for key in ("train_loss", "valid_loss")
               if isinstance(row.get(key), (int, float)) and not math.isfinite(row[key])]
        if not bad:
            return False
        reason = ", ".join(bad)
        net.history.record("checkpoint_skipped", reason)
        text = (f"{type(self).__name__}: epoch {len(net.history)} is not saved, its {reason}; the previous "
                "checkpoint stays the current one. Lower the learning rate, or resume from that checkpoint "
                "(pass skip_non_finite=False to save such epochs anyway).")
        warnings.warn(text, CheckpointSaveWarning, stacklevel=3)
        if self.sink is not noop:
            emit(self.sink, text, net.verbose)
        return True

    # -- saving --------------------------------------------------------------------------
    def save_model(self, net: Any) -> None:
        """Save the net's files now (a new committed version when :meth:`uses_store`)."""
        epoch = len(net.history)
        try:
            if not self.uses_store():
                self._save_direct(net)
            elif getattr(self, "committer_", None) is not None:
                self._commit_in_background(net, epoch)
            else:
                self.store().commit(self._pending_files(net, None), epoch, **self._version_info(net))
        except CheckpointConflictError:
            raise
        except Exception as error:
            self._report_failure(net, epoch, error)

    def _name(self, net: Any, key: str, template: str, index: int = -1) -> str:
        """``fn_prefix`` + the file name for ``key``, formatted with epoch ``index`` of the history
        (``last_epoch``, ``last_batch``, ``net``); the history's own name is used as given, as in skorch."""
        if key == "f_history":
            return self.fn_prefix + template
        row = net.history[index] if len(net.history) else {}
        last_batch = row["batches"][-1] if row.get("batches") else {}
        return self.fn_prefix + template.format(net=net, last_epoch=row, last_batch=last_batch)

    def _pending_files(self, net: Any, staging: Staging | None) -> list[PendingFile]:
        parts, others = split_f_arguments(type(self).__name__, **self._f_kwargs())
        files = []
        for attr, template in parts.items():
            state = part_of(net, attr, type(self).__name__).state_dict()
            if staging is not None:
                state = staging.stage(attr, state)
            key = "f_params" if attr == "module_" else f"f_{attr[:-1]}"
            name = self._name(net, key, template)
            writer = bytes_writer(safetensors_bytes(state, name)) if self.use_safetensors else torch_writer(state)
            files.append(PendingFile(name, key, writer))
        if "f_history" in others:
            files.append(PendingFile(self._name(net, "f_history", others["f_history"]), "f_history",
                                     bytes_writer(history_json(net.history).encode())))
        if "f_pickle" in others:
            files.append(PendingFile(self._name(net, "f_pickle", others["f_pickle"]), "f_pickle",
                                     bytes_writer(pickle_without_credentials(net))))
        if self.f_train_state is not None:
            files.append(PendingFile(self._name(net, "f_train_state", self.f_train_state), "f_train_state",
                                     torch_writer(train_state.capture(net))))
        return files

    def _version_info(self, net: Any) -> dict[str, Any]:
        row = net.history[-1]
        metrics = epoch_metrics(row)
        best_key = self.monitor if isinstance(self.monitor, str) else "valid_loss_best"
        best = bool(row[best_key]) if best_key in row else self.monitor is None
        return {"metrics": metrics, "best": best}

    def _commit_in_background(self, net: Any, epoch: int) -> None:
        committer = self.committer_
        assert committer is not None
        committer.wait()
        self._collect_background_error(net)
        files = self._pending_files(net, self.staging_)
        info = self._version_info(net)
        store = self.store()
        committer.submit(lambda: store.commit(files, epoch, **info), label=epoch)

    def _save_direct(self, net: Any) -> None:
        """skorch's way: ``net.save_params`` to each file as given."""
        for key, target in self._f_kwargs().items():
            if target is None:
                continue
            target = self._join(self._name(net, key, target)) if isinstance(target, str) else target
            if key == "f_pickle":
                with open_target(target, "wb") as f:
                    f.write(pickle_without_credentials(net))
            else:
                net.save_params(**{key: target}, use_safetensors=self.use_safetensors and key != "f_history")

    def _join(self, name: str) -> str:
        return os.path.join(os.fspath(self.dirname), name) if self.dirname else name

    def _collect_background_error(self, net: Any) -> None:
        committer = getattr(self, "committer_", None)
        failed = committer.take_error() if committer is not None else None
        if failed is None:
            return
        epoch, error = failed
        if isinstance(error, CheckpointConflictError):
            raise error
        self._report_failure(net, epoch, error)

    def _report_failure(self, net: Any, epoch: int, error: BaseException) -> None:
        self.errors_ = getattr(self, "errors_", 0) + 1
        where = self.store().url if self.uses_store() else "its files"
        text = (f"{type(self).__name__} of epoch {epoch} to {where} failed: {type(error).__name__}: {error}. "
                "Training goes on; the previous checkpoint stays the current one.")
        warnings.warn(text, CheckpointSaveWarning, stacklevel=3)
        if self.sink is not noop:
            emit(self.sink, text, net.verbose)
        if self.event_name is not None and 0 < epoch <= len(net.history):
            net.history[epoch - 1][self.event_name] = False
        if len(net.history):
            net.history.record("checkpoint_errors", self.errors_)

    # -- loading -------------------------------------------------------------------------
    @property
    def f_history_(self) -> str | None:
        """Path of the history file at the directory's root (as skorch names it)."""
        return None if self.f_history is None else self._join(self.fn_prefix + self.f_history)

    def get_formatted_files(self, net: Any) -> dict[str, Any]:
        """The root file of each ``f_*`` argument, formatted for the last checkpointed epoch."""
        index = -1
        if self.event_name is not None and len(net.history):
            flags = [row.get(self.event_name) for row in net.history]
            index = max((i for i, flag in enumerate(flags) if flag), default=-1)
        return {key: self._join(self._name(net, key, template, index)) if isinstance(template, str) else template
                for key, template in self._file_args().items()}

    def files_to_load(self, net: Any, version: VersionName | None = None) -> dict[str, Any]:
        """What to load, by ``f_*`` argument: the newest intact committed version, or (for a
        directory without a manifest, e.g. written by skorch) the files at its root. Empty when
        there is no checkpoint.

        ``version`` (``'current'``, ``'best'`` or a version id) names one committed version
        instead: it is verified and never replaced by another (see
        :meth:`~prefect_torch.checkpoint.CheckpointStore.find`)."""
        if version is not None:
            check_version_name(version)
            if not self.uses_store():
                raise ValueError(f"version={version!r}: {type(self).__name__} writes its files as given (file "
                                 "objects or paths with folders), not as versions; name them with plain file "
                                 "names under dirname to pick a version")
        if self.uses_store():
            store = self.store()
            check = lambda v: unloadable_files(store, v, self.use_safetensors)  # noqa: E731
            found = store.latest_verified(check=check) if version is None else store.find(version, check=check)
            if found is not None:  # only the parts this checkpoint saves, whatever else a version lists
                wanted = {key for key, value in self._file_args().items() if value is not None}
                return {entry.key: store.source(found, name) for name, entry in found.files.items()
                        if entry.key in wanted}
            if is_url(os.fspath(self.dirname)):
                return {}
        return self._root_files(net)

    def _root_files(self, net: Any) -> dict[str, Any]:
        history_path = self.f_history_
        probe = net
        if history_path is not None and os.path.exists(history_path):
            probe = _HistoryOnly(History.from_file(history_path))
        try:
            files = self.get_formatted_files(probe)
        except (KeyError, IndexError):
            if len(probe.history):
                raise
            return {}  # the names need an epoch (``{last_epoch[epoch]}``) and none was saved yet
        return {k: v for k, v in files.items()
                if v is not None and (not isinstance(v, str) or os.path.exists(v)) and k != "f_pickle"}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for transient in ("committer_", "staging_", "_store_cache"):
            state.pop(transient, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "errors_" in state:  # an initialized checkpoint: rebuild what was dropped
            self.committer_ = BackgroundCommitter() if self.background else None
            self.staging_ = Staging() if self.background else None


class _WithoutCredentials(pickle.Pickler):
    """Pickles objects with every ``*storage_options`` attribute stripped of its secrets."""

    def reducer_override(self, obj: Any) -> Any:
        names = getattr(obj, "__dict__", None)
        if isinstance(obj, type) or not isinstance(names, dict) or not any(
                isinstance(k, str) and k.endswith("storage_options") for k in names):
            return NotImplemented
        reduced = obj.__reduce_ex__(pickle.DEFAULT_PROTOCOL)
        if not isinstance(reduced, tuple) or len(reduced) < 3 or not isinstance(reduced[2], dict):
            return NotImplemented
        state = {k: without_secrets(v) if isinstance(k, str) and k.endswith("storage_options") else v
                 for k, v in reduced[2].items()}
        return (*reduced[:2], state, *reduced[3:])


def pickle_without_credentials(net: Any) -> bytes:
    """``pickle.dumps(net)``, but credentials in ``storage_options`` (of its checkpoints, or
    routed through the net as ``callbacks__<name>__storage_options``) are left out: a pickle on
    shared storage must not hand out keys. Endpoints and other settings stay; set the
    credentials again after loading, or let fsspec read them from the environment."""
    buffer = io.BytesIO()
    _WithoutCredentials(buffer, protocol=pickle.DEFAULT_PROTOCOL).dump(net)
    return buffer.getvalue()


class _HistoryOnly:
    """Stands in for a net when formatting file names from a history read from disk."""

    def __init__(self, history: History):
        self.history = history


class TrainEndCheckpoint(_SavesFiles):
    """Saves the net once, when training ends (default file names start with ``train_end_``),
    unless the last epoch's loss is not finite (see ``skip_non_finite`` of :class:`Checkpoint`),
    or the fit trained no epoch and the current ``train_end_`` version already holds the net's last
    epoch (a re-run with every epoch done adds no duplicate version).

    >>> import os, tempfile
    >>> from prefect_torch import NeuralNetClassifier
    >>> from prefect_torch.examples import MyModule, make_data
    >>> folder = tempfile.mkdtemp()
    >>> net = NeuralNetClassifier(MyModule, max_epochs=2, verbose=0,
    ...                           callbacks=[TrainEndCheckpoint(dirname=folder)]).fit(*make_data(100))
    >>> sorted(name for name in os.listdir(folder) if name.endswith(".pt"))
    ['train_end_criterion.pt', 'train_end_optimizer.pt', 'train_end_params.pt', 'train_end_train_state.pt']
    """

    call_order = 1

    def __init__(self, f_params: Any = "params.pt", f_optimizer: Any = "optimizer.pt",
                 f_criterion: Any = "criterion.pt", f_history: Any = "history.json", f_pickle: Any = None,
                 fn_prefix: str = "train_end_", dirname: Any = "", use_safetensors: bool = False,
                 sink: Callable = noop, f_train_state: Any = "train_state.pt", keep_last: int | None = 3,
                 storage_options: dict | None = None, skip_non_finite: bool = True, **kwargs: Any):
        self.f_params = f_params
        self.f_optimizer = f_optimizer
        self.f_criterion = f_criterion
        self.f_history = f_history
        self.f_pickle = f_pickle
        self.fn_prefix = fn_prefix
        self.dirname = dirname
        self.use_safetensors = use_safetensors
        self.sink = sink
        self.f_train_state = f_train_state
        self.keep_last = keep_last
        self.storage_options = storage_options
        self.skip_non_finite = skip_non_finite
        split_f_arguments(type(self).__name__, **kwargs)
        vars(self).update(kwargs)
        if use_safetensors and f_optimizer is not None:
            raise ValueError("Cannot save optimizer state when using safetensors, please set "
                             f"f_optimizer=None or don't use safetensors ({type(self).__name__}).")

    def checkpoint(self) -> Checkpoint:
        """The :class:`Checkpoint` (``monitor=None``, no event column) that does the work."""
        files = {k: v for k, v in vars(self).items() if k.startswith("f_")}
        inner: Checkpoint | None = getattr(self, "checkpoint_", None)
        wanted = dict(files, fn_prefix=self.fn_prefix, dirname=self.dirname, sink=self.sink,
                      keep_last=self.keep_last, storage_options=self.storage_options,
                      skip_non_finite=self.skip_non_finite, use_safetensors=self.use_safetensors)
        if inner is None or any(getattr(inner, k, None) != v for k, v in wanted.items()):
            inner = Checkpoint(monitor=None, event_name=None, **wanted).initialize()
            self.checkpoint_ = inner
        return inner

    def initialize(self) -> "TrainEndCheckpoint":
        vars(self).pop("checkpoint_", None)  # a fresh one, with fresh state
        self.checkpoint()
        return self

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        self.epochs_run_ = 0

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        self.epochs_run_ = getattr(self, "epochs_run_", 0) + 1

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        checkpoint = self.checkpoint()
        if self.skip_non_finite and len(net.history) and checkpoint._skip_non_finite(net):
            return
        if self._already_saved(net, checkpoint):
            return
        checkpoint.store().begin() if checkpoint.uses_store() else None
        checkpoint.save_model(net)
        checkpoint.wait()
        emit(self.sink, "Final checkpoint triggered", net.verbose)

    def _already_saved(self, net: Any, checkpoint: Checkpoint) -> bool:
        """True when this fit trained no epoch and the current ``train_end_`` version already holds
        the net's last epoch (a re-run with every epoch done): saving again would only add a
        duplicate version. Otherwise (skorch's behaviour) the net is saved, even after no epoch."""
        if getattr(self, "epochs_run_", None) != 0 or not len(net.history) or not checkpoint.uses_store():
            return False
        manifest = checkpoint.store().read_manifest()
        return manifest is not None and manifest.current is not None \
            and manifest.current_epoch == len(net.history)

    # what LoadInitState and load_params(checkpoint=...) use
    def files_to_load(self, net: Any, version: VersionName | None = None) -> dict[str, Any]:
        return self.checkpoint().files_to_load(net, version)

    def get_formatted_files(self, net: Any) -> dict[str, Any]:
        return self.checkpoint().get_formatted_files(net)

    def store(self) -> CheckpointStore:
        return self.checkpoint().store()

    @property
    def f_history_(self) -> str | None:
        return self.checkpoint().f_history_


class LoadInitState(Callback):
    """Loads ``checkpoint`` (a :class:`Checkpoint` or :class:`TrainEndCheckpoint`) when training
    starts, if one exists: weights, optimizer, criterion, history, and the train state.

    Training then continues at the epoch after the loaded one. As in skorch, ``fit`` runs
    ``max_epochs`` more epochs; with ``until_max_epochs=True`` the loaded epochs count, so a run
    killed at epoch 7 of 12 finishes at 12 (and one that had finished does nothing).

    >>> import tempfile
    >>> from prefect_torch import NeuralNetClassifier
    >>> from prefect_torch.examples import MyModule, make_data
    >>> cp = Checkpoint(monitor=None, dirname=tempfile.mkdtemp())
    >>> def train(max_epochs):
    ...     net = NeuralNetClassifier(MyModule, max_epochs=max_epochs, verbose=0,
    ...                               callbacks=[cp, LoadInitState(cp, until_max_epochs=True)])
    ...     return net.fit(*make_data(100))
    >>> train(2).history[:, "epoch"], train(5).history[:, "epoch"]   # the second run resumes at 3
    ([1, 2], [1, 2, 3, 4, 5])

    ``version`` resumes from one named version rather than the newest intact one: ``'best'``,
    ``'current'``, or a version id (the ``version`` column of ``prefect-torch checkpoints``,
    not the epoch). It is verified and never replaced by another; a damaged one raises
    :class:`~prefect_torch.checkpoint.CheckpointCorruptError`, one that is not kept
    :class:`~prefect_torch.checkpoint.CheckpointVersionError`. With no checkpoint at all,
    training starts afresh as usual. Training goes on from the loaded epoch, and the next
    commits become the newest versions.

    >>> net = NeuralNetClassifier(MyModule, max_epochs=4, verbose=0,
    ...                           callbacks=[cp, LoadInitState(cp, version=3, until_max_epochs=True)])
    >>> net.fit(*make_data(100)).history[:, "epoch"]   # from version 3 (epoch 3) on, not from epoch 5
    [1, 2, 3, 4]
    """

    call_order = -1  # load before the other callbacks start (they see the loaded history)

    def __init__(self, checkpoint: Any, use_safetensors: bool = False, until_max_epochs: bool = False,
                 version: VersionName | None = None):
        self.checkpoint = checkpoint
        self.use_safetensors = use_safetensors
        self.until_max_epochs = until_max_epochs
        self.version = version

    def initialize(self) -> "LoadInitState":
        if self.version is not None:
            check_version_name(self.version)
        self.did_load_ = False
        self.loaded_epoch_: int | None = None
        self._pending_state: dict | None = None
        return self

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        if self.did_load_:
            return
        self.did_load_ = True
        begin_writing = getattr(self.checkpoint, "begin_writing", None)
        if begin_writing is not None and any(cb is self.checkpoint for _, cb in net.callbacks_):
            begin_writing()  # the fencing baseline is the manifest this load reads
        state = load_checkpoint(net, self.checkpoint, self.use_safetensors, self.version)
        if state is not None:
            self.loaded_epoch_ = len(net.history)
            self._pending_state = state or None

    def epoch_limit(self, net: Any) -> int | None:
        """With ``until_max_epochs``, the loaded epochs count towards ``max_epochs``."""
        return net.max_epochs if self.until_max_epochs else None

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        # generators and callback state go back only now: the other callbacks' on_train_begin
        # (which resets them) and the data split (which may draw numbers) have run
        if self._pending_state is not None:
            state, self._pending_state = self._pending_state, None
            train_state.restore(net, state)


def unloadable_files(store: CheckpointStore, version: Any, use_safetensors: bool = False) -> list[str]:
    """What in ``version`` (whose hashes match) cannot be loaded: state files that
    ``torch.load(weights_only=True)`` (or safetensors, for the parts saved with
    ``use_safetensors=True``) refuses, a history that is not a JSON list of epochs.
    Nothing is kept: local files are memory-mapped, so only their pickles are read."""
    problems = []
    for name, entry in version.files.items():
        if entry.key == "f_pickle":  # never loaded (a pickle runs code)
            continue
        source = store.source(version, name)
        try:
            if entry.key == "f_history":
                if not all(isinstance(row, dict) for row in History.from_file(source)):
                    raise ValueError("not a JSON list of epoch records")
            elif use_safetensors and entry.key != "f_train_state":  # train state: always torch.save
                load_state(source, "cpu", use_safetensors=True)
            else:
                torch.load(source, map_location="cpu", weights_only=True, mmap=isinstance(source, str))
        except Exception as error:
            problems.append(f"{name} matches its sha256 but cannot be loaded ({_load_failure(error)})")
        finally:
            if hasattr(source, "close"):
                source.close()
    return problems


def _load_failure(error: BaseException) -> str:
    """The gist of a load error, without torch's advice to turn the safe loader off."""
    text = str(error)
    match = re.search(r"WeightsUnpickler error: (.*?)(?:\.\s|\n|$)", text)
    detail = match.group(1) if match else (text.splitlines() or [""])[0]
    if "weights_only" in detail:
        detail = "it needs more than torch.load(weights_only=True) allows"
    return f"{type(error).__name__}: {detail}" if detail else type(error).__name__


def load_checkpoint(net: Any, checkpoint: Any, use_safetensors: bool = False,
                    version: VersionName | None = None) -> dict | None:
    """Load the newest intact version of ``checkpoint`` (or the one named by ``version``, see
    :meth:`Checkpoint.files_to_load`) into ``net`` (weights, optimizer, criterion, history) and
    return its train state, not yet applied (``{}`` if it has none); ``None`` when there is no
    checkpoint.

    Apply the state with :func:`prefect_torch.train_state.restore` once training is set up
    (:class:`LoadInitState` does it when the first epoch begins). Optimizer settings the user
    changed since the save take effect, and are reported.
    """
    files = checkpoint.files_to_load(net) if version is None else checkpoint.files_to_load(net, version)
    if not files:
        return None
    state_source = files.pop("f_train_state", None)
    files.pop("f_pickle", None)
    use_safetensors = use_safetensors or bool(getattr(checkpoint, "use_safetensors", False))
    net.load_params(**files, use_safetensors=use_safetensors)
    if state_source is None:
        return {}
    state = torch.load(state_source, map_location="cpu", weights_only=True)
    changed = train_state.apply_changed_optimizer_settings(net, state)
    if changed:
        emit(print, "Resuming with new optimizer settings: " + ", ".join(
            f"{k} {old} -> {new}" for k, (old, new) in changed.items()), net.verbose)
    return state
