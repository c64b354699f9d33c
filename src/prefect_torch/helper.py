"""Helpers that let scikit-learn slice, search and transform what a net trains on.

* :class:`SliceDict` -- a dict of arrays that scikit-learn can index like one array (row slices,
  index lists, masks), so ``GridSearchCV`` works with a module whose ``forward`` takes several inputs;
* :class:`SliceDataset` -- a torch ``Dataset`` seen as a sequence of one of its fields, so
  scikit-learn can split it (lazily: slicing returns another view, items load on integer access);
* :class:`DataFrameTransformer` -- a DataFrame into ``{"X": floats, "<category column>": codes}``;
* :func:`predefined_split` -- validate on a fixed dataset.

>>> import numpy as np
>>> X = SliceDict(words=np.arange(12).reshape(4, 3), length=np.array([3, 1, 2, 3]))
>>> X[1:3]["length"].tolist(), X.shape
([1, 2], (4,))
>>> import torch
>>> ds = torch.utils.data.TensorDataset(torch.arange(6.0).reshape(3, 2), torch.tensor([0, 1, 0]))
>>> y = SliceDataset(ds, idx=1)
>>> y[1:].shape, int(y[2])
((2,), 0)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from .cli_args import parse_args
from .data import predefined_split
from .doctor import SkorchDoctor
from .utils import to_numpy, to_tensor

__all__ = ["SliceDict", "SliceDataset", "DataFrameTransformer", "SkorchDoctor", "parse_args",
           "predefined_split"]


def _rows(value: Any) -> int:
    """Leading dimension of an array or tensor (a list has none: it cannot be row-indexed)."""
    return value.shape[0]


def _all_equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and bool((a == b).all())
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and bool((a == b).all())
    return bool(a == b)


class SliceDict(dict):
    """A dict of arrays (or tensors) with one row per sample, indexed by rows across all values.

    ``d["key"]`` is one value; ``d[rows]`` (a slice, a list or array of indices, a boolean mask)
    is a new ``SliceDict`` holding those rows of every value. ``len(d)`` and ``d.shape`` count
    rows, so scikit-learn's splitters and ``GridSearchCV`` accept it as ``X``. An integer
    index is refused (it would drop a dimension); ask for ``d[3:4]`` instead.

    Parameters
    ----------
    **values : numpy arrays or torch tensors
        All with the same length along the first axis.

    Examples
    --------
    >>> d = SliceDict(a=np.zeros((5, 2)), b=np.arange(5))
    >>> d[[0, 4]]["b"].tolist(), len(d[::2])
    ([0, 4], 3)
    """

    def __init__(self, **values: Any):
        lengths = sorted({_rows(value) for value in values.values()})
        if len(lengths) > 1:
            raise ValueError(f"Initialized with items of different lengths: {', '.join(map(str, lengths))}")
        self._len = lengths[0] if lengths else 0
        super().__init__(**values)

    def __len__(self) -> int:
        return self._len

    @property
    def shape(self) -> tuple[int]:
        return (self._len,)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, str):
            return super().__getitem__(index)
        if isinstance(index, (int, np.integer)):
            raise ValueError("SliceDict cannot be indexed by integers.")
        return type(self)(**{key: value[index] for key, value in self.items()})

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"Key must be str, not {type(key)}.")
        rows = _rows(value)
        if not self:
            self._len = rows
        elif rows != self._len:
            raise ValueError(f"Cannot set array with shape[0] != {self._len}")
        super().__setitem__(key, value)

    def update(self, values: Any = (), /, **kwargs: Any) -> None:  # type: ignore[override]
        for key, value in dict(values, **kwargs).items():
            self[key] = value

    def copy(self) -> "SliceDict":
        return type(self)(**self)

    @classmethod
    def fromkeys(cls, *args: Any, **kwargs: Any) -> Any:
        """Not supported: a SliceDict needs one array per key."""
        raise TypeError("SliceDict does not support fromkeys.")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, dict) or self.keys() != other.keys():
            return False
        return all(_all_equal(value, other[key]) for key, value in self.items())

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SliceDict(**{super().__repr__()})"


class SliceDataset(Sequence):
    """One field of a torch ``Dataset`` as a sequence that scikit-learn can split and index.

    Indexing with an integer loads that sample and returns its field ``idx`` (``0``: X, ``1``:
    y), passed through :meth:`transform`; indexing with a slice, an index array or a boolean mask
    returns another ``SliceDataset`` over those samples without loading anything. ``np.asarray``
    loads every item. Hand it to ``fit`` (and ``GridSearchCV``) as ``X`` or ``y``.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        Any map-style dataset whose items are tuples (or other indexables).
    idx : int, default 0
        Which field of each item to return.
    indices : array-like of int or None, default None
        The samples to expose, in this order (``None``: all of them).

    Examples
    --------
    >>> ds = torch.utils.data.TensorDataset(torch.zeros(4, 3), torch.tensor([1, 0, 1, 0]))
    >>> X = SliceDataset(ds)
    >>> len(X[::2]), X[0].shape
    (2, torch.Size([3]))
    """

    def __init__(self, dataset: Any, idx: int = 0, indices: Any = None):
        self.dataset = dataset
        self.idx = idx
        self.indices = indices
        self.indices_ = np.arange(len(dataset)) if indices is None else indices
        self.ndim = 1

    def __len__(self) -> int:
        return len(self.indices_)

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def transform(self, data: Any) -> Any:
        """Override to change each loaded item (called per item, with one sample)."""
        return data

    def _field(self, item: Any) -> Any:
        try:
            return item[self.idx]
        except IndexError:
            raise IndexError(
                f"{type(self).__name__} is trying to access element {self.idx} but there are only "
                f"{len(item)} elements.") from None

    def __getitem__(self, index: Any) -> Any:  # type: ignore[override]
        if isinstance(index, (int, np.integer)):
            return self.transform(self._field(self.dataset[self.indices_[index]]))
        if isinstance(index, np.ndarray):
            if index.ndim != 1:
                raise IndexError(
                    "SliceDataset only supports slicing with 1 dimensional arrays, got "
                    f"{index.ndim} dimensions instead.")
            if index.dtype == bool:
                index = np.flatnonzero(index)
        return type(self)(self.dataset, idx=self.idx, indices=np.asarray(self.indices_)[index])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        items = [self[i] for i in range(len(self))]
        if items and np.isscalar(items[0]):
            return np.asarray(items, dtype=dtype)
        return np.asarray([to_numpy(item) for item in items], dtype=dtype)


class DataFrameTransformer(TransformerMixin, BaseEstimator):
    """A pandas DataFrame into the dict of arrays a multi-input module's ``forward`` takes.

    Numeric columns are stacked into one 2-D float array under the key ``"X"``; each column of
    ``category`` dtype (and each integer column, with ``treat_int_as_categorical=True``) becomes its
    integer codes under its own name, ready for an ``nn.Embedding``. ``forward`` then takes
    ``X`` plus one argument per categorical column; :meth:`describe_signature` spells it out.

    Parameters
    ----------
    treat_int_as_categorical : bool, default False
        Encode integer columns as categories instead of stacking them with the floats.
    float_dtype : numpy dtype or None, default np.float32
        Dtype of ``"X"`` (``None``: as in the DataFrame).
    int_dtype : numpy dtype or None, default np.int64
        Dtype of the category codes (``None``: pandas' smallest integer dtype).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"size": [1.5, 2.0, 0.5], "color": pd.Categorical(["red", "blue", "red"])})
    >>> Xt = DataFrameTransformer().fit_transform(df)
    >>> Xt["X"].tolist(), Xt["color"].tolist()
    ([[1.5], [2.0], [0.5]], [1, 0, 1])
    """

    def __init__(self, treat_int_as_categorical: bool = False, float_dtype: Any = np.float32,
                 int_dtype: Any = np.int64):
        self.treat_int_as_categorical = treat_int_as_categorical
        self.float_dtype = float_dtype
        self.int_dtype = int_dtype

    def _check_columns(self, df: Any) -> None:
        import pandas as pd

        if "X" in df:
            raise ValueError(
                "DataFrame contains a column named 'X', which clashes with the name chosen for "
                "cardinal features; consider renaming that column.")
        wrong = sorted(
            (str(column), dtype) for column, dtype in df.dtypes.items()
            if not (pd.api.types.is_numeric_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype)))
        if wrong:
            listed = ", ".join(f"{column} ({dtype})" for column, dtype in wrong)
            raise TypeError(
                f"The following columns have dtypes that cannot be interpreted as numerical dtypes: {listed}")

    def fit(self, df: Any, y: Any = None, **fit_params: Any) -> "DataFrameTransformer":
        """Check the columns' dtypes (nothing is learned)."""
        self._check_columns(df)
        return self

    def _is_categorical(self, dtype: Any) -> bool:
        import pandas as pd

        if isinstance(dtype, pd.CategoricalDtype):
            return True
        return self.treat_int_as_categorical and pd.api.types.is_integer_dtype(dtype)

    def transform(self, df: Any) -> dict[str, np.ndarray]:
        """``{"X": the numeric columns stacked, <column>: codes}`` (``"X"`` only if there are any)."""
        self._check_columns(df)
        result: dict[str, np.ndarray] = {}
        numeric = []
        for column, dtype in df.dtypes.items():
            if self._is_categorical(dtype):
                codes = df[column].astype("category").cat.codes.to_numpy()
                result[column] = codes if self.int_dtype is None else codes.astype(self.int_dtype)
            else:
                numeric.append(df[column].to_numpy())
        if numeric:
            X = np.stack(numeric, axis=1)
            result["X"] = X if self.float_dtype is None else X.astype(self.float_dtype)
        return result

    def describe_signature(self, df: Any) -> dict[str, dict[str, Any]]:
        """The arguments ``forward`` needs for ``df``: for each, the tensor dtype and input units.

        Input units are the number of columns for ``"X"`` and the number of distinct codes for a
        categorical column (the size of its embedding).
        """
        signature = {}
        for key, value in self.fit_transform(df).items():
            tensor = to_tensor(value, device="cpu")
            units = value.shape[1] if key == "X" else len(torch.unique(tensor))
            signature[key] = {"dtype": tensor.dtype, "input_units": units}
        return signature
