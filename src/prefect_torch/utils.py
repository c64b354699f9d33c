"""Small conversions shared by the estimators, the data layer and the callbacks.

>>> import numpy as np
>>> from prefect_torch.utils import to_tensor, to_numpy
>>> to_numpy(to_tensor(np.arange(3), device="cpu")).tolist()
[0, 1, 2]
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch


def is_dataframe(x: Any) -> bool:
    """True for pandas DataFrames and Series (checked without importing pandas)."""
    return hasattr(x, "iloc") and hasattr(x, "to_numpy")


def is_sparse(x: Any) -> bool:
    """True for scipy sparse matrices and arrays (checked without importing scipy)."""
    return hasattr(x, "tocsr") and hasattr(x, "nnz")


def is_torch_dataset(x: Any) -> bool:
    return isinstance(x, torch.utils.data.Dataset)


def yields_targets(net: Any, X: Any) -> bool:
    """True when the data bring their own targets: ``X`` is a torch Dataset, or the net's
    ``iterator_train`` is not the default ``DataLoader`` (a custom one may make them)."""
    return is_torch_dataset(X) or getattr(net, "iterator_train", None) is not torch.utils.data.DataLoader


def to_tensor(x: Any, device: str | torch.device | None) -> Any:
    """Turn arrays, DataFrames, lists, and dicts or tuples of them into tensors on ``device``."""
    if isinstance(x, torch.Tensor):
        return x if device is None else x.to(device)
    if isinstance(x, Mapping):
        return {key: to_tensor(value, device) for key, value in x.items()}
    if isinstance(x, tuple):
        return tuple(to_tensor(value, device) for value in x)
    if is_dataframe(x):
        # DataFrames give read-only, column-major arrays: copy to row-major for fast batches
        x = np.array(x.to_numpy(), order="C", copy=True)
    if isinstance(x, np.ndarray) and x.dtype == object:
        raise TypeError(
            f"cannot turn an array of dtype object into a tensor (first value: {x.flat[0]!r}); "
            "convert it to a numeric dtype first, e.g. X.astype(np.float32)"
        )
    tensor = torch.as_tensor(np.asarray(x) if isinstance(x, (list, np.ndarray)) else x)
    return tensor if device is None else tensor.to(device)


def to_numpy(x: Any) -> Any:
    """Turn a tensor (or dict/tuple of tensors) into numpy arrays on the CPU."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, Mapping):
        return {key: to_numpy(value) for key, value in x.items()}
    if isinstance(x, tuple):
        return tuple(to_numpy(value) for value in x)
    if is_dataframe(x):
        return x.to_numpy()
    return np.asarray(x)


def get_len(x: Any) -> int:
    """Number of samples in ``x``; all values of a dict must agree."""
    if isinstance(x, Mapping):
        lengths = {key: get_len(value) for key, value in x.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(
                f"the arrays of the input dict have different lengths: {lengths}; "
                "every value must hold one row per sample"
            )
        return next(iter(lengths.values()))
    if isinstance(x, (list, tuple)) and x and not np.isscalar(x[0]):
        return get_len(x[0])
    if is_sparse(x):
        return int(x.shape[0])
    return len(x)


def take(x: Any, index: Any) -> Any:
    """Rows ``index`` of ``x`` (tensor, array, DataFrame, or a dict/tuple of those)."""
    if isinstance(x, Mapping):
        return {key: take(value, index) for key, value in x.items()}
    if isinstance(x, tuple):
        return tuple(take(value, index) for value in x)
    if is_dataframe(x):
        return x.iloc[index]
    if isinstance(x, list):
        if x and not np.isscalar(x[0]):  # several arrays (as get_len reads a list of them)
            return [take(value, index) for value in x]
        return [x[i] for i in index]
    return x[index]


def closest_name(name: str, candidates: Sequence[str]) -> str:
    """A ``"; did you mean 'x'?"`` hint for a mistyped name, or ``""``."""
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def params_for(prefix: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``params`` named ``prefix__x``, returned as ``{x: value}``."""
    head = prefix + "__"
    return {key[len(head):]: value for key, value in params.items() if key.startswith(head)}


def noop(*args: Any, **kwargs: Any) -> None:
    """Accept anything, do nothing, return ``None`` (a default for hooks such as
    :class:`~prefect_torch.callbacks.ParamMapper`'s ``fn``)."""


def freeze_parameter(param: torch.nn.Parameter) -> None:
    """Stop training ``param`` (``requires_grad = False``); what :class:`~prefect_torch.callbacks.Freezer` does.

    >>> p = torch.nn.Parameter(torch.zeros(2))
    >>> freeze_parameter(p); p.requires_grad
    False
    """
    param.requires_grad = False


def unfreeze_parameter(param: torch.nn.Parameter) -> None:
    """Train ``param`` again (``requires_grad = True``); what :class:`~prefect_torch.callbacks.Unfreezer` does."""
    param.requires_grad = True
