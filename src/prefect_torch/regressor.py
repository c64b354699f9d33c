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
from .utils import yields_targets


class NeuralNetRegressor(RegressorMixin, NeuralNet):
    """A :class:`NeuralNet` for regression with ``MSELoss`` by default; ``score`` is R².

    Targets are 2-D, one column per regression target (``y.reshape(-1, 1)`` for one), or 1-D
    when the module's output is 1-D too (as scikit-learn's ``BaggingRegressor`` passes them);
    a module output whose shape differs from y's is an error, never a silent broadcast.
    """

    def __init__(self, module: Any, *, criterion: Any = nn.MSELoss, **kwargs: Any):
        super().__init__(module, criterion=criterion, **kwargs)

    def check_data(self, X: Any, y: Any = None) -> None:
        super().check_data(X, y)
        if y is None and not yields_targets(self, X):
            raise ValueError(f"{type(self).__name__} needs targets: call fit(X, y), or pass a Dataset "
                             "(or an iterator_train) that yields (X, y) batches")
