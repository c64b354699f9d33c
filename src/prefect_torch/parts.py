"""The torch parts a net holds: modules, criteria and optimizers, registered as they are set.

A subclass that creates another module in ``initialize_module`` (or criterion in
``initialize_criterion``, optimizer in ``initialize_optimizer``) gets it registered by
assigning it to an attribute ending in ``_``: its name becomes a routing prefix
(``mymodule__x``), it moves to the net's device, its parameters join the optimizer, and
``set_params(mymodule__x=...)`` rebuilds it.

>>> import torch
>>> from prefect_torch import NeuralNet
>>> class TwoModules(NeuralNet):
...     def initialize_module(self):
...         super().initialize_module()
...         self.head_ = torch.nn.Linear(1, 1)
...         return self
>>> net = TwoModules(torch.nn.Linear, torch.nn.MSELoss, module__in_features=2,
...                  module__out_features=1).initialize()
>>> net._modules, sum(len(g["params"]) for g in net.optimizer_.param_groups)
(['module', 'head'], 4)
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

from . import exceptions

#: skorch's error type for this when the package defines it, else the built-in it derives from
PartAttributeError: type[Exception] = getattr(exceptions, "SkorchAttributeError", AttributeError)

KINDS = ("module", "criterion", "optimizer")
_LISTS = {"module": "_modules", "criterion": "_criteria", "optimizer": "_optimizers"}


class PartRegistry:
    """Mixin: keeps ``prefixes_``, ``cuda_dependent_attributes_`` and the lists of module,
    criterion and optimizer names up to date as torch parts are assigned.

    The class attributes are the defaults; an instance that registers a part gets its own copies,
    so subclasses and other nets are never changed.
    """

    prefixes_: list[str]
    cuda_dependent_attributes_: list[str] = ["module_", "criterion_", "optimizer_"]
    _modules: list[str] = ["module"]
    _criteria: list[str] = ["criterion"]
    _optimizers: list[str] = ["optimizer"]
    # the attribute names the training loop visits on every batch, kept in step with the lists
    _train_mode_attrs: tuple[str, ...] = ("module_", "criterion_")
    _optimizer_attrs: tuple[str, ...] = ("optimizer_",)

    @classmethod
    def _init_param_names(cls) -> list[str]:  # provided by the net
        raise NotImplementedError

    @contextlib.contextmanager
    def _initializing(self, kind: str) -> Iterator[None]:
        """Parts assigned within this block are registered as ``kind`` (module, criterion...)."""
        previous = self.__dict__.get("_initializing_kind")
        object.__setattr__(self, "_initializing_kind", kind)
        try:
            yield
        finally:
            object.__setattr__(self, "_initializing_kind", previous)

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, (nn.Module, torch.optim.Optimizer)) and not name.startswith("_"):
            self._register_part(name, value)
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        if name.endswith("_") and not name.startswith("_"):
            self._unregister_part(name[:-1])

    def _register_part(self, name: str, value: Any) -> None:
        kind = self.__dict__.get("_initializing_kind")
        if kind is not None:
            kind = "optimizer" if isinstance(value, torch.optim.Optimizer) else kind
            kind = "module" if kind == "optimizer" and isinstance(value, nn.Module) else kind
        registered = name.endswith("_") and any(name[:-1] in self._names_of(k) for k in KINDS)
        if kind is None:
            if registered or name in self._init_param_names() or "__" in name:
                return  # e.g. net.module_ = other, or a module given as an argument
            where = "initialize_optimizer" if isinstance(value, torch.optim.Optimizer) else "initialize_module"
            raise PartAttributeError(
                f"cannot set the torch part {name!r} of {type(self).__name__} outside the initialize "
                f"methods: the net would not know it. Create it in {where}() (or initialize_criterion())"
            )
        if not name.endswith("_") or name.endswith("__"):
            if name in self._init_param_names():
                return
            raise PartAttributeError(
                f"{type(self).__name__}.{name}: the modules, criteria and optimizers a net creates are "
                f"named with a trailing underscore, e.g. self.{name.rstrip('_')}_ = ..."
            )
        prefix = name[:-1]
        if registered:
            return
        self._add_to("prefixes_", prefix)
        self._add_to("cuda_dependent_attributes_", name)
        self._add_to(_LISTS[kind], prefix)

    def _unregister_part(self, prefix: str) -> None:
        for attribute, item in [("prefixes_", prefix), ("cuda_dependent_attributes_", prefix + "_"),
                                *((_LISTS[kind], prefix) for kind in KINDS)]:
            names = getattr(self, attribute)
            if item in names and item not in getattr(type(self), attribute):
                object.__setattr__(self, attribute, [n for n in names if n != item])
        self._refresh_attrs()

    def _add_to(self, attribute: str, item: str) -> None:
        names = getattr(self, attribute)
        if item not in names:
            object.__setattr__(self, attribute, [*names, item])
            self._refresh_attrs()

    def _refresh_attrs(self) -> None:
        object.__setattr__(self, "_train_mode_attrs",
                           tuple(f"{p}_" for p in [*self._modules, *self._criteria]))
        object.__setattr__(self, "_optimizer_attrs", tuple(f"{p}_" for p in self._optimizers))

    def _names_of(self, kind: str) -> list[str]:
        names: list[str] = getattr(self, _LISTS[kind])
        return names

    def _parts_of(self, *kinds: str) -> list[Any]:
        """The parts of the given kinds that exist now (a subclass may not create ``module_``)."""
        parts = []
        for kind in kinds:
            for prefix in self._names_of(kind):
                part = self.__dict__.get(prefix + "_")
                if part is not None:
                    parts.append(part)
        return parts
