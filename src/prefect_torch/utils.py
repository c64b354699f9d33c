"""Small conversions shared by the estimators, the data layer and the callbacks.

>>> import numpy as np
>>> from prefect_torch.utils import to_tensor, to_numpy
>>> to_numpy(to_tensor(np.arange(3), device="cpu")).tolist()
[0, 1, 2]
"""
from __future__ import annotations

import contextlib
import difflib
import itertools
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from enum import Enum
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import PackedSequence


class Ansi(Enum):
    """Terminal colour codes; ``PrintLog`` highlights improved metrics with them, in this order
    from ``CYAN`` on (``ENDC`` ends a colour).

    >>> f"{Ansi.GREEN.value}0.25{Ansi.ENDC.value}" == "\\033[32m0.25\\033[0m"
    True
    """

    BLUE = "\033[94m"
    CYAN = "\033[36m"
    GREEN = "\033[32m"
    MAGENTA = "\033[35m"
    RED = "\033[31m"
    ENDC = "\033[0m"


def is_dataframe(x: Any) -> bool:
    """True for pandas DataFrames and Series (checked without importing pandas)."""
    return hasattr(x, "iloc") and hasattr(x, "to_numpy")


def is_sparse(x: Any) -> bool:
    """True for scipy sparse matrices and arrays (checked without importing scipy)."""
    return hasattr(x, "tocsr") and hasattr(x, "nnz")


def is_pandas_ndframe(x: Any) -> bool:
    """True for pandas DataFrames and Series (skorch's name for :func:`is_dataframe`)."""
    return is_dataframe(x)


def is_torch_dataset(x: Any) -> bool:
    return isinstance(x, torch.utils.data.Dataset)


def yields_targets(net: Any, X: Any) -> bool:
    """True when the data bring their own targets: ``X`` is a torch Dataset, or the net's
    ``iterator_train`` is not the default ``DataLoader`` (a custom one may make them)."""
    return is_torch_dataset(X) or getattr(net, "iterator_train", None) is not torch.utils.data.DataLoader


def is_dataset(x: Any) -> bool:
    """True for any ``torch.utils.data.Dataset``.

    >>> is_dataset(torch.utils.data.TensorDataset(torch.zeros(2))), is_dataset(np.zeros(2))
    (True, False)
    """
    return is_torch_dataset(x)


def is_torch_data_type(x: Any) -> bool:
    """True for tensors and packed sequences (what moves between devices as it is)."""
    return isinstance(x, (torch.Tensor, PackedSequence))


def _is_container_of_data(x: Any) -> bool:
    """A list whose items are tensors, arrays or dicts: several inputs, converted one by one."""
    return bool(x) and all(isinstance(v, (torch.Tensor, np.ndarray, Mapping, PackedSequence)) for v in x)


def to_tensor(x: Any, device: str | torch.device | None, accept_sparse: bool = False) -> Any:
    """Turn arrays, DataFrames, lists, and dicts or tuples of them into tensors on ``device``.

    A dict (a tuple, a list of tensors or arrays) gives a dict (a tuple, a list) of tensors; a
    ``PackedSequence`` moves as it is; a scipy sparse matrix becomes a sparse COO tensor when
    ``accept_sparse=True`` and is refused otherwise.

    >>> to_tensor({"a": np.zeros(2), "b": [1, 2]}, device="cpu")["b"]
    tensor([1, 2])
    """
    if is_torch_data_type(x):
        return x if device is None else x.to(device)
    if isinstance(x, Mapping):
        return {key: to_tensor(value, device, accept_sparse) for key, value in x.items()}
    if isinstance(x, tuple) or (isinstance(x, list) and _is_container_of_data(x)):
        return type(x)(to_tensor(value, device, accept_sparse) for value in x)
    if is_sparse(x):
        if not accept_sparse:
            raise TypeError("Sparse matrices are not supported. Set accept_sparse=True to allow sparse matrices.")
        coo = x.tocoo()
        indices = torch.as_tensor(np.vstack([coo.row, coo.col]), dtype=torch.int64)
        tensor = torch.sparse_coo_tensor(indices, torch.as_tensor(coo.data), size=coo.shape, check_invariants=True)
        return tensor if device is None else tensor.to(device)
    if is_dataframe(x):
        # DataFrames give read-only, column-major arrays: copy to row-major for fast batches
        x = np.array(x.to_numpy(), order="C", copy=True)
    elif hasattr(x, "__array__") and not isinstance(x, np.ndarray):
        x = np.asarray(x)  # e.g. a SliceDataset: its items, loaded
    if isinstance(x, np.ndarray) and x.dtype == object:
        raise TypeError(
            f"cannot turn an array of dtype object into a tensor (first value: {x.flat[0]!r}); "
            "convert it to a numeric dtype first, e.g. X.astype(np.float32)"
        )
    tensor = torch.as_tensor(np.asarray(x) if isinstance(x, (list, np.ndarray)) else x)
    return tensor if device is None else tensor.to(device)


def to_numpy(x: Any) -> Any:
    """Turn a tensor (or a dict, tuple or list of tensors) into numpy arrays on the CPU.

    Unlike skorch, plain numbers and lists of numbers are accepted too (``np.asarray``).

    >>> to_numpy((torch.ones(2), {"a": torch.zeros(1)}))
    (array([1., 1.], dtype=float32), {'a': array([0.], dtype=float32)})
    """
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, Mapping):
        return {key: to_numpy(value) for key, value in x.items()}
    if isinstance(x, tuple) or (isinstance(x, list) and _is_container_of_data(x)):
        return type(x)(to_numpy(value) for value in x)
    if is_dataframe(x):
        return x.to_numpy()
    return np.asarray(x)


def to_device(x: Any, device: str | torch.device | None) -> Any:
    """Move tensors (or a module, or dicts, tuples and lists of them) to ``device``; ``None``: leave.

    Distributions stay where they are (they cannot move).

    >>> to_device([torch.zeros(1), (torch.ones(1),)], "cpu")
    [tensor([0.]), (tensor([1.]),)]
    """
    if device is None:
        return x
    if isinstance(x, Mapping):
        return type(x)({key: to_device(value, device) for key, value in x.items()})  # type: ignore[call-arg]
    if isinstance(x, (tuple, list)) and not isinstance(x, PackedSequence):
        return type(x)(to_device(value, device) for value in x)
    if isinstance(x, torch.distributions.Distribution):
        return x
    return x.to(device)


def get_dim(y: Any) -> int:
    """Number of dimensions of an array or tensor."""
    return y.ndim if hasattr(y, "ndim") else y.dim()


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
    """The entries of ``params`` named ``prefix__x``, returned as ``{x: value}``.

    >>> params_for("encoder", {"encoder__a": 3, "decoder__a": 5})
    {'a': 3}
    """
    head = prefix if prefix.endswith("__") else prefix + "__"
    return {key[len(head):]: value for key, value in params.items() if key.startswith(head)}


def flatten(items: Any) -> Iterator[Any]:
    """The leaves of nested lists, tuples and dicts (a dict contributes its keys)."""
    for item in items:
        if isinstance(item, (list, tuple, Mapping)):
            yield from flatten(item)
        else:
            yield item


def duplicate_items(*collections: Any) -> set:
    """Items that occur more than once across ``collections`` (dicts count their keys).

    >>> duplicate_items([1, 2], {3: "a", 4: "b"}, (2, 3))
    {2, 3}
    """
    seen: set = set()
    duplicates: set = set()
    for item in flatten(collections):
        (duplicates if item in seen else seen).add(item)
    return duplicates


def data_from_dataset(dataset: Any, X_indexing: Any = None, y_indexing: Any = None) -> tuple[Any, Any]:
    """``(X, y)`` of a dataset with ``X`` and ``y`` attributes, a 2-tensor ``TensorDataset``, or a
    ``Subset`` of those (its rows only); ``AttributeError`` for any other dataset.

    ``X_indexing``/``y_indexing``: callables ``(data, rows) -> subset`` for data that plain
    indexing does not handle.

    >>> from prefect_torch.data import Dataset
    >>> ds = torch.utils.data.Subset(Dataset(np.arange(8).reshape(4, 2), np.array([1, 3, 0, 2])), [1, 3])
    >>> [v.tolist() for v in data_from_dataset(ds)]
    [[[2, 3], [6, 7]], [3, 2]]
    """
    if isinstance(dataset, torch.utils.data.Subset):
        X, y = data_from_dataset(dataset.dataset, X_indexing, y_indexing)
        rows = np.asarray(dataset.indices)
        X = (X_indexing or take)(X, rows)
        y = None if y is None else (y_indexing or take)(y, rows)
        return X, y
    if hasattr(dataset, "X") and hasattr(dataset, "y"):
        return dataset.X, dataset.y
    if isinstance(dataset, torch.utils.data.TensorDataset) and len(dataset.tensors) == 2:
        return dataset.tensors[0], dataset.tensors[1]
    raise AttributeError("Could not access X and y from dataset.")


def is_skorch_dataset(dataset: Any) -> bool:
    """True for prefect_torch's in-memory :class:`~prefect_torch.data.Dataset`, also inside ``Subset``s."""
    from .data import Dataset

    while isinstance(dataset, torch.utils.data.Subset):
        dataset = dataset.dataset
    return isinstance(dataset, Dataset)


def noop(*args: Any, **kwargs: Any) -> None:
    """Does nothing (e.g. a ``target_extractor`` that needs no targets)."""


@contextlib.contextmanager
def open_file_like(f: Any, mode: str) -> Iterator[Any]:
    """Open ``f`` if it is a path (else use it as an open file); close it at the end either way."""
    handle = open(f, mode) if isinstance(f, (str, os.PathLike)) else f
    try:
        yield handle
    finally:
        handle.close()


def train_loss_score(net: Any, X: Any = None, y: Any = None) -> Any:
    """The last batch's ``train_loss`` (a scorer for ``BatchScoring``)."""
    return net.history[-1, "batches", -1, "train_loss"]


def valid_loss_score(net: Any, X: Any = None, y: Any = None) -> Any:
    """The last batch's ``valid_loss`` (a scorer for ``BatchScoring``)."""
    return net.history[-1, "batches", -1, "valid_loss"]


class FirstStepAccumulator:
    """Keeps the first value stored (the train step of an optimizer that calls its closure once)."""

    def __init__(self) -> None:
        self.step: Any = None

    def store_step(self, step: Any) -> None:
        if self.step is None:
            self.step = step

    def get_step(self) -> Any:
        return self.step


def freeze_parameter(param: torch.nn.Parameter) -> None:
    """Stop training ``param`` (``requires_grad = False``)."""
    param.requires_grad = False


def unfreeze_parameter(param: torch.nn.Parameter) -> None:
    """Train ``param`` again (``requires_grad = True``)."""
    param.requires_grad = True


def get_map_location(target_device: Any, fallback_device: str = "cpu") -> torch.device:
    """Where to load tensors for ``target_device``: it, or ``fallback_device`` (with a
    ``DeviceWarning``) when it is CUDA and there is none."""
    from .exceptions import DeviceWarning

    device = torch.device(fallback_device if target_device is None else target_device)
    if device.type == "cuda" and not torch.cuda.is_available():
        warnings.warn(f"Requested to load data to CUDA but no CUDA devices are available. Loading on "
                      f"device {fallback_device!r} instead.", DeviceWarning, stacklevel=2)
        return torch.device(fallback_device)
    return device


def check_is_fitted(estimator: Any, attributes: Any = None, msg: str | None = None,
                    all_or_any: Callable = all) -> None:
    """scikit-learn's ``check_is_fitted``, raising :class:`~prefect_torch.exceptions.NotInitializedError`."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted as sklearn_check_is_fitted

    from .exceptions import NotInitializedError

    try:
        sklearn_check_is_fitted(estimator, attributes, msg=msg, all_or_any=all_or_any)
    except NotFittedError as error:
        text = msg or ("This %(name)s instance is not initialized yet. Call 'initialize' or 'fit' with "
                       "appropriate arguments before using this method.")
        raise NotInitializedError(text % {"name": type(estimator).__name__}) from error


class TeeGenerator:
    """A generator that can be iterated over more than once (each pass gets an ``itertools.tee`` copy)."""

    def __init__(self, gen: Any):
        self.gen = gen

    def __iter__(self) -> Iterator[Any]:
        self.gen, copy = itertools.tee(self.gen)
        yield from copy
