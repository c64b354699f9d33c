"""Parameter routing for the nets: ``module__x`` style keyword arguments and their validation.

>>> prefix_of("module__num_units"), prefix_of("lr")
('module', None)
>>> unknown_kwarg_message("NeuralNet", "module_num_units", ["lr"])
"NeuralNet got an unexpected argument 'module_num_units'; did you mean 'module__num_units'?"
"""
from __future__ import annotations

import inspect
from typing import Any, Iterable, Sequence

from .utils import closest_name

PREFIXES = (
    "module", "criterion", "optimizer", "iterator_train", "iterator_valid", "dataset", "callbacks",
    "compile",
)


def prefix_of(name: str, prefixes: Sequence[str] = PREFIXES) -> str | None:
    """The routing prefix of ``name`` (``'module'`` for ``'module__x'``), or None."""
    head, sep, _ = name.partition("__")
    return head if sep and head in prefixes else None


def unknown_kwarg_message(owner: str, name: str, valid: Iterable[str],
                          prefixes: Sequence[str] = PREFIXES) -> str:
    """An error message for an argument that is neither a parameter nor routed by a prefix."""
    for prefix in prefixes:
        if name.startswith(prefix + "_") and not name.startswith(prefix + "__"):
            hint = f"; did you mean {prefix + '__' + name[len(prefix) + 1:]!r}?"
            break
    else:
        hint = closest_name(name, list(valid)) or (
            "; arguments for the parts of the net take a prefix: "
            + ", ".join(f"{p}__<name>" for p in prefixes)
        )
    return f"{owner} got an unexpected argument {name!r}{hint}"


def check_accepts(what: str, factory: Any, kwargs: dict[str, Any]) -> None:
    """Raise a clear TypeError when ``factory`` does not accept one of ``kwargs``."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    parameters = signature.parameters
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = [n for n, p in parameters.items() if p.kind != p.VAR_POSITIONAL]
    for key in kwargs:
        if key not in parameters:
            name = getattr(factory, "__name__", repr(factory))
            raise TypeError(
                f"{what}__{key}: {name}() has no argument {key!r}{closest_name(key, accepted)} "
                f"(it accepts: {', '.join(accepted) or 'nothing'})"
            )
