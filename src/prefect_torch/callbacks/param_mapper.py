"""Change parameters during training by name: :class:`ParamMapper`, and its three common uses
:class:`Freezer`, :class:`Unfreezer` and :class:`Initializer`.

Parameters are picked by name: shell-style patterns (``fnmatch``: ``'0.*'``, ``'*.bias'``),
callables ``pattern(name) -> bool``, or a list of either.

>>> from functools import partial
>>> import torch
>>> from prefect_torch import NeuralNetClassifier
>>> from prefect_torch.callbacks import Freezer, Initializer, Unfreezer
>>> from prefect_torch.examples import MyModule, make_data
>>> X, y = make_data(100)
>>> net = NeuralNetClassifier(MyModule, max_epochs=3, verbose=0, callbacks=[
...     Initializer("*.bias", fn=torch.nn.init.zeros_),  # epoch 1
...     Freezer("0.*"),                                   # first layer fixed from epoch 1 ...
...     Unfreezer("0.*", at=3),                           # ... and trained again from epoch 3
... ]).fit(X, y)
>>> net.module_[0].weight.requires_grad
True
"""
from __future__ import annotations

import fnmatch
import numbers
from typing import Any, Callable, Iterator

from torch import nn

from ..utils import freeze_parameter, noop, unfreeze_parameter
from .base import Callback

Pattern = str | Callable[[str], Any]


class ParamMapper(Callback):
    """Applies ``fn`` to each parameter whose name matches ``patterns``, at the start of an epoch.

    Parameters
    ----------
    patterns : str, callable, or list of them
        Which parameters: ``fnmatch`` patterns over the names of ``named_parameters()``
        (``'0.weight'``, ``'*.bias'``), or callables ``pattern(name)`` that return true for
        a match. Every learnable part of the net is searched (module and criterion),
        frozen parameters included.
    fn : callable
        Called with each matching parameter (``fn(param)``), e.g. an initializer from
        ``torch.nn.init`` or :func:`~prefect_torch.utils.freeze_parameter`.
    at : int or callable
        When: the epoch number (1 for the first epoch of the net's history), or a callable
        ``at(net) -> bool`` checked at the start of every epoch.
    schedule : callable or None
        Overrides ``at``/``fn``: ``schedule(net)`` returns the function to apply at the start of
        each epoch (:func:`~prefect_torch.utils.noop` for nothing).
    """

    def __init__(self, patterns: Pattern | list[Pattern], fn: Callable = noop, at: int | Callable = 1,
                 schedule: Callable | None = None):
        self.patterns = patterns
        self.fn = fn
        self.at = at
        self.schedule = schedule

    def initialize(self) -> "ParamMapper":
        at = self.at
        if isinstance(at, numbers.Integral) and not isinstance(at, bool):
            if at < 1:
                raise ValueError(
                    f"{type(self).__name__}(at={at}): epochs are numbered from 1; pass at=1 for the "
                    "first epoch, or a callable at(net) -> bool"
                )
        elif not callable(at):
            raise TypeError(f"{type(self).__name__}(at={at!r}): pass an epoch number or a callable at(net) -> bool")
        patterns = self.patterns if isinstance(self.patterns, (list, tuple)) else [self.patterns]
        for pattern in patterns:
            if not (isinstance(pattern, str) or callable(pattern)):
                raise TypeError(
                    f"{type(self).__name__}: the pattern {pattern!r} is neither a name pattern (str) "
                    "nor a callable pattern(name) -> bool"
                )
        self.patterns_ = list(patterns)
        return self

    def due(self, net: Any) -> bool:
        """Is ``fn`` due at this epoch (the one just begun)?"""
        if callable(self.at):
            return bool(self.at(net))
        return len(net.history) == self.at

    def function_for(self, net: Any) -> Callable:
        """What to apply at this epoch: ``schedule(net)``, else ``fn`` when :meth:`due`, else nothing."""
        if self.schedule is not None:
            return self.schedule(net)
        return self.fn if self.due(net) else noop

    def named_parameters(self, net: Any) -> Iterator[tuple[str, nn.Parameter]]:
        """Every parameter of the module and the criterion (frozen ones too), then any other
        learnable one the net reports, each once."""
        seen: set[int] = set()
        parts = [getattr(net, "module_", None), getattr(net, "criterion_", None)]
        named = [part.named_parameters() for part in parts if isinstance(part, nn.Module)]
        for source in [*named, net.get_all_learnable_params()]:
            for name, param in source:
                if id(param) not in seen:
                    seen.add(id(param))
                    yield name, param

    def matching(self, named_parameters: Any) -> Iterator[tuple[str, nn.Parameter]]:
        """``(name, param)`` per pattern, in pattern order, for the parameters that match it."""
        named_parameters = list(named_parameters)
        for pattern in self.patterns_:
            matches = pattern if callable(pattern) else (lambda name, p=pattern: fnmatch.fnmatch(name, p))
            for name, param in named_parameters:
                if matches(name):
                    yield name, param

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        function = self.function_for(net)
        if function is noop:
            return
        for _, param in self.matching(self.named_parameters(net)):
            function(param)


class Freezer(ParamMapper):
    """Freezes the matching parameters (``requires_grad = False``) at epoch ``at`` (default: the
    first); see :class:`ParamMapper`.

    >>> Freezer("embedding.*").fn.__name__
    'freeze_parameter'
    """

    def __init__(self, patterns: Pattern | list[Pattern], fn: Callable = freeze_parameter,
                 at: int | Callable = 1, schedule: Callable | None = None):
        super().__init__(patterns, fn=fn, at=at, schedule=schedule)


class Unfreezer(ParamMapper):
    """Trains the matching parameters again (``requires_grad = True``) at epoch ``at``;
    see :class:`ParamMapper`."""

    def __init__(self, patterns: Pattern | list[Pattern], fn: Callable = unfreeze_parameter,
                 at: int | Callable = 1, schedule: Callable | None = None):
        super().__init__(patterns, fn=fn, at=at, schedule=schedule)


class Initializer(ParamMapper):
    """Applies an initializer (``fn``, e.g. ``torch.nn.init.xavier_uniform_``) to the matching
    parameters at epoch ``at`` (default: the first); see :class:`ParamMapper`."""
