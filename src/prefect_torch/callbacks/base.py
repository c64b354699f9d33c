"""The :class:`Callback` base: hooks the net calls at each step of training.

Subclass it and override the hooks you need; every hook receives the net first.

>>> class CountBatches(Callback):
...     def initialize(self):
...         self.count_ = 0
...         return self
...     def on_batch_end(self, net, batch=None, training=None, **kwargs):
...         self.count_ += bool(training)
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

from ..utils import closest_name


def wants_output(sink: Callable[[str], Any], verbose: Any) -> bool:
    """``print`` writes only for a verbose net; any other sink the user chose always receives."""
    return sink is not print or bool(verbose)


def emit(sink: Callable[[str], Any], text: str, verbose: Any) -> None:
    """Send ``text`` to ``sink`` when :func:`wants_output` says so."""
    if wants_output(sink, verbose):
        sink(text)


class Callback:
    """Base class of all callbacks; ``__init__`` arguments are its parameters (sklearn style)."""

    #: where the net calls it among the others: lower first; equal ones in the order given
    call_order: int = 0

    def initialize(self) -> "Callback":
        """(Re-)set the state the callback learns during training; called by ``net.initialize()``."""
        return self

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        """Before the first epoch of each ``fit``/``partial_fit`` call; kwargs: ``X``, ``y``."""

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        """After the last epoch of each ``fit``/``partial_fit`` (also after early stopping)."""

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        """At the start of each epoch, after the history got its new row; kwargs:
        ``dataset_train``, ``dataset_valid``."""

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        """At the end of each epoch, after training and validation (same kwargs)."""

    def on_batch_begin(self, net: Any, **kwargs: Any) -> None:
        """Before each train or validation batch; kwargs: ``batch``, ``training``."""

    def on_batch_end(self, net: Any, **kwargs: Any) -> None:
        """After each batch; kwargs: ``batch``, ``training``, and the step's ``loss``, ``y_pred``."""

    def on_grad_computed(self, net: Any, named_parameters: Any, **kwargs: Any) -> None:
        """After ``backward()``, before the optimizer step (e.g. to clip gradients); kwargs:
        ``batch``, ``training``."""

    def epoch_limit(self, net: Any) -> int | None:
        """The epoch (counted over the whole history) training must not go beyond, or ``None``
        for no limit; asked once per ``fit``, after ``on_train_begin``."""
        return None

    # -- resume ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What the callback learned that a resumed run needs (tensors and plain data only);
        saved in checkpoints' ``train_state.pt``."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` returned (called when a run resumes)."""
        vars(self).update(state)

    # -- parameters -----------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [
            name for name, p in signature.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The ``__init__`` arguments and their current values."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> "Callback":
        """Set ``__init__`` arguments; unknown names raise a ``ValueError`` with a hint."""
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"{type(self).__name__} has no parameter {name!r}{closest_name(name, list(valid))} "
                    f"(valid: {', '.join(sorted(valid))})"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
