"""Regression: :class:`NeuralNetRegressor`.

>>> import numpy as np, torch
>>> X = np.random.rand(50, 4).astype(np.float32); y = X.sum(1, keepdims=True)
>>> net = NeuralNetRegressor(torch.nn.Linear(4, 1), max_epochs=3, verbose=0, lr=0.1)
>>> net.fit(X, y).predict(X).shape
(50, 1)
"""
from __future__ import annotations

from typing import Any

from sklearn.base import RegressorMixin
from torch import nn

from .net import NeuralNet
from .utils import is_torch_dataset, to_numpy


class NeuralNetRegressor(RegressorMixin, NeuralNet):
    """A :class:`NeuralNet` for regression with ``MSELoss`` by default; ``score`` is R².

    Targets must be 2-D, one column per regression target (``y.reshape(-1, 1)`` for one).
    """

    def __init__(self, module: Any, *, criterion: Any = nn.MSELoss, **kwargs: Any):
        super().__init__(module, criterion=criterion, **kwargs)

    def check_data(self, X: Any, y: Any = None) -> None:
        super().check_data(X, y)
        if y is None:
            if not is_torch_dataset(X):
                raise ValueError(f"{type(self).__name__} needs targets: call fit(X, y)")
            return
        if to_numpy(y).ndim == 1:
            raise ValueError(
                f"{type(self).__name__}: y is 1-dimensional (shape {to_numpy(y).shape}); it needs "
                "one column per regression target: reshape it, e.g. y = y.reshape(-1, 1)"
            )
