"""Data handling: the in-memory :class:`Dataset`, :class:`ValidSplit`, and fast batching.

In-memory data (arrays, tensors, DataFrames, dicts of them) is batched by indexing whole
tensors that already sit on the training device; any other ``torch.utils.data.Dataset``
goes through a ``DataLoader``.

>>> import numpy as np
>>> ds = Dataset(np.zeros((10, 3), dtype=np.float32), np.arange(10) % 2)
>>> train, valid = ValidSplit(5, stratified=True)(ds)
>>> len(train), len(valid)
(8, 2)
>>> [xb.shape[0] for xb, yb in TensorBatches(train, batch_size=3, device="cpu")]
[3, 3, 2]
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, Callable, Iterator

import numpy as np
import torch
from sklearn.model_selection import (
    KFold,
    ShuffleSplit,
    StratifiedKFold,
    StratifiedShuffleSplit,
)

from .fetch import make_loader
from .utils import get_len, is_sparse, is_torch_dataset, take, to_numpy, to_tensor


def check_same_length(n_samples: int, y: Any) -> None:
    """Raise a clear error unless ``y`` is None or holds one target per sample."""
    if y is not None and get_len(y) != n_samples:
        raise ValueError(
            f"X and y have different lengths: len(X)={n_samples}, len(y)={get_len(y)}; "
            "pass exactly one target per sample"
        )


class Dataset(torch.utils.data.Dataset):
    """In-memory samples ``X`` (array, tensor, DataFrame or dict of arrays) and optional targets ``y``."""

    def __init__(self, X: Any, y: Any = None, length: int | None = None):
        self.X = X
        self.y = y
        self._len = get_len(X) if length is None else length
        check_same_length(self._len, y)
        self._tensors: dict[str, tuple] = {}

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> tuple:
        X = self.X
        Xi = {key: _row(value, i) for key, value in X.items()} if isinstance(X, dict) else _row(X, i)
        return self.transform(Xi, None if self.y is None else _row(self.y, i))

    def transform(self, X: Any, y: Any) -> tuple:
        """One sample ``(X, y)`` as ``__getitem__`` returns it (override to change samples);
        a missing target becomes ``tensor(0.)``, since a DataLoader cannot collate ``None``."""
        return X, torch.zeros(()) if y is None else y

    def subset(self, indices: Any) -> "Dataset":
        """The samples at ``indices`` as a new in-memory dataset."""
        indices = np.asarray(indices)
        y = None if self.y is None else take(self.y, indices)
        return Dataset(take(self.X, indices), y, length=len(indices))

    def tensors(self, device: str | torch.device | None) -> tuple[Any, Any]:
        """``(X, y)`` as tensors on ``device``, converted once and cached."""
        key = str(device)
        if key not in self._tensors:
            y = None if self.y is None else to_tensor(self.y, device)
            X = SparseRows(self.X, device) if is_sparse(self.X) else to_tensor(self.X, device)
            self._tensors = {key: (X, y)}
        return self._tensors[key]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_tensors"] = {}
        return state


class SparseRows:
    """A scipy sparse matrix whose rows, taken by index, come out as dense tensors on ``device``:
    a ``TfidfVectorizer``'s output trains batch by batch, never densified whole.

    >>> import scipy.sparse
    >>> SparseRows(scipy.sparse.eye(4, format="csr"), "cpu")[1:3].tolist()
    [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]
    """

    def __init__(self, matrix: Any, device: str | torch.device | None):
        self.matrix = matrix.tocsr()
        self.device = device

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    def __getitem__(self, index: Any) -> torch.Tensor:
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        return to_tensor(self.matrix[index].toarray(), self.device)


def _row(x: Any, i: int) -> Any:
    if is_sparse(x):
        return torch.as_tensor(x[[i]].toarray()[0])
    return x.iloc[i].to_numpy() if hasattr(x, "iloc") and x.ndim > 1 else (x.iloc[i] if hasattr(x, "iloc") else x[i])


class TensorBatches:
    """Batches of an in-memory :class:`Dataset`, cut from whole tensors on ``device``.

    Random numbers are drawn from torch's global generator exactly as a ``DataLoader`` draws
    them (one seed per pass, one more for shuffling), so a seeded run gives the same batches,
    the same dropout masks and the same weights as training through a ``DataLoader``.
    """

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool = False,
                 drop_last: bool = False, device: str | torch.device | None = "cpu"):
        self.dataset = dataset
        self.batch_size = len(dataset) if batch_size == -1 else batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.device = device

    def __len__(self) -> int:
        n, size = len(self.dataset), self.batch_size
        return n // size if self.drop_last else -(-n // size)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        X, y = self.dataset.tensors(self.device)
        n = len(self.dataset)
        _draw_seed()  # the DataLoader iterator's base seed
        order = None
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(_draw_seed())
            order = torch.randperm(n, generator=generator).to(self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            stop = min(start + self.batch_size, n)
            index = slice(start, stop) if order is None else order[start:stop]
            yield take(X, index), None if y is None else y[index]


def _draw_seed() -> int:
    return int(torch.empty((), dtype=torch.int64).random_().item())


FAST_ITERATOR_ARGS = {"batch_size", "shuffle", "drop_last"}


def make_iterator(dataset: Any, iterator: Callable, kwargs: dict, device: Any) -> Any:
    """Fast tensor batches where the data allow it, else ``iterator(dataset, **kwargs)``
    (a ``DataLoader`` fetching whole batches from datasets of tensors: :mod:`.fetch`)."""
    if (
        iterator is torch.utils.data.DataLoader
        and type(dataset) is Dataset
        and set(kwargs) <= FAST_ITERATOR_ARGS
    ):
        return TensorBatches(dataset, device=device, **kwargs)
    if kwargs.get("batch_size") == -1:
        kwargs = {**kwargs, "batch_size": len(dataset)}
    if iterator is torch.utils.data.DataLoader:
        return make_loader(dataset, kwargs)
    return iterator(dataset, **kwargs)


def targets_of(dataset: Any) -> Any:
    """The targets of a dataset with a ``y`` attribute, or of a ``Subset`` of one, else ``None``."""
    if isinstance(dataset, torch.utils.data.Subset):
        y = targets_of(dataset.dataset)
        return None if y is None else take(y, np.asarray(dataset.indices))
    if isinstance(dataset, torch.utils.data.TensorDataset) and len(dataset.tensors) == 2:
        return dataset.tensors[1]
    return getattr(dataset, "y", None)


def inputs_of(dataset: Any) -> Any:
    """The user's ``X`` behind an in-memory :class:`Dataset` (or a ``Subset`` of one); any other
    dataset is its own input."""
    if isinstance(dataset, Dataset):
        return dataset.X
    if isinstance(dataset, torch.utils.data.Subset) and isinstance(dataset.dataset, Dataset):
        return take(dataset.dataset.X, np.asarray(dataset.indices))
    return dataset


class ValidSplit:
    """Holds out part of the data for validation: ``cv`` folds (int) or a fraction (float).

    ``ValidSplit(5)`` keeps the first of 5 folds (20%) for validation; ``stratified=True``
    keeps class proportions; ``cv`` may also be any scikit-learn splitter.

    >>> ValidSplit(0.25, random_state=0)(Dataset(np.zeros((8, 1))))[1].X.shape
    (2, 1)
    """

    def __init__(self, cv: Any = 5, stratified: bool = False, random_state: int | None = None):
        self.cv = cv
        self.stratified = stratified
        self.random_state = random_state
        self._splitter()  # validate early

    def _splitter(self) -> Any:
        cv, stratified = self.cv, self.stratified
        if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
            if cv < 2:
                raise ValueError(f"ValidSplit(cv={cv}): an integer cv must be at least 2 folds")
            shuffle = self.random_state is not None
            kind = StratifiedKFold if stratified else KFold
            return kind(cv, shuffle=shuffle, random_state=self.random_state)
        if isinstance(cv, numbers.Real):
            if not 0 < float(cv) < 1:
                raise ValueError(f"ValidSplit(cv={cv}): a float cv is the held-out fraction, in (0, 1)")
            kind = StratifiedShuffleSplit if stratified else ShuffleSplit
            return kind(n_splits=1, test_size=cv, random_state=self.random_state)
        if hasattr(cv, "split") and not isinstance(cv, (str, bytes)):
            return cv
        raise TypeError(
            f"ValidSplit(cv={cv!r}): cv must be an int (folds), a float (fraction) or a splitter"
        )

    def __call__(self, dataset: Any, y: Any = None, groups: Any = None) -> tuple[Any, Any]:
        if y is None:
            y = targets_of(dataset)
        if self.stratified and y is None:
            raise ValueError(
                "stratified validation split needs targets y; pass y to fit(), "
                "or use train_split=ValidSplit(5, stratified=False)"
            )
        n = len(dataset)
        y_split = _split_targets(y, n, self.stratified)
        train_idx, valid_idx = next(iter(self._splitter().split(np.zeros(n), y_split, groups)))
        return _subset(dataset, train_idx), _subset(dataset, valid_idx)

    def __repr__(self) -> str:
        return f"ValidSplit(cv={self.cv!r}, stratified={self.stratified}, random_state={self.random_state})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ValidSplit):
            return NotImplemented
        return (self.cv, self.stratified, self.random_state) == (other.cv, other.stratified, other.random_state)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value


def _split_targets(y: Any, n: int, stratified: bool) -> np.ndarray | None:
    """``y`` as one label per sample for the splitter; several targets (a dict, or a list of
    arrays) are fine unless the split is stratified, which needs one label per sample."""
    if y is None:
        return None
    several = isinstance(y, Mapping) or (isinstance(y, (list, tuple)) and len(y) and not np.isscalar(y[0]))
    if several:
        if stratified:
            raise ValueError(
                f"a stratified split needs one class label per sample, but y is a {type(y).__name__} "
                "of several targets; pass the labels to stratify on as y, or use stratified=False"
            )
        return None
    y_split = to_numpy(y)
    if len(y_split) != n:
        raise ValueError(f"ValidSplit: len(y)={len(y_split)} differs from len(dataset)={n}")
    return y_split


def _subset(dataset: Any, indices: np.ndarray) -> Any:
    if isinstance(dataset, Dataset):
        return dataset.subset(indices)
    return torch.utils.data.Subset(dataset, indices.tolist())


class predefined_split:
    """A ``train_split`` that trains on all of ``X`` and validates on ``dataset_valid``.

    >>> split = predefined_split(Dataset(np.zeros((2, 1))))
    >>> [len(part) for part in split(Dataset(np.zeros((5, 1))))]
    [5, 2]
    """

    def __init__(self, dataset_valid: Any):
        self.dataset_valid = dataset_valid

    def __call__(self, dataset: Any, y: Any = None, groups: Any = None) -> tuple[Any, Any]:
        return dataset, self.dataset_valid


def as_dataset(X: Any, y: Any = None, dataset: Callable = Dataset, **kwargs: Any) -> Any:
    """``X`` itself when it is a torch Dataset, else ``dataset(X, y, **kwargs)`` (or ``dataset``
    itself when it is an initialized Dataset)."""
    if is_torch_dataset(X):
        return X  # it yields its own targets; a y given with it only guides the split (stratification)
    if is_torch_dataset(dataset):
        if kwargs:
            raise ValueError(f"dataset is already an initialized {type(dataset).__name__}, so the "
                             f"dataset__ arguments {sorted(kwargs)} cannot apply; pass the class instead")
        return dataset
    return dataset(X, y, **kwargs)
