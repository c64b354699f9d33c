"""From the UI to code: the Python snippet and the commands that load one checkpoint version.

Plain Python (no Prefect). :func:`load_guide` reads, once per training run, how a fresh process
can rebuild the net and its data; :func:`load_snippet` then writes, for any version, a snippet
that runs as copied from a new shell in the directory the flow ran in:

- the net from its class and its module's class when both are importable (not ``__main__``)
  and the routed ``module__*`` parameters are plain literals, else a marked placeholder line;
- the data from an import path (``fit_in_flow(..., data_source="pkg.mod:make_data")``; what
  ``train_flow`` and sweeps pass), else a marked placeholder line naming the training inputs'
  dtype and shape;
- the checkpoint directory as the user gave it (a relative path stays relative), with its
  ``fn_prefix`` and its storage options without secrets (credentials come from the environment).

>>> from prefect_torch import NeuralNetClassifier
>>> from prefect_torch.callbacks import Checkpoint
>>> from prefect_torch.examples import MyModule
>>> cp = Checkpoint(monitor=None, dirname="checkpoints/demo")
>>> net = NeuralNetClassifier(MyModule, module__num_units=20, callbacks=[cp])
>>> guide = load_guide(net, cp, data_source="prefect_torch.examples:make_data")
>>> print(load_snippet(guide, 7))
from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Checkpoint
from prefect_torch.examples import MyModule, make_data
<BLANKLINE>
net = NeuralNetClassifier(MyModule, module__num_units=20)
cp = Checkpoint(dirname='checkpoints/demo')
net.load_params(checkpoint=cp, version=7)
X, y = make_data()
y_pred = net.predict(X)
print(y_pred[:10])
>>> cli_commands(guide, 7)
['prefect-torch checkpoints checkpoints/demo --version 7', 'prefect-torch export checkpoints/demo out/ --version 7']
"""
from __future__ import annotations

import importlib
import math
import os
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..checkpoint.redact import without_secrets

LINK_EXPIRES_ENV = "PREFECT_TORCH_LINK_EXPIRES"  # seconds the summary's S3 download links last
DEFAULT_LINK_SECONDS = 7 * 24 * 3600  # the longest an S3 presigned URL (SigV4) may last
PLACEHOLDER = "# <- fill in"


@dataclass(frozen=True)
class LoadGuide:
    """How a fresh process rebuilds a training run's net and data (see the module docstring).

    Parameters
    ----------
    net_line : str
        ``net = ...``: runnable, or a placeholder ending in :data:`PLACEHOLDER`.
    data_line : str
        ``X, y = ...`` or a placeholder ``X = ...``.
    imports : tuple of (module, name)
        What the two lines import.
    dirname : str
        The checkpoint directory as the user gave it.
    fn_prefix : str
        The checkpoint's ``fn_prefix``.
    storage_options : dict
        Its fsspec options without secrets.
    link_seconds : int
        How long the summary's S3 download links last.
    workdir : str
        The working directory of the run (what a relative ``dirname`` is relative to).
    """

    net_line: str
    data_line: str
    imports: tuple[tuple[str, str], ...] = ()
    dirname: str = "."
    fn_prefix: str = ""
    storage_options: dict[str, Any] = field(default_factory=dict)
    link_seconds: int = DEFAULT_LINK_SECONDS
    workdir: str = "."

    @property
    def runnable(self) -> bool:
        """Whether the snippet runs as copied (no placeholder line)."""
        return PLACEHOLDER not in self.net_line and PLACEHOLDER not in self.data_line

    @property
    def relative(self) -> bool:
        """Whether the directory is a relative local path (relative to the run's working directory)."""
        return "://" not in self.dirname and not os.path.isabs(self.dirname)


def load_guide(net: Any, checkpoint: Any, *, data_source: str | None = None,
               data_params: Mapping[str, Any] | None = None, X: Any = None,
               link_seconds: int | None = None) -> LoadGuide:
    """The :class:`LoadGuide` of ``net`` (training with ``checkpoint``): see the module
    docstring. ``X`` (the training inputs) only names their dtype and shape in the placeholder
    used without ``data_source``; ``link_seconds`` defaults to :func:`link_seconds_from_env`."""
    net_line = _net_line(net)
    imports: list[tuple[str, str]] = []
    if net_line is None:
        net_line = (f"net = ...  {PLACEHOLDER}: build the net as in training ({type(net).__name__} with "
                    f"module {_name_of(getattr(net, 'module', None))}), then load into it")
    else:
        imports += [_import_of(type(net)), _import_of(net.module)]
    data_line = _data_line(data_source, data_params or {})
    if data_line is None:
        data_line = f"X = ...  {PLACEHOLDER}: your inputs, e.g. {describe_inputs(X)}"
    else:
        module, _, name = (data_source or "").partition(":")
        imports.append((module, name))
    return LoadGuide(
        net_line, data_line, tuple(imports), dirname=os.fspath(checkpoint.dirname or "."),
        fn_prefix=checkpoint.fn_prefix or "",
        storage_options=without_secrets(dict(checkpoint.storage_options or {})),
        link_seconds=link_seconds_from_env() if link_seconds is None else link_seconds, workdir=os.getcwd())


def load_snippet(guide: LoadGuide, version: int) -> str:
    """Python that loads ``version`` (an id) of the guide's checkpoint into a new net and predicts."""
    modules: dict[str, list[str]] = {}
    for module, name in (*guide.imports[:1], ("prefect_torch.callbacks", "Checkpoint"), *guide.imports[1:]):
        names = modules.setdefault(module, [])
        if name not in names:
            names.append(name)
    lines = [f"from {module} import {', '.join(names)}" for module, names in modules.items()]
    arguments = [f"dirname={guide.dirname!r}"]
    if guide.fn_prefix:
        arguments.append(f"fn_prefix={guide.fn_prefix!r}")
    if guide.storage_options:
        arguments.append(f"storage_options={guide.storage_options!r}")
    lines += ["", guide.net_line, f"cp = Checkpoint({', '.join(arguments)})",
              f"net.load_params(checkpoint=cp, version={version})",
              guide.data_line, "y_pred = net.predict(X)", "print(y_pred[:10])"]
    return "\n".join(lines)


def cli_commands(guide: LoadGuide, version: int) -> list[str]:
    """The shell commands that show ``version``'s files and copy them out."""
    where = shlex.quote(guide.dirname)
    prefix = f" --prefix {shlex.quote(guide.fn_prefix)}" if guide.fn_prefix else ""
    return [f"prefect-torch checkpoints {where} --version {version}{prefix}",
            f"prefect-torch export {where} out/ --version {version}{prefix}"]


def link_seconds_from_env(environ: Mapping[str, str] | None = None) -> int:
    """Seconds the summary's S3 links last: ``$PREFECT_TORCH_LINK_EXPIRES`` (1 to 604800), else 7 days.

    >>> link_seconds_from_env({}), link_seconds_from_env({"PREFECT_TORCH_LINK_EXPIRES": "3600"})
    (604800, 3600)
    >>> link_seconds_from_env({"PREFECT_TORCH_LINK_EXPIRES": "2w"})
    Traceback (most recent call last):
    ...
    ValueError: PREFECT_TORCH_LINK_EXPIRES='2w': give the seconds the S3 download links of the summary last, a whole number from 1 to 604800 (7 days, the most S3 allows)
    """
    raw = (os.environ if environ is None else environ).get(LINK_EXPIRES_ENV, "").strip()
    if not raw:
        return DEFAULT_LINK_SECONDS
    try:
        seconds = int(raw)
    except ValueError:
        seconds = 0
    if not 1 <= seconds <= DEFAULT_LINK_SECONDS:
        raise ValueError(f"{LINK_EXPIRES_ENV}={raw!r}: give the seconds the S3 download links of the summary "
                         f"last, a whole number from 1 to {DEFAULT_LINK_SECONDS} (7 days, the most S3 allows)")
    return seconds


def describe_inputs(X: Any) -> str:
    """``X``'s dtype and shape in words, for the placeholder (cheap: attributes only).

    >>> import numpy as np
    >>> describe_inputs(np.zeros((100, 20), dtype="float32")), describe_inputs([1, 2])
    ('float32 array of shape (n, 20)', 'list, as given to fit')
    """
    shape, dtype = getattr(X, "shape", None), getattr(X, "dtype", None)
    if isinstance(shape, tuple) or (shape is not None and hasattr(shape, "__len__")):
        dims = ", ".join(["n", *(str(int(d)) for d in tuple(shape)[1:])])
        kind = "tensor" if type(X).__module__.startswith("torch") else "array"
        return f"{str(dtype).removeprefix('torch.')} {kind} of shape ({dims})"
    return f"{type(X).__name__}, as given to fit"


def _importable(obj: Any) -> bool:
    """``obj`` is a class that a fresh process imports under the same name."""
    if not isinstance(obj, type) or obj.__module__ == "__main__" or "<" in obj.__qualname__:
        return False
    try:
        found: Any = importlib.import_module(obj.__module__)
        for part in obj.__qualname__.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return False
    return found is obj


def _import_of(cls: type) -> tuple[str, str]:
    """Where to import ``cls`` from: its package's root when that exports it
    (``from prefect_torch import NeuralNetClassifier``), else its module."""
    name = cls.__qualname__.split(".")[0]
    root = cls.__module__.split(".")[0]
    try:
        exported = getattr(importlib.import_module(root), cls.__qualname__, None) is cls
    except ImportError:
        exported = False
    return (root if exported else cls.__module__), name


def _literal(value: Any) -> bool:
    """A value whose ``repr`` is Python that rebuilds it."""
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return type(value) in (list, tuple) and all(_literal(v) for v in value)
    if isinstance(value, dict):
        return type(value) is dict and all(isinstance(k, str) and _literal(v) for k, v in value.items())
    return False


def _net_line(net: Any) -> str | None:
    """``net = Class(Module, module__x=...)`` when every part of it is importable or literal."""
    module = getattr(net, "module", None)
    if not (isinstance(module, type) and _importable(type(net)) and _importable(module)):
        return None
    routed = {k: v for k, v in net.get_params(deep=False).items() if k.startswith("module__")}
    if not all(_literal(v) for v in routed.values()):
        return None
    arguments = [module.__qualname__, *(f"{k}={v!r}" for k, v in sorted(routed.items()))]
    return f"net = {type(net).__qualname__}({', '.join(arguments)})"


def _data_line(data_source: str | None, data_params: Mapping[str, Any]) -> str | None:
    if not data_source:
        return None
    module, sep, name = data_source.partition(":")
    if not sep or not module or not name.isidentifier() or not all(p.isidentifier() for p in module.split(".")):
        raise ValueError(f"data_source={data_source!r} is not an import path; write it as 'package.module:function' "
                         "(a function returning the training (X, y), e.g. 'prefect_torch.examples:make_data')")
    if not all(isinstance(k, str) and k.isidentifier() and _literal(v) for k, v in data_params.items()):
        return None
    arguments = ", ".join(f"{k}={v!r}" for k, v in sorted(data_params.items()))
    return f"X, y = {name}({arguments})"


def _name_of(obj: Any) -> str:
    return obj.__qualname__ if isinstance(obj, type) else type(obj).__name__
