"""Batched fetching: one gather per batch instead of one ``__getitem__`` per sample.

A ``DataLoader`` over a map-style dataset calls ``dataset[i]`` for every sample and then
stacks the samples (``default_collate``), unless the dataset defines ``__getitems__``: then
it hands over all of a batch's indices at once. :func:`make_loader` uses that for datasets
whose samples are rows of tensors or numeric arrays -- our in-memory
:class:`~prefect_torch.data.Dataset`, ``torch.utils.data.TensorDataset``, and ``Subset``\\ s of
either (what ``ValidSplit`` makes of a torch dataset) -- and cuts each batch with one indexing
operation per array.

The batch is what ``default_collate`` makes of the samples, value for value, dtype for dtype
and container for container; the sampler and the loader are the ones the user asked for, so
the random numbers drawn (and the weights of a seeded run) do not change.

>>> import torch
>>> from torch.utils.data import DataLoader, TensorDataset
>>> ds = TensorDataset(torch.arange(10.0).reshape(5, 2), torch.arange(5))
>>> loader = make_loader(ds, {"batch_size": 2})
>>> [yb.tolist() for _, yb in loader]
[[0, 1], [2, 3], [4]]
>>> [[t.tolist() for t in b] for b in loader] == [[t.tolist() for t in b] for b in DataLoader(ds, batch_size=2)]
True
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

Fetch = Callable[[np.ndarray], Any]


def _same_method(dataset: Any, base: type, name: str) -> bool:
    """Does ``dataset`` use ``base``'s ``name`` (not a subclass's override)?"""
    return getattr(type(dataset), name, None) is getattr(base, name, None)


def _numeric_rows(x: Any) -> bool:
    """Tensors, and numpy arrays that ``default_collate`` turns into tensors (no strings/objects)."""
    if isinstance(x, torch.Tensor):
        return x.dim() > 0 and x.layout == torch.strided  # sparse rows: one by one, as given
    return isinstance(x, np.ndarray) and x.ndim > 0 and x.dtype.kind in "biufc"


class _TensorRows:
    """The rows ``idx`` of each tensor of a ``TensorDataset``, as a list (like ``default_collate``)."""

    def __init__(self, tensors: tuple[torch.Tensor, ...]):
        self.tensors = tensors

    def __call__(self, idx: np.ndarray) -> list[torch.Tensor]:
        index = torch.from_numpy(idx)
        return [tensor[index] for tensor in self.tensors]


def _rows(x: Any, idx: np.ndarray) -> Any:
    if isinstance(x, torch.Tensor):
        return x[torch.from_numpy(idx)]
    return torch.as_tensor(x[idx])


class _InMemoryRows:
    """The samples ``idx`` of our in-memory ``Dataset`` as ``[X_batch, y_batch]``."""

    def __init__(self, X: Any, y: Any):
        self.X = X
        self.y = y

    def __call__(self, idx: np.ndarray) -> list[Any]:
        X = self.X
        Xb = {key: _rows(value, idx) for key, value in X.items()} if isinstance(X, Mapping) else _rows(X, idx)
        # a sample without a target carries a 0-d zero; stacked, a vector of zeros
        yb = torch.zeros(len(idx)) if self.y is None else _rows(self.y, idx)
        return [Xb, yb]


class _SubsetRows:
    """Rows of a ``Subset``: its indices mapped into the dataset it wraps."""

    def __init__(self, indices: Any, fetch: Fetch):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.fetch = fetch

    def __call__(self, idx: np.ndarray) -> Any:
        return self.fetch(self.indices[idx])


def batch_fetcher(dataset: Any) -> Fetch | None:
    """A function from a batch's indices to the collated batch, or ``None`` when the samples of
    ``dataset`` are not plain rows of tensors or numeric arrays (then fetch one by one)."""
    from .data import Dataset  # data.py imports this module

    if isinstance(dataset, Subset) and _same_method(dataset, Subset, "__getitem__") \
            and _same_method(dataset, Subset, "__getitems__"):
        inner = batch_fetcher(dataset.dataset)
        return None if inner is None else _SubsetRows(dataset.indices, inner)
    if isinstance(dataset, TensorDataset) and _same_method(dataset, TensorDataset, "__getitem__") \
            and not hasattr(dataset, "__getitems__"):
        if all(_numeric_rows(t) for t in dataset.tensors):
            return _TensorRows(dataset.tensors)
        return None
    if isinstance(dataset, Dataset) and _same_method(dataset, Dataset, "__getitem__") \
            and _same_method(dataset, Dataset, "__len__") and not hasattr(dataset, "__getitems__"):
        X, y = dataset.X, dataset.y
        columns = list(X.values()) if isinstance(X, Mapping) else [X]
        if columns and all(_numeric_rows(c) for c in columns) and (y is None or _numeric_rows(y)):
            return _InMemoryRows(X, y)
    return None


class BatchedView(torch.utils.data.Dataset):
    """``dataset`` seen through a batch fetcher: ``__getitems__`` returns a whole, collated batch."""

    def __init__(self, dataset: Any, fetch: Fetch):
        self.dataset = dataset
        self.fetch = fetch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __getitems__(self, indices: Any) -> Any:
        return self.fetch(np.asarray(indices, dtype=np.int64))


def collated(batch: Any) -> Any:
    """The ``collate_fn`` of a :class:`BatchedView`'s loader: the batch is collated already."""
    return batch


def make_loader(dataset: Any, kwargs: dict[str, Any], loader: type = DataLoader) -> Any:
    """``loader(dataset, **kwargs)``, fetching whole batches where the dataset allows it.

    Batched fetching applies when the loader collates batches itself (``batch_size`` or a
    ``batch_sampler``, and no ``collate_fn`` of the user's) and :func:`batch_fetcher` knows
    the dataset; otherwise the loader is built exactly as asked.
    """
    batches = kwargs.get("batch_size", 1) is not None or kwargs.get("batch_sampler") is not None
    fetch = batch_fetcher(dataset) if batches and kwargs.get("collate_fn") is None else None
    if fetch is None:
        return loader(dataset, **kwargs)
    return loader(BatchedView(dataset, fetch), **{**kwargs, "collate_fn": collated})
