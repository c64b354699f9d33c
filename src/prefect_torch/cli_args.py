"""Command-line arguments for a training script: ``parse_args`` sets them on a net or pipeline.

A script collects its keyword arguments from the command line, for instance with
`fire <https://github.com/google/python-fire>`_ (``pip install fire``)::

    def main(**kwargs):
        net = parse_args(kwargs, defaults={"max_epochs": 20})(make_pipeline())
        net.fit(X, y)

    fire.Fire(main)   # python train.py --lr 0.05 --module__nonlin 'torch.nn.RReLU(0.1, upper=0.4)'

String values naming a Python object (``'torch.nn.ReLU'``, ``'math.cos'``) become that object; a
call with literal arguments (``'torch.nn.RReLU(0.1, upper=0.4)'``) becomes the instance; other
strings stay strings. ``--help`` prints every settable parameter with its current default.

>>> from sklearn.linear_model import LogisticRegression
>>> clf = parse_args({"C": 0.5, "solver": "liblinear"}, defaults={"C": 2.0})(LogisticRegression())
>>> clf.C, clf.solver
(0.5, 'liblinear')
"""
from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

__all__ = ["parse_args", "parse_net_kwargs", "print_help"]


def _import_dotted(path: str) -> Any:
    """The module or module attribute ``path`` names (``ImportError``/``AttributeError`` if none)."""
    try:
        return importlib.import_module(path)
    except ImportError:
        if "." not in path:
            raise
    module, _, attr = path.rpartition(".")
    return getattr(_import_dotted(module), attr)


def _call_arguments(text: str) -> tuple[list[Any], dict[str, Any]]:
    """The literal positional and keyword arguments of ``text`` (``"0.1, upper=0.4"``)."""
    call = ast.parse(f"f({text})", mode="eval").body
    if not isinstance(call, ast.Call):
        raise ValueError(f"not a call's arguments: {text!r}")
    args = [ast.literal_eval(arg) for arg in call.args]
    kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg is not None}
    return args, kwargs


def _resolve_dotted_name(name: Any) -> Any:
    """The object a dotted name stands for, an instance for ``'path.Class(literal args)'``;
    anything else (numbers, plain words, unknown names) is returned unchanged."""
    if not isinstance(name, str) or "." not in name:
        return name
    path, paren, rest = name.partition("(")
    if paren and not rest.endswith(")"):
        return name
    try:
        target = _import_dotted(path.strip())
        if not paren:
            return target
        args, kwargs = _call_arguments(rest[:-1])
    except (ImportError, AttributeError, ValueError, SyntaxError):
        return name
    return target(*args, **kwargs)


def parse_net_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` with every dotted-name string resolved (see :func:`_resolve_dotted_name`)."""
    return {key: _resolve_dotted_name(value) for key, value in kwargs.items()}


def _is_net(estimator: Any) -> bool:
    return hasattr(estimator, "module") and hasattr(estimator, "prefixes_")


def _yield_estimators(estimator: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(prefix, estimator)`` for each leaf estimator of a pipeline or feature union (the
    parameter prefix of its settings), and a net's module after the net."""
    join = (lambda name: f"{prefix}__{name}") if prefix else (lambda name: name)
    if hasattr(estimator, "steps"):
        for name, step in estimator.steps:
            yield from _yield_estimators(step, join(name))
    elif hasattr(estimator, "transformer_list"):
        for name, transformer in estimator.transformer_list:
            yield from _yield_estimators(transformer, join(name))
    else:
        yield prefix, estimator
        if _is_net(estimator):
            yield join("module"), estimator.module


_DEFAULT_AFTER = re.compile(r"default\s*=\s*|default\s+(?=\S)")
_BY_DEFAULT = " by default"


def _value_end(s: str, start: int) -> int:
    """Where the value starting at ``start`` ends: at a ``,`` or an unopened ``)`` at depth 0."""
    depth = 0
    for i in range(start, len(s)):
        char = s[i]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                return i
            depth -= 1
        elif char == "," and depth == 0:
            return i
    return len(s)


def _value_start(s: str, end: int) -> int:
    """Where the value ending at ``end`` starts: after an unclosed ``(`` at depth 0."""
    depth = 0
    for i in range(end - 1, -1, -1):
        char = s[i]
        if char in ")]}":
            depth += 1
        elif char in "([{":
            if depth == 0:
                return i + 1
            depth -= 1
    return 0


def _formatted(new_value: Any, old: str) -> str:
    """``new_value`` as text, in the old value's quotes when the old one was quoted."""
    text = str(new_value)
    if isinstance(new_value, str) and len(old) >= 2 and old[0] == old[-1] and old[0] in "'\"":
        if not (len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""):
            return f"{old[0]}{text}{old[0]}"
    return text


def _substitute_default(s: str, new_value: Any) -> str:
    """``s`` (a parameter's description) with its stated default replaced by ``new_value``:
    ``'int (default=128)'`` → ``'int (default=256)'``; ``None`` leaves ``s`` as it is."""
    if new_value is None:
        return s
    match = _DEFAULT_AFTER.search(s)
    if match:
        start = match.end()
        end = _value_end(s, start)
    else:
        end = s.find(_BY_DEFAULT)
        if end < 0:
            return s
        start = _value_start(s, end)
    return s[:start] + _formatted(new_value, s[start:end]) + s[end:]


def _unwrapped(value: Any) -> Any:
    """The class a ``functools.partial`` of it stands for; anything else as it is."""
    return value.func if isinstance(value, functools.partial) else value


def _describe(value: Any) -> str:
    value = _unwrapped(value)
    is_class = inspect.isclass(value)
    if (is_class and issubclass(value, torch.nn.Module)) or isinstance(value, torch.nn.Module):
        return "torch module (class or instance)"
    if is_class and issubclass(value, torch.optim.Optimizer):
        return "torch optimizer (class)"
    if value is None:
        return "(default=None)"
    shown = value.__name__ if is_class or inspect.isfunction(value) else repr(value)
    return f"{type(value).__name__} (default={shown})"


def _settings(estimator: Any, prefix: str, owner: Any) -> dict[str, Any]:
    """The top-level settings of ``estimator``: its ``get_params`` or, for a module class or
    instance, its constructor's defaults overridden by the owning net's ``module__*`` values."""
    if hasattr(estimator, "get_params"):
        return {k: v for k, v in estimator.get_params(deep=False).items() if "__" not in k}
    target = _unwrapped(estimator)
    cls = target if inspect.isclass(target) else type(target)
    params = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
              if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    if isinstance(estimator, functools.partial):
        params.update({k: v for k, v in estimator.keywords.items() if k in params})
    if owner is not None:
        given = owner.get_params(deep=False)
        params.update({name: given[f"module__{name}"] for name in params if f"module__{name}" in given})
    return {k: (None if v is inspect.Parameter.empty else v) for k, v in params.items()}


def print_help(estimator: Any, defaults: Mapping[str, Any] | None = None) -> None:
    """Print every parameter of ``estimator`` (a net, an sklearn estimator or a pipeline of them)
    that the command line can set, with its default (``defaults`` overriding the estimator's)."""
    defaults = dict(defaults or {})
    script = sys.argv[0] if sys.argv and sys.argv[0] else "train.py"
    lines = ["Parameters of the model (set them as --name value). For the script's other options "
             f"run:\n    python {script} -- --help\n"]
    net = None
    for prefix, part in _yield_estimators(estimator):
        owner = net if prefix.endswith("module") and net is not None else None
        net = part if _is_net(part) else net
        target = _unwrapped(part)
        cls = target if inspect.isclass(target) else type(target)
        lines.append(f"<{cls.__name__}> options:")
        for name, value in _settings(part, prefix, owner).items():
            key = f"{prefix}__{name}" if prefix else name
            lines.append(f"  --{key} : {_substitute_default(_describe(value), defaults.get(key))}")
        lines.append("")
    print("\n".join(lines))


def parse_args(kwargs: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
               ) -> Callable[[Any], Any]:
    """A function that sets ``defaults`` and then ``kwargs`` (they take precedence) on an
    estimator, resolving dotted names, and returns it; ``kwargs['help']`` prints the help instead
    and exits.

    Parameters
    ----------
    kwargs : dict
        The command line's keyword arguments (``{'lr': 0.05, 'module__nonlin': 'torch.nn.Tanh'}``).
    defaults : dict, optional
        The script's own defaults, shown by ``--help`` and overridden by ``kwargs``.
    """
    def set_params(estimator: Any) -> Any:
        if kwargs.get("help"):
            print_help(estimator, defaults)
            sys.exit()
            return estimator
        estimator.set_params(**parse_net_kwargs(defaults or {}))
        estimator.set_params(**parse_net_kwargs(kwargs))
        return estimator
    return set_params
