"""Reading and writing a net's parts: state dicts, history JSON, pickles; to paths, files or URLs.

>>> import io, torch
>>> buffer = io.BytesIO()
>>> save_torch({"w": torch.ones(2)}, buffer)
>>> _ = buffer.seek(0)
>>> load_torch(buffer, "cpu")["w"].tolist()
[1.0, 1.0]

Local paths are written crash-safely (a temporary file, fsync, then an atomic rename), so an
interrupted save never leaves a half-written file under the requested name. URLs such as
``s3://bucket/run/params.pt`` go through fsspec.
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings
from typing import IO, Any, Iterator

import torch
from torch import nn

from .checkpoint.location import is_url, replacing
from .exceptions import DeviceWarning
from .utils import closest_name

Target = Any  # a path, a PathLike, a binary file object, or an fsspec URL
OTHER_KEYS = ("f_history", "f_pickle")


def split_f_arguments(caller: str, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sort ``f_*`` arguments into parts (``{'module_': target}``) and the rest (history, pickle).

    ``f_params`` names ``module_``, ``f_<name>`` names ``<name>_``; ``None`` values are skipped.

    >>> split_f_arguments("save_params", f_params="p.pt", f_optimizer=None, f_history="h.json")
    ({'module_': 'p.pt'}, {'f_history': 'h.json'})
    """
    if kwargs.get("f_params") is not None and kwargs.get("f_module") is not None:
        raise TypeError(f"{caller}() got both f_params and f_module, which name the same file; pass one")
    parts, others = {}, {}
    for key, value in kwargs.items():
        if not key.startswith("f_"):
            raise TypeError(f"{caller}() got an unexpected argument {key!r}; file arguments are "
                            f"named f_<part>, e.g. 'f_{key}'")
        if value is None:
            continue
        if key in OTHER_KEYS:
            others[key] = value
        else:
            parts["module_" if key == "f_params" else key[2:] + "_"] = value
    return parts, others


def part_of(net: Any, attr: str, caller: str) -> Any:
    """The module, criterion or optimizer ``net.<attr>``, or an error listing the parts it has."""
    part = getattr(net, attr, None)
    if isinstance(part, (nn.Module, torch.optim.Optimizer)):
        return part
    available = sorted(
        name for name, value in vars(net).items()
        if name.endswith("_") and isinstance(value, (nn.Module, torch.optim.Optimizer))
    )
    key = "f_params" if attr == "module_" else f"f_{attr[:-1]}"
    hint = closest_name(attr, available)
    raise AttributeError(
        f"{caller}({key}=...): the net has no module, criterion or optimizer named {attr!r}{hint}; "
        f"it has: {', '.join(available) or 'none'}. Use f_params for module_ and f_<name> for <name>_."
    )


@contextlib.contextmanager
def open_target(target: Target, mode: str) -> Iterator[IO]:
    """A file to read (``'rb'``/``'r'``) or write (``'wb'``/``'w'``) for any :data:`Target`."""
    if hasattr(target, "read") or hasattr(target, "write"):
        yield target
    elif is_url(target):
        import fsspec

        with fsspec.open(target, mode) as f:
            yield f
    elif "w" in mode:
        with _atomic_file(os.fspath(target), mode) as f:
            yield f
    else:
        with open(os.fspath(target), mode) as f:
            yield f


@contextlib.contextmanager
def _atomic_file(path: str, mode: str) -> Iterator[IO]:
    with replacing(path) as tmp, open(tmp, mode) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def save_torch(obj: Any, target: Target) -> None:
    """``torch.save(obj)`` to any :data:`Target`."""
    with open_target(target, "wb") as f:
        torch.save(obj, f)


def _safetensors_torch() -> Any:
    try:
        import safetensors.torch
    except ImportError:
        raise ImportError(
            "use_safetensors=True needs the safetensors package: pip install 'prefect-torch[safetensors]' "
            "(or pip install safetensors), or leave use_safetensors=False to use torch.save") from None
    return safetensors.torch


def safetensors_bytes(state_dict: Any, what: str) -> bytes:
    """``state_dict`` in the safetensors format; only a flat dict of tensors can be stored.

    ``what`` names the file or part in the error (e.g. an optimizer's state, which holds
    plain Python values, cannot be stored this way; skorch refuses it too).
    """
    st = _safetensors_torch()
    try:
        if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
            raise ValueError("not a flat dict of tensors")
        return st.save({key: value.contiguous() for key, value in state_dict.items()})
    except ValueError as error:
        raise ValueError(
            f"You are trying to store {what} using safetensors but there was an error ({error}). "
            "Safetensors can only store tensors, not generic Python objects (as e.g. optimizer states). "
            "Save that part without safetensors: pass f_optimizer=None here and save it in a separate "
            "call with use_safetensors=False.") from error


def save_state(state_dict: Any, target: Target, use_safetensors: bool = False) -> None:
    """A state dict to any :data:`Target`: ``torch.save``, or safetensors when asked."""
    if not use_safetensors:
        save_torch(state_dict, target)
        return
    data = safetensors_bytes(state_dict, _describe(target))
    with open_target(target, "wb") as f:
        f.write(data)


def load_state(source: Target, map_location: Any, use_safetensors: bool = False,
               **torch_load_kwargs: Any) -> Any:
    """A state dict from any :data:`Target` (the format of :func:`save_state`) on ``map_location``."""
    if not use_safetensors:
        return load_torch(source, map_location, **torch_load_kwargs)
    st = _safetensors_torch()
    with open_target(source, "rb") as f:
        data = f.read()
    try:
        state = st.load(data)
    except Exception as error:  # safetensors raises its own SafetensorError for a malformed file
        raise ValueError(
            f"cannot read {_describe(source)} as safetensors ({error}); was it saved with "
            "use_safetensors=True? Load torch.save files with use_safetensors=False") from error
    return {key: value.to(map_location) for key, value in state.items()}


def load_torch(source: Target, map_location: Any, **torch_load_kwargs: Any) -> Any:
    """``torch.load`` from any :data:`Target`; ``weights_only=True`` unless told otherwise."""
    torch_load_kwargs.setdefault("weights_only", True)
    with open_target(source, "rb") as f:
        return torch.load(f, map_location=map_location, **torch_load_kwargs)


def map_location_for(device: Any) -> str:
    """Where loaded tensors go: ``device``, or the CPU (with a warning) when CUDA is missing."""
    if device is None:
        return "cpu"
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        warnings.warn(f"device={device!r} is not available here; loading onto the CPU instead "
                      "(set device='cpu' to silence this)", DeviceWarning, stacklevel=3)
        return "cpu"
    return str(device)


def apply_state_dict(part: Any, state_dict: Any, attr: str, source: Target) -> None:
    """``part.load_state_dict(state_dict)`` with a clear error when the shapes do not fit."""
    if isinstance(part, nn.Module) and isinstance(state_dict, dict):
        problems = architecture_mismatch(part, state_dict)
        if problems:
            raise ValueError(
                f"cannot load {_describe(source)} into net.{attr} ({type(part).__name__}): "
                f"the weights were saved from a different architecture. {problems}. Build the net with "
                "the same module and module__* arguments as the one that saved them."
            )
    try:
        part.load_state_dict(state_dict)
    except (ValueError, KeyError, RuntimeError) as error:
        raise ValueError(
            f"cannot load {_describe(source)} into net.{attr} ({type(part).__name__}): {error}. Was it saved "
            "from a net with the same module, criterion and optimizer (and their arguments)?"
        ) from error


def architecture_mismatch(module: nn.Module, state_dict: dict) -> str:
    """A sentence naming missing, unexpected and mis-shaped keys; empty when they fit."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and isinstance(state_dict[k], torch.Tensor) and state_dict[k].shape != v.shape
    ]
    parts = []
    if missing:
        parts.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {', '.join(unexpected)}")
    if shapes:
        parts.append(f"different shapes (saved vs this net): {'; '.join(shapes)}")
    return "; ".join(parts)


def _describe(source: Target) -> str:
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    return getattr(source, "name", None) or type(source).__name__


def history_json(history: list) -> str:
    """The history as JSON text, or a ``TypeError`` naming the first value JSON cannot hold.

    >>> history_json([{"epoch": 1, "batches": [], "f1": 0.5}])
    '[{"epoch": 1, "batches": [], "f1": 0.5}]'
    """
    try:
        return json.dumps(history)
    except (TypeError, ValueError):
        bad = _first_non_json(history, ())
        if bad is None:
            raise
    path, value = bad
    raise TypeError(
        f"the history cannot be saved as JSON: {_where(history, path)} is a "
        f"{type(value).__module__}.{type(value).__qualname__} ({value!r}). Record plain Python "
        "values in the history (e.g. float(x) or x.item())."
    )


def _where(history: list, path: tuple) -> str:
    """``key 'f1' of epoch 3`` (or of a batch) for a path into the history."""
    if len(path) >= 2 and isinstance(path[0], int):
        row = history[path[0]]
        epoch = row.get("epoch", path[0] + 1) if isinstance(row, dict) else path[0] + 1
        if path[1] == "batches" and len(path) >= 4:
            return f"key {path[3]!r} of batch {path[2]} of epoch {epoch}"
        return f"key {path[1]!r} of epoch {epoch}"
    return "history" + "".join(f"[{p!r}]" for p in path)


def _first_non_json(value: Any, path: tuple) -> tuple[tuple, Any] | None:
    if value is None or isinstance(value, (str, int, float)):  # bool is an int; numpy.float64 a float
        return None
    if isinstance(value, (list, tuple)):
        items: Any = enumerate(value)
    elif isinstance(value, dict):
        bad_key = next((k for k in value if not isinstance(k, str)), None)
        if bad_key is not None:
            return path + (bad_key,), bad_key
        items = value.items()
    else:
        return path, value
    for key, item in items:
        found = _first_non_json(item, path + (key,))
        if found:
            return found
    return None
