"""The base estimator :class:`NeuralNet`: parameters, ``initialize``, the training loop, inference.

>>> import numpy as np, torch
>>> X, y = np.random.rand(64, 3).astype(np.float32), np.random.rand(64, 1).astype(np.float32)
>>> net = NeuralNet(torch.nn.Linear, criterion=torch.nn.MSELoss, module__in_features=3,
...                 module__out_features=1, max_epochs=2, verbose=0)
>>> net.fit(X, y).predict(X).shape
(64, 1)

Each step of training is one small method (``get_iterator``, ``train_step``,
``validation_step``, ``infer``, ``get_loss``...) so a subclass changes one step by
overriding one method.
"""
from __future__ import annotations

import contextlib
import fnmatch
import inspect
import io
import numbers
import os
import pickle
import re
import warnings
from typing import Any, Callable, Iterator

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from .callbacks import Callback, EpochTimer, PassthroughScoring, PrintLog
from .checkpoint.redact import masked
from .data import Dataset, ValidSplit, as_dataset, check_same_length, make_iterator
from .diagnostics import (
    check_elementwise_shapes,
    explain_loss_error,
    explain_module_error,
)
from .epochs import run_epochs
from .exceptions import DeviceWarning, NotInitializedError, SkorchTrainingImpossibleError
from .history import History
from .params import (
    PREFIXES,
    check_accepts,
    prefix_of,
    unknown_kwarg_message,
)
from .parts import KINDS, PartRegistry
from .persistence import (
    apply_state_dict,
    history_json,
    load_state,
    map_location_for,
    open_target,
    part_of,
    safetensors_bytes,
    save_torch,
    split_f_arguments,
)
from .routing import FitRequests
from .utils import (
    closest_name,
    get_len,
    is_torch_dataset,
    params_for,
    to_numpy,
    to_tensor,
)

DataLoader = torch.utils.data.DataLoader
_GROUP_PARAM = re.compile(r"param_groups__(\d+)__(\w+)$")
_ABSENT = object()


class _LearnableParams:
    """Re-iterable ``(name, parameter)`` pairs of the module and criterion, built only if used."""

    def __init__(self, net: "NeuralNet"):
        self.net = net

    def __iter__(self) -> Iterator[tuple[str, nn.Parameter]]:
        return self.net.get_all_learnable_params()


class NeuralNet(PartRegistry, FitRequests, BaseEstimator):
    """A scikit-learn estimator that trains a ``torch.nn.Module``.

    Arguments for the parts are routed by prefix: ``module__num_units=20`` goes to the module,
    ``optimizer__momentum``, ``criterion__weight``, ``iterator_train__shuffle``,
    ``dataset__*`` and ``callbacks__<name>__<param>`` likewise.

    >>> net = NeuralNet(torch.nn.Linear, torch.nn.MSELoss, module__in_features=4,
    ...                 module__out_features=1, lr=0.1)
    >>> net.initialize().module_
    Linear(in_features=4, out_features=1, bias=True)
    """

    #: argument prefixes routed to the net's parts; subclasses with more parts extend it
    #: (``prefixes_ = NeuralNet.prefixes_ + ["head"]``); parts created in ``initialize_*`` add theirs
    prefixes_: list[str] = list(PREFIXES)

    def __init__(
        self,
        module: Any,
        criterion: Any,
        optimizer: Any = torch.optim.SGD,
        lr: float = 0.01,
        max_epochs: int = 10,
        batch_size: int = 128,
        iterator_train: Any = DataLoader,
        iterator_valid: Any = DataLoader,
        dataset: Any = Dataset,
        train_split: Callable | None = ValidSplit(5),
        callbacks: Any = None,
        predict_nonlinearity: Any = "auto",
        warm_start: bool = False,
        verbose: int = 1,
        device: str | torch.device | None = "cpu",
        compile: bool = False,
        use_caching: bool | str = "auto",
        torch_load_kwargs: dict | None = None,
        **kwargs: Any,
    ):
        self.module = module
        self.criterion = criterion
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.iterator_train = iterator_train
        self.iterator_valid = iterator_valid
        self.dataset = dataset
        self.train_split = train_split
        self.callbacks = callbacks
        self.predict_nonlinearity = predict_nonlinearity
        self.warm_start = warm_start
        self.verbose = verbose
        self.device = device
        self.compile = compile
        self.use_caching = use_caching
        self.torch_load_kwargs = torch_load_kwargs
        history = kwargs.pop("history", None)  # e.g. a DistributedHistory; not a parameter (as in skorch)
        if history is not None:
            self.history_ = history
        # like scikit-learn, arguments are checked when the net is initialized, not here: a
        # subclass's initialize_module may add the prefix that ``mymodule__x`` needs
        for name, value in kwargs.items():
            setattr(self, name, value)
        self._extra_kwargs = sorted(kwargs)
        self._prediction_cache: list[Any] | None = None

    # -- parameters ---------------------------------------------------------------------------
    @classmethod
    def _init_defaults(cls) -> dict[str, Any]:
        """Named ``__init__`` arguments (of this class and the nets it extends) and their defaults."""
        defaults: dict[str, Any] = {}
        for klass in cls.__mro__:
            if "__init__" in vars(klass) and issubclass(klass, NeuralNet):
                for name, p in inspect.signature(klass.__init__).parameters.items():
                    if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                        defaults.setdefault(name, p.default)
        return defaults

    @classmethod
    def _init_param_names(cls) -> list[str]:
        return list(cls._init_defaults())

    def _prefix_of(self, name: str) -> str | None:
        return prefix_of(name, self.prefixes_)

    def _check_kwargs(self) -> None:
        """Raise one ValueError naming every argument that is neither a parameter nor routed to a
        part the initialized net has (``mymodule__x`` is fine once ``mymodule_`` exists)."""
        valid = self._init_param_names()
        given = set(self.__dict__.get("_extra_kwargs", ())) | set(self._routed_params())
        unknown = sorted(name for name in given if name in vars(self) and name not in valid
                         and (self._prefix_of(name) is None or name.endswith("_")))
        if unknown:
            raise ValueError("\n".join(
                unknown_kwarg_message(type(self).__name__, name, valid, self.prefixes_) for name in unknown))

    def _routed_params(self) -> dict[str, Any]:
        """Every ``prefix__name`` argument, including ones whose part does not exist yet."""
        return {k: v for k, v in vars(self).items() if "__" in k.strip("_")}

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor arguments, including the routed ``prefix__x`` ones."""
        params = {name: getattr(self, name) for name in self._init_param_names()}
        params.update({name: vars(self)[name] for name in self.__dict__.get("_extra_kwargs", ())
                       if name in vars(self)})
        params.update(self._routed_params())
        if deep and getattr(self, "initialized_", False):
            for name, cb in self.callbacks_:
                params.setdefault(f"callbacks__{name}", cb)
                for key, value in cb.get_params().items():
                    params.setdefault(f"callbacks__{name}__{key}", value)
        return params

    def get_params_for(self, prefix: str) -> dict[str, Any]:
        """The routed arguments for one part, e.g. ``get_params_for('module')``."""
        return params_for(prefix, self._routed_params())

    def set_params(self, **params: Any) -> "NeuralNet":
        """Set parameters; parts whose parameters changed are re-initialized (``lr`` in place)."""
        valid = self._init_param_names()
        initialized = getattr(self, "initialized_", False)
        for name in params:
            routed = self._prefix_of(name) is not None or ("__" in name and not initialized)
            if name not in valid and not routed:
                raise ValueError(
                    f"invalid parameter {name!r} for {type(self).__name__}{closest_name(name, valid)}"
                    + ("" if "__" not in name else f" (the prefixes it knows: {', '.join(self.prefixes_)})")
                )
        previous = {name: vars(self).get(name, _ABSENT) for name in params}
        for name, value in params.items():
            setattr(self, name, value)
        if getattr(self, "initialized_", False):
            try:
                self._reinitialize_changed(set(params))
            except Exception:  # keep the net usable: put the old values back
                for name, value in previous.items():
                    if value is _ABSENT:
                        delattr(self, name)
                    else:
                        setattr(self, name, value)
                raise
        return self

    def _reinitialize_changed(self, changed: set[str]) -> None:
        """Rebuild what the changed parameters configure: a module (any of ``_modules``) rebuilds
        the modules, criteria and optimizers; a criterion the criteria and optimizers; an
        optimizer's hyper-parameters change in place where they can."""
        def touched(kind: str) -> list[str]:
            names = self._names_of(kind)
            return sorted(n for n in changed if n in names or self._prefix_of(n) in names)

        if any(n == "callbacks" or self._prefix_of(n) == "callbacks" for n in changed):
            self.initialize_callbacks()
        compile_changed = sorted(n for n in changed if n == "compile" or self._prefix_of(n) == "compile")
        module_changed = touched("module") + compile_changed
        criterion_changed = touched("criterion")
        optimizer_changed = touched("optimizer") + sorted(changed & {"lr"})
        # the message names the parameters that started the rebuild; the parts after it follow
        if module_changed:
            self._initialize_part("module", module_changed)
        if module_changed or criterion_changed:
            self._initialize_part("criterion", None if module_changed else criterion_changed)
            self._initialize_part("optimizer", None)
        elif optimizer_changed:
            self._update_optimizer_hyperparams(optimizer_changed)

    def _update_optimizer_hyperparams(self, changed: list[str]) -> None:
        """Change ``lr``/``<optimizer>__x`` in place when every param group of that optimizer has
        ``x``, else rebuild the optimizers. ``<optimizer>__param_groups__<i>__<x>`` changes group ``i``."""
        for prefix in self._names_of("optimizer"):
            mine = [n for n in changed if self._prefix_of(n) == prefix or (n == "lr" and prefix == "optimizer")]
            optimizer = getattr(self, prefix + "_", None)
            if not mine or not isinstance(optimizer, torch.optim.Optimizer):
                continue
            _, kwargs = self.get_params_for_optimizer(prefix, [])
            if prefix != "optimizer" and "lr" not in self.get_params_for(prefix):
                kwargs.pop("lr")  # the net's lr belongs to the default optimizer
            suffixes = ["lr" if n == "lr" else n[len(prefix) + 2:] for n in mine]
            shared = [name for name in suffixes if not _GROUP_PARAM.match(name)]
            groups = optimizer.param_groups
            if {"param_groups"} & set(shared) or prefix in changed or not all(
                name in group and name in kwargs for group in groups for name in shared
            ):
                self._initialize_part("optimizer", changed)
                return
            for group in groups:
                for name in shared:
                    group[name] = kwargs[name]
            self._apply_group_overrides(optimizer, prefix)

    def _apply_group_overrides(self, optimizer: torch.optim.Optimizer, prefix: str) -> None:
        """Apply ``<prefix>__param_groups__<i>__<x>`` arguments to the built optimizer's groups."""
        groups = optimizer.param_groups
        for name, value in self.get_params_for(prefix).items():
            match = _GROUP_PARAM.match(name)
            if match:
                index, key = int(match.group(1)), match.group(2)
                if index >= len(groups):
                    raise ValueError(
                        f"{prefix}__{name}: the optimizer has {len(groups)} param group(s), "
                        f"so there is no group {index}"
                    )
                groups[index][key] = value

    # -- initialization -------------------------------------------------------------------------
    def get_default_callbacks(self) -> list[tuple[str, Any]]:
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("print_log", PrintLog()),
        ]

    def _named_callbacks(self) -> list[tuple[str, Any]]:
        """Defaults then user callbacks, uniquely named, ordered by their ``call_order``
        (LoadInitState first; Checkpoints, then PrintLog, last so they see every key).

        Unnamed callbacks are named after their class; repeated names get ``_1``, ``_2``...
        unless a user set the name, which must then be unique.
        """
        if self.callbacks == "disable":
            return []
        groups: dict[str, list[Any]] = {}
        named_by_user = set()
        for name, cb in self.get_default_callbacks():
            groups.setdefault(name, []).append(cb)
        for item in self.callbacks or []:
            if isinstance(item, tuple):
                name, cb = item
                named_by_user.add(name)
            else:
                cb = item
                name = (item if isinstance(item, type) else type(item)).__name__
            groups.setdefault(name, []).append(cb)
        named = []
        for name, cbs in groups.items():
            if len(cbs) > 1 and name in named_by_user:
                raise ValueError(
                    f"two callbacks are named {name!r}; give them unique names, "
                    f"e.g. callbacks=[('{name}_a', cb1), ('{name}_b', cb2)]"
                )
            for i, cb in enumerate(cbs, start=1):
                unique = f"{name}_{i}" if len(cbs) > 1 else name
                if len(cbs) > 1 and unique in groups:
                    raise ValueError(
                        f"cannot name the callback {unique!r}: a callback of that name exists; "
                        "give the callbacks explicit names with (name, callback) pairs"
                    )
                named.append((unique, cb))
        return sorted(named, key=lambda entry: _call_order(entry[1]))  # stable: order kept otherwise

    def initialize_callbacks(self) -> "NeuralNet":
        """Build ``callbacks_``: defaults then user callbacks, named, with ``callbacks__`` params set."""
        routed = self.get_params_for("callbacks")
        callbacks_ = []
        names = set()
        for name, cb in self._named_callbacks():
            names.add(name)
            if name in routed:  # callbacks__print_log=None replaces or disables a callback
                cb = routed[name]
            params = params_for(name, routed)
            if cb is None:
                if params:
                    raise ValueError(f"callbacks__{name} is None, so its parameters {sorted(params)} cannot be set")
                continue
            if isinstance(cb, type):
                cb = cb(**params)
            elif params:
                cb.set_params(**params)
            cb.initialize()  # what it returns is not used: a duck-typed or mocked callback may return anything
            callbacks_.append((name, cb))
        for key in routed:
            if key.split("__")[0] not in names:
                raise ValueError(
                    f"callbacks__{key}: there is no callback named {key.split('__')[0]!r}"
                    f"{closest_name(key.split('__')[0], sorted(names))} (callbacks: {', '.join(sorted(names))})"
                )
        self.callbacks_ = callbacks_
        return self

    def _reinit_message(self, part: str, reason: list[str] | None) -> None:
        if getattr(self, "initialized_", False) and self.verbose:
            because = f" because the following parameters were re-set: {', '.join(reason)}" if reason else ""
            print(f"Re-initializing {part}{because}.")

    def initialized_instance(self, instance_or_cls: Any, kwargs: dict[str, Any], part: str = "module") -> Any:
        """An instance as given (when there are no kwargs), else one built with ``kwargs``."""
        if isinstance(instance_or_cls, nn.Module):
            if not kwargs:
                return instance_or_cls
            instance_or_cls = type(instance_or_cls)
        check_accepts(part, instance_or_cls, kwargs)
        return instance_or_cls(**kwargs)

    def _build(self, part: str, factory: Any) -> Any:
        return self.initialized_instance(factory, self.get_params_for(part), part)

    def torch_compile(self, module: nn.Module, name: str = "module") -> nn.Module:
        """``torch.compile(module, **compile__kwargs)`` when ``compile=True``, else ``module``.

        The net applies it to every module and criterion (``name`` is the attribute's prefix)."""
        if not self.compile:
            return module
        compiled: nn.Module = torch.compile(module, **self.get_params_for("compile"))  # type: ignore[assignment]
        return compiled

    def _initialize_part(self, kind: str, reason: list[str] | None = None) -> None:
        """Run ``initialize_<kind>()``, registering the parts it creates, then move the modules or
        criteria it made to the device and compile them (``compile=True``)."""
        self._reinit_message(kind, reason)
        if kind == "module":
            self._check_device()
        with self._initializing(kind):
            getattr(self, f"initialize_{kind}")()
            if kind == "optimizer":
                return
            for prefix in self._names_of(kind):
                part = self.__dict__.get(prefix + "_")
                if isinstance(part, nn.Module):
                    if self.device is not None:
                        part = part.to(self.device)
                    setattr(self, prefix + "_", self.torch_compile(part, prefix))

    def _check_device(self) -> None:
        device = torch.device(self.device) if self.device is not None else None
        if device is not None and device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"device={self.device!r} but this torch has no usable CUDA device; "
                "pass device='cpu' (or install a CUDA build of torch on a machine with a GPU)"
            )

    def initialize_module(self) -> "NeuralNet":
        """Build ``module_`` (a subclass may create more modules here: ``self.mymodule_ = ...``).

        ``initialize()`` and ``set_params`` then move every module to ``device`` and compile it."""
        self.module_ = self._build("module", self.module)
        return self

    def initialize_criterion(self) -> "NeuralNet":
        """Build ``criterion_`` (a torch module, or any callable ``loss = criterion(y_pred, y_true)``)."""
        self.criterion_ = self._build("criterion", self.criterion)
        return self

    def get_all_learnable_params(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Named parameters of every module and criterion that require gradients (each once)."""
        seen = set()
        for part in self._parts_of("module", "criterion"):
            if not isinstance(part, nn.Module):
                continue
            for name, param in part.named_parameters():
                if param.requires_grad and id(param) not in seen:
                    seen.add(id(param))
                    yield name, param

    def get_params_for_optimizer(self, prefix: str, named_parameters: Any) -> tuple[tuple, dict[str, Any]]:
        """``(args, kwargs)`` that build the optimizer ``prefix`` over ``named_parameters``.

        ``<prefix>__param_groups=[('glob*', {'lr': x})]`` puts matching parameters in groups of
        their own; ``lr`` defaults to the net's. For nets with several optimizers:

        >>> net = NeuralNet(torch.nn.Linear, torch.nn.MSELoss, module__in_features=2,
        ...                 module__out_features=1, optimizer__momentum=0.9).initialize()
        >>> args, kwargs = net.get_params_for_optimizer("optimizer", net.module_.named_parameters())
        >>> sorted(kwargs.items()), [len(group["params"]) for group in args[0]]
        ([('lr', 0.01), ('momentum', 0.9)], [2])
        """
        kwargs = {k: v for k, v in self.get_params_for(prefix).items() if not _GROUP_PARAM.match(k)}
        kwargs.setdefault("lr", self.lr)
        patterns = kwargs.pop("param_groups", None) or []
        groups: list[dict[str, Any]] = [{"params": []} for _ in patterns] + [{"params": []}]
        for name, param in named_parameters:
            for i, (pattern, options) in enumerate(patterns):
                if fnmatch.fnmatch(name, pattern):
                    groups[i].update(options)
                    groups[i]["params"].append(param)
                    break
            else:
                groups[-1]["params"].append(param)
        return ([g for g in groups if g["params"]],), kwargs

    def initialize_optimizer(self) -> "NeuralNet":
        """Build ``optimizer_`` over the learnable parameters of every module and criterion."""
        args, kwargs = self.get_params_for_optimizer("optimizer", self.get_all_learnable_params())
        if not args[0]:
            modules = ", ".join(f"{name}_" for name in self._names_of("module"))
            raise ValueError(f"the net's modules ({modules}) have no learnable parameters")
        check_accepts("optimizer", self.optimizer, kwargs)
        self.optimizer_ = self.optimizer(*args, **kwargs)
        self._apply_group_overrides(self.optimizer_, "optimizer")
        return self

    def initialize_history(self) -> "NeuralNet":
        """A fresh ``History``; a history of another kind the net was given (``history=``, e.g.
        a :class:`~prefect_torch.history.DistributedHistory`) is kept and cleared instead."""
        given = self.__dict__.get("history_")
        if given is not None and type(given) is not History:
            given.clear()
        else:
            self.history_ = History()
        return self

    def initialize(self) -> "NeuralNet":
        """Create ``callbacks_``, ``module_``, ``criterion_``, ``optimizer_`` and ``history_``."""
        self.initialize_callbacks()
        for kind in KINDS:
            self._initialize_part(kind)
        self.initialize_history()
        self._check_kwargs()
        if self.get_params_for("iterator_valid").get("shuffle"):
            warnings.warn("iterator_valid__shuffle=True shuffles the validation batches, and so the "
                          "rows that predict() and predict_proba() return; leave it False unless that "
                          "is what you want", UserWarning, stacklevel=2)
        self.initialized_ = True
        return self

    @property
    def history(self) -> History:
        return self.history_

    @history.setter
    def history(self, value: History) -> None:
        self.history_ = value

    def trim_for_prediction(self) -> "NeuralNet":
        """Drop what only training needs (optimizer, criterion, callbacks, history): a smaller net
        that can still predict but no longer be trained. Irreversible; deep-copy first if needed.

        >>> net = NeuralNet(torch.nn.Linear, torch.nn.MSELoss, module__in_features=2,
        ...                 module__out_features=1).initialize().trim_for_prediction()
        >>> net.optimizer_ is None, net.predict(np.zeros((1, 2), dtype=np.float32)).shape
        (True, (1, 1))
        """
        if getattr(self, "trimmed_for_prediction_", False):
            return self
        self.check_is_fitted()
        if self.predict_nonlinearity == "auto":  # it depends on the criterion about to go
            self.predict_nonlinearity = self._predict_nonlinearity()
        self._set_training(False)
        self.callbacks_ = []
        self.history_ = History()
        self.train_split = None
        self.iterator_train = None
        for prefix in self._names_of("optimizer") + self._names_of("criterion"):
            setattr(self, prefix + "_", None)
            if prefix in vars(self):  # the argument too (a class, or an instance holding state)
                setattr(self, prefix, None)
        self.trimmed_for_prediction_ = True
        return self

    def _check_trainable(self) -> None:
        if getattr(self, "trimmed_for_prediction_", False):
            raise SkorchTrainingImpossibleError(
                f"this {type(self).__name__} was trimmed for prediction and cannot be trained; "
                "train a copy made before trim_for_prediction(), or a new net"
            )

    def check_is_fitted(self) -> None:
        if not getattr(self, "initialized_", False):
            raise NotInitializedError(  # skorch's words, which scripts may match
                f"This {type(self).__name__} instance is not initialized yet. Call 'initialize' or "
                "'fit' with appropriate arguments before using this method."
            )

    def __sklearn_is_fitted__(self) -> bool:
        return bool(getattr(self, "initialized_", False))

    # -- persistence ----------------------------------------------------------------------------
    def save_params(self, f_params: Any = None, f_optimizer: Any = None, f_criterion: Any = None,
                    f_history: Any = None, use_safetensors: bool = False, **kwargs: Any) -> None:
        """Save state dicts (``torch.save``) and the history (JSON) to paths, files or URLs.

        ``f_<name>`` saves a custom part ``net.<name>_``. Local files are replaced atomically.
        ``use_safetensors=True`` writes the state dicts in the safetensors format (the
        ``safetensors`` extra); an optimizer's state cannot be stored that way (``ValueError``).

        >>> import io
        >>> net = NeuralNet(torch.nn.Linear, torch.nn.MSELoss, module__in_features=2,
        ...                 module__out_features=1).initialize()
        >>> net.save_params(f_params=io.BytesIO(), f_history=io.StringIO())
        """
        parts, others = split_f_arguments("save_params", f_params=f_params, f_optimizer=f_optimizer,
                                          f_criterion=f_criterion, f_history=f_history, **kwargs)
        if not parts and not others:
            if self.verbose:
                print("Nothing to save")
            return
        self._check_initialized_for("save")
        # everything that can fail on bad input fails before any file is touched
        states = {attr: part_of(self, attr, "save_params").state_dict() for attr in parts}
        text = history_json(self.history) if "f_history" in others else None
        if use_safetensors:  # refuse a part safetensors cannot hold before any file is written
            payloads = {attr: safetensors_bytes(states[attr], f"{attr} ({parts[attr]!r})") for attr in parts}
            for attr, target in parts.items():
                with open_target(target, "wb") as f:
                    f.write(payloads[attr])
        else:
            for attr, target in parts.items():
                save_torch(states[attr], target)
        if text is not None:
            with open_target(others["f_history"], "w") as f:
                _write_text(f, text)
        if "f_pickle" in others:
            with open_target(others["f_pickle"], "wb") as f:
                pickle.dump(self, f)

    def load_params(self, f_params: Any = None, f_optimizer: Any = None, f_criterion: Any = None,
                    f_history: Any = None, checkpoint: Any = None, use_safetensors: bool = False,
                    version: Any = None, **kwargs: Any) -> None:
        """Load what :meth:`save_params` (or skorch) saved; ``checkpoint=cp`` loads its newest
        intact checkpoint. Explicit ``f_*`` arguments win over the checkpoint's files.

        ``version`` (with ``checkpoint``) loads one version of it rather than the newest intact
        one: ``'current'``, ``'best'``, or a version id (an ``int``: the ``version`` column of
        ``prefect-torch checkpoints DIR``, not the epoch). A named version is verified (sha256
        and loadable) and never replaced by another: a damaged one raises
        :class:`~prefect_torch.checkpoint.CheckpointCorruptError` naming its files, one that
        is not kept (pruned, unknown, no best recorded)
        :class:`~prefect_torch.checkpoint.CheckpointVersionError` listing the kept versions.
        Without ``version``, a damaged current version falls back to the newest intact one,
        with a :class:`~prefect_torch.checkpoint.CheckpointFallbackWarning`.

        Loading uses ``torch.load(weights_only=True)`` (change with ``torch_load_kwargs``), or
        safetensors with ``use_safetensors=True`` (or a checkpoint saved with it), and maps
        tensors to the net's ``device``.

        >>> import io
        >>> def make():
        ...     return NeuralNet(torch.nn.Linear, torch.nn.MSELoss, module__in_features=2,
        ...                      module__out_features=1).initialize()
        >>> saved, buffer = make(), io.BytesIO()
        >>> saved.save_params(f_params=buffer)
        >>> _ = buffer.seek(0)
        >>> loaded = make()
        >>> loaded.load_params(f_params=buffer)
        >>> torch.equal(loaded.module_.weight, saved.module_.weight)
        True
        """
        use_safetensors = use_safetensors or bool(getattr(checkpoint, "use_safetensors", False))
        explicit = {"f_params": f_params, "f_optimizer": f_optimizer, "f_criterion": f_criterion,
                    "f_history": f_history, **kwargs}
        files: dict[str, Any] = {}
        if version is not None and checkpoint is None:
            raise ValueError(f"load_params(version={version!r}) picks a version of a checkpoint: pass "
                             "checkpoint=cp too (the Checkpoint the net was trained with)")
        if checkpoint is not None:
            if not getattr(self, "initialized_", False):
                self.initialize()
            files = checkpoint.files_to_load(self) if version is None else checkpoint.files_to_load(self, version)
            if not files:
                raise FileNotFoundError(
                    f"load_params(checkpoint=...): there is no checkpoint in {_checkpoint_place(checkpoint)} "
                    "yet; train with that Checkpoint first, or check its dirname and fn_prefix"
                )
            files.pop("f_train_state", None)
            files.pop("f_pickle", None)
        files.update({k: v for k, v in explicit.items() if v is not None})
        parts, others = split_f_arguments("load_params", **files)
        if not parts and not others:
            if self.verbose:
                print("Nothing to load")
            return
        if parts:
            self._check_initialized_for("load")
        map_location = map_location_for(self.device)
        load_kwargs = dict(self.torch_load_kwargs or {})
        for attr, source in parts.items():
            part = part_of(self, attr, "load_params")
            state = load_state(source, map_location, use_safetensors, **load_kwargs)
            apply_state_dict(part, state, attr, source)
        if "f_history" in others:
            with open_target(others["f_history"], "rb") as f:
                self.history = History.from_file(f)

    def _check_initialized_for(self, action: str) -> None:
        if not getattr(self, "initialized_", False):
            raise NotInitializedError(
                f"cannot {action} the parameters of an uninitialized {type(self).__name__}; call "
                f"net.initialize() first (it builds module_, criterion_ and optimizer_), or fit the net"
            )

    # -- callbacks ------------------------------------------------------------------------------
    def notify(self, hook: str, **kwargs: Any) -> None:
        """Call ``hook`` on the net itself, then on every callback in order."""
        getattr(self, hook)(self, **kwargs)
        for method in self._hook_methods(hook):
            method(self, **kwargs)

    def _hook_methods(self, hook: str) -> list[Callable]:
        """The callbacks' ``hook`` methods, leaving out the base class's no-ops (cached per list)."""
        callbacks = self.callbacks_
        key = (id(callbacks), len(callbacks))
        cache: tuple[tuple, dict[str, list[Callable]]] | None = self.__dict__.get("_hook_cache")
        if cache is None or cache[0] != key:
            cache = (key, {})
            self._hook_cache = cache
        methods = cache[1].get(hook)
        if methods is None:
            methods = cache[1][hook] = [
                getattr(cb, hook) for _, cb in callbacks
                if hasattr(cb, hook) and getattr(type(cb), hook, None) is not getattr(Callback, hook)
            ]
        return methods

    def on_train_begin(self, net: "NeuralNet", **kwargs: Any) -> None:
        pass

    def on_train_end(self, net: "NeuralNet", **kwargs: Any) -> None:
        pass

    def on_epoch_begin(self, net: "NeuralNet", **kwargs: Any) -> None:
        self.history.new_epoch()
        self.history.record("epoch", len(self.history))

    def on_epoch_end(self, net: "NeuralNet", **kwargs: Any) -> None:
        pass

    def on_batch_begin(self, net: "NeuralNet", **kwargs: Any) -> None:
        self.history.new_batch()

    def on_batch_end(self, net: "NeuralNet", **kwargs: Any) -> None:
        pass

    def on_grad_computed(self, net: "NeuralNet", named_parameters: Any, **kwargs: Any) -> None:
        pass

    # -- data -----------------------------------------------------------------------------------
    def check_data(self, X: Any, y: Any = None) -> None:
        """Validate the training data before fitting (subclasses add target checks)."""
        if not is_torch_dataset(X):
            check_same_length(get_len(X), y)

    def get_dataset(self, X: Any, y: Any = None) -> Any:
        return as_dataset(X, y, self.dataset, **self.get_params_for("dataset"))

    def get_split_datasets(self, X: Any, y: Any = None, **fit_params: Any) -> tuple[Any, Any]:
        """``train_split(dataset, y, **fit_params)`` (without ``y`` when it is None); of the fit
        parameters, ``train_split`` receives those it accepts (``groups`` for ``ValidSplit``), or
        all of them when it takes ``**kwargs``."""
        dataset = self.get_dataset(X, y)
        if not self.train_split:  # None (or False, which skorch accepts too)
            return dataset, None
        split_params = _accepted_kwargs(self.train_split, fit_params)
        if y is None:
            return self.train_split(dataset, **split_params)
        return self.train_split(dataset, y, **split_params)

    def get_iterator(self, dataset: Any, training: bool = False) -> Any:
        """Batches of ``dataset``: fast tensor slicing for in-memory data, else a DataLoader."""
        prefix = "iterator_train" if training else "iterator_valid"
        kwargs = self.get_params_for(prefix)
        kwargs.setdefault("batch_size", self.batch_size)
        iterator = self.iterator_train if training else self.iterator_valid
        return make_iterator(dataset, iterator, kwargs, self.device)

    # -- training ------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> "NeuralNet":
        """(Re-)initialize unless ``warm_start``, then train for ``max_epochs`` epochs."""
        self._check_trainable()
        if not self.warm_start or not getattr(self, "initialized_", False):
            self.initialize()
        self.partial_fit(X, y, **fit_params)
        return self

    def partial_fit(self, X: Any, y: Any = None, classes: Any = None, **fit_params: Any) -> "NeuralNet":
        """Continue training without re-initializing; ``epochs=n`` overrides ``max_epochs``."""
        self._check_trainable()
        if not getattr(self, "initialized_", False):
            self.initialize()
        self.notify("on_train_begin", X=X, y=y)
        try:
            self.fit_loop(X, y, **fit_params)
        except KeyboardInterrupt:  # EarlyStopping and Ctrl+C end training, keeping the net
            pass
        self.notify("on_train_end", X=X, y=y)
        return self

    def epoch_limit(self) -> int | None:
        """The epoch training must not go beyond, as the callbacks' ``epoch_limit(net)`` hooks
        answer it (the smallest; ``None`` when none has one), e.g. a
        ``LoadInitState(until_max_epochs=True)`` stops at ``max_epochs`` in all. Only whole
        numbers count: a duck-typed or mocked callback may answer anything."""
        limits = [int(limit) for _, cb in getattr(self, "callbacks_", [])
                  if isinstance(limit := getattr(cb, "epoch_limit", lambda net: None)(self), numbers.Integral)
                  and not isinstance(limit, bool)]
        return min(limits, default=None)

    def fit_loop(self, X: Any, y: Any = None, epochs: int | None = None, **fit_params: Any) -> "NeuralNet":
        self.check_data(X, y)
        self.check_is_fitted()
        epochs = self.max_epochs if epochs is None else epochs
        dataset_train, dataset_valid = self.get_split_datasets(X, y, **fit_params)
        fit_params.pop("groups", None)
        epoch_kwargs = {"dataset_train": dataset_train, "dataset_valid": dataset_valid}
        iterator_train = self.get_iterator(dataset_train, training=True)
        iterator_valid = None if dataset_valid is None else self.get_iterator(dataset_valid)
        limit = self.epoch_limit()
        if limit is not None:
            epochs = max(0, min(epochs, limit - len(self.history)))

        def one_epoch() -> None:
            self.notify("on_epoch_begin", **epoch_kwargs)
            self.run_single_epoch(iterator_train, True, "train", self.train_step, **fit_params)
            self.run_single_epoch(iterator_valid, False, "valid", self.validation_step, **fit_params)
            self.notify("on_epoch_end", **epoch_kwargs)

        run_epochs(self, epochs, one_epoch)  # one after another, or as an orchestrator's tasks
        return self

    def run_single_epoch(self, iterator: Any, training: bool, prefix: str, step_fn: Callable,
                         **fit_params: Any) -> None:
        """Run ``step_fn`` on every batch, recording ``<prefix>_loss`` and batch sizes."""
        if iterator is None:
            return
        record = self.history.record_batch
        loss_key, size_key = f"{prefix}_loss", f"{prefix}_batch_size"
        count = 0
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            record(loss_key, step["loss"].item())
            record(size_key, get_len(batch[0]) if isinstance(batch, (tuple, list)) else get_len(batch))
            self.notify("on_batch_end", batch=batch, training=training, **step)
            count += 1
        self.history.record(f"{prefix}_batch_count", count)

    def _set_training(self, training: bool) -> None:
        """Put every module and criterion (that is a torch module) in train or eval mode."""
        parts = self.__dict__
        for attr in self._train_mode_attrs:  # module_, criterion_ and any a subclass added
            part = parts.get(attr)
            if part is not None and getattr(part, "training", training) != training:
                part.train(training)

    def train_step_single(self, batch: Any, **fit_params: Any) -> dict[str, Any]:
        """Forward and backward pass of one batch; returns ``{'loss', 'y_pred'}``."""
        self._set_training(True)
        Xi, yi = unpack_batch(batch)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    def train_step(self, batch: Any, **fit_params: Any) -> dict[str, Any]:
        """One optimizer step (through a closure, so LBFGS works too)."""
        steps: list[dict[str, Any]] = []
        optimizers = [self.__dict__[attr] for attr in self._optimizer_attrs if attr in self.__dict__]

        def closure() -> torch.Tensor:
            for optimizer in optimizers:
                optimizer.zero_grad()
            step = self.train_step_single(batch, **fit_params)
            steps.append(step)
            self.notify("on_grad_computed", named_parameters=_LearnableParams(self), batch=batch,
                        training=True)
            return step["loss"]

        first, *others = optimizers
        first.step(closure)
        for optimizer in others:  # a subclass's further optimizers use the gradients just computed
            optimizer.step()
        return steps[0]

    def validation_step(self, batch: Any, **fit_params: Any) -> dict[str, Any]:
        self._set_training(False)
        Xi, yi = unpack_batch(batch)
        with torch.no_grad():
            y_pred = self.infer(Xi, **fit_params)
            loss = self.get_loss(y_pred, yi, X=Xi, training=False)
        return {"loss": loss, "y_pred": y_pred}

    def infer(self, x: Any, **fit_params: Any) -> Any:
        """The module's output for one batch; dict inputs become keyword arguments."""
        x = to_tensor(x, self.device)
        try:
            if isinstance(x, dict):
                return self.module_(**x, **fit_params)
            return self.module_(x, **fit_params)
        except (RuntimeError, TypeError) as error:
            better = explain_module_error(self.module_, x, error)
            if better is error:
                raise
            raise better from error

    def get_loss(self, y_pred: Any, y_true: Any, X: Any = None, training: bool = False) -> torch.Tensor:
        y_true = None if y_true is None else to_tensor(y_true, self.device)
        check_elementwise_shapes(self.criterion_, y_pred, y_true)
        try:
            return self.criterion_(y_pred, y_true)
        except (RuntimeError, ValueError, IndexError, TypeError) as error:
            better = explain_loss_error(self.criterion_, y_pred, y_true, error)
            if better is error:
                raise
            raise better from error

    # -- inference -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def cached_predictions(self, y_preds: list[Any]) -> Iterator[None]:
        """Within this block, inference yields ``y_preds`` instead of running the module."""
        self._prediction_cache = y_preds
        try:
            yield
        finally:
            self._prediction_cache = None

    def evaluation_step(self, batch: Any, training: bool = False) -> Any:
        self.check_is_fitted()
        Xi, _ = unpack_batch(batch)
        with torch.set_grad_enabled(training):
            self._set_training(training)
            return self.infer(Xi)

    def forward_iter(self, X: Any, training: bool = False, device: str = "cpu") -> Iterator[Any]:
        """The module's outputs batch by batch, moved to ``device``."""
        cached = getattr(self, "_prediction_cache", None)
        if cached is not None:
            yield from cached
            return
        self.check_is_fitted()
        iterator = self.get_iterator(self.get_dataset(X), training=False)
        for batch in iterator:
            yield _to_device(self.evaluation_step(batch, training=training), device)

    def forward(self, X: Any, training: bool = False, device: str = "cpu") -> Any:
        """All outputs of the module on ``X``, concatenated (a tuple if the module returns one)."""
        outputs = list(self.forward_iter(X, training=training, device=device))
        if isinstance(outputs[0], tuple):
            return tuple(torch.cat(parts) for parts in zip(*outputs))
        return torch.cat(outputs)

    def _predict_nonlinearity(self) -> Callable[[Any], Any]:
        choice = self.predict_nonlinearity
        if choice is None:
            return _identity
        if choice != "auto":
            if not callable(choice):
                raise TypeError(f"predict_nonlinearity must be 'auto', None or a callable, got {choice!r}")
            return choice
        criteria = self._parts_of("criterion")
        if len(criteria) != 1:  # several losses (or none): no way to tell what the outputs are
            return _identity
        if isinstance(criteria[0], nn.CrossEntropyLoss):
            return _softmax
        if isinstance(criteria[0], nn.BCEWithLogitsLoss):
            return torch.sigmoid
        return _identity

    def predict_proba(self, X: Any) -> np.ndarray:
        """Module outputs (after ``predict_nonlinearity``) as a numpy array."""
        self.check_is_fitted()
        nonlinearity = self._predict_nonlinearity()
        outputs = []
        for y_pred in self.forward_iter(X, training=False):
            y_pred = y_pred[0] if isinstance(y_pred, tuple) else y_pred
            outputs.append(to_numpy(nonlinearity(y_pred)))
        return np.concatenate(outputs, 0)

    def predict(self, X: Any) -> np.ndarray:
        return self.predict_proba(X)

    def __repr__(self) -> str:
        """The class, whether it is initialized, and the parameters that differ from the defaults."""
        defaults = self._init_defaults()
        shown = []
        for name, value in self.get_params(deep=False).items():
            default = defaults.get(name, inspect.Parameter.empty)
            if name not in defaults or not _same(value, default):
                if name.endswith("storage_options"):  # callbacks__<name>__storage_options: credentials
                    value = masked(value)
                shown.append(f"{name}={getattr(value, '__name__', None) or repr(value)}")
        state = "initialized" if getattr(self, "initialized_", False) else "uninitialized"
        text = f"{type(self).__name__}[{state}]({', '.join(shown)})"
        if state == "initialized" and "module_" in vars(self):
            module = "\n  ".join(repr(self.module_).splitlines())
            text += f"\n  module_={module}"
        return text

    def __getstate__(self) -> dict:
        """Picklable state; torch parts travel as one ``torch.save`` blob so that a net pickled
        on a GPU unpickles on a CPU-only machine."""
        state = dict(super().__getstate__())  # a copy: object.__getstate__ returns the live __dict__
        state["_prediction_cache"] = None
        state.pop("_hook_cache", None)
        _check_picklable(self, state)
        torch_parts = {k: v for k, v in state.items() if isinstance(v, (nn.Module, torch.optim.Optimizer))}
        if torch_parts:
            buffer = io.BytesIO()
            try:
                torch.save(torch_parts, buffer)
            except (pickle.PicklingError, AttributeError, TypeError) as error:
                raise pickle.PicklingError(
                    f"cannot pickle this {type(self).__name__}: one of {', '.join(torch_parts)} holds "
                    f"something pickle cannot store ({error}). Save the weights with "
                    "net.save_params(f_params=...) instead and rebuild the net in code."
                ) from error
            for key in torch_parts:
                del state[key]
            state["__torch_parts__"] = buffer.getvalue()
        return state

    def __setstate__(self, state: dict) -> None:
        blob = state.pop("__torch_parts__", None)
        if blob is not None:
            device = state.get("device")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the device fallback is reported below, once
                map_location = map_location_for(device)
            if device is not None and torch.device(device).type != torch.device(map_location).type:
                warnings.warn(f"this net was pickled with device={device!r}, which is not available here; "
                              f"it is loaded onto {map_location!r} (net.device changed accordingly)",
                              DeviceWarning, stacklevel=2)
                state["device"] = map_location
            # a pickle is trusted code by nature (pickle.load runs it); torch parts are pickled modules
            state.update(torch.load(io.BytesIO(blob), map_location=map_location, weights_only=False))
        self.__dict__.update(state)


def unpack_batch(batch: Any) -> tuple[Any, Any]:
    """``(X, y)`` of a batch; a batch without targets gives ``y=None``."""
    if isinstance(batch, (tuple, list)):
        if len(batch) == 2:
            return batch[0], batch[1]
        return batch[0], None
    return batch, None


def _to_device(x: Any, device: str | None) -> Any:
    if device is None:
        return x
    if isinstance(x, tuple):
        return tuple(_to_device(v, device) for v in x)
    return x.to(device) if isinstance(x, torch.Tensor) else x


def _write_text(f: Any, text: str) -> None:
    """Write to a text file, or UTF-8 to a binary one."""
    try:
        f.write(text)
    except TypeError:
        f.write(text.encode("utf-8"))


def _checkpoint_place(checkpoint: Any) -> str:
    dirname = os.fspath(getattr(checkpoint, "dirname", "") or ".")
    prefix = getattr(checkpoint, "fn_prefix", "")
    return f"{dirname!r}" + (f" with fn_prefix={prefix!r}" if prefix else "")


def _unpicklable(value: Any) -> bool:
    """Functions and classes pickle cannot import by name: lambdas and ones defined in a function."""
    qualname = getattr(value, "__qualname__", "")
    return callable(value) and isinstance(qualname, str) and ("<lambda>" in qualname or "<locals>" in qualname)


def _check_picklable(net: Any, state: dict) -> None:
    """Name the lambda or local function that would make pickling fail, and the way out."""
    candidates = list(state.items())
    given = state.get("callbacks")
    named = list(state.get("callbacks_", None) or []) + [
        item if isinstance(item, tuple) else (type(item).__name__, item)
        for item in (given if isinstance(given, (list, tuple)) else [])
    ]
    for name, cb in named:
        if cb is not None and not isinstance(cb, type) and hasattr(cb, "__dict__"):
            candidates += [(f"callback {name!r}: {k}", v) for k, v in vars(cb).items()]
    for key, value in candidates:
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if _unpicklable(item):
                raise pickle.PicklingError(
                    f"cannot pickle this {type(net).__name__}: {key} is {item.__qualname__!r}, which pickle "
                    "cannot store (a lambda or a function defined inside another). Define it at module level, "
                    "or save the weights with net.save_params(f_params=...) and rebuild the net in code."
                )


def _accepted_kwargs(function: Callable, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``kwargs`` that ``function`` accepts (all of them if it takes ``**kwargs``)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return dict(kwargs)
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        return dict(kwargs)
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in kwargs.items() if k in names}


def _call_order(cb: Any) -> int:
    """Where a callback runs among the others: LoadInitState first (-1), Checkpoints late (1),
    PrintLog last (2), every other callback in the order given (0)."""
    order = getattr(cb, "call_order", 0)
    # a duck-typed callback may lack it; on a Mock(spec=Callback) it is another Mock
    return int(order) if isinstance(order, numbers.Integral) else 0


def _same(value: Any, default: Any) -> bool:
    if value is default:
        return True
    try:
        return bool(value == default)
    except Exception:
        return False


def _identity(x: Any) -> Any:
    return x


def _softmax(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)
