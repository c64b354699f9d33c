"""The example of the README and of the "Saving and Loading" guide: data and a small classifier.

>>> X, y = make_data()
>>> X.shape, X.dtype, y.dtype
((1000, 10), dtype('float32'), dtype('int64'))
>>> MyModule(num_units=20)[0]
Linear(in_features=10, out_features=20, bias=True)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from torch import nn

if TYPE_CHECKING:
    from .classifier import NeuralNetClassifier


def make_data(n_samples: int = 1000, n_features: int = 10, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A binary classification problem: ``X`` float32 of shape (n_samples, n_features), ``y`` int64."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples, n_features, n_informative=5, random_state=random_state)
    return X.astype(np.float32), y.astype(np.int64)


class MyModule(nn.Sequential):
    """Two hidden layers with dropout, ending in softmax probabilities over 2 classes."""

    def __init__(self, num_units: int = 10, n_features: int = 10):
        super().__init__(
            nn.Linear(n_features, num_units),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(num_units, 10),
            nn.Linear(10, 2),
            nn.Softmax(dim=-1),
        )


def make_net(max_epochs: int = 10, lr: float = 0.1, num_units: int = 10, verbose: int = 1) -> "NeuralNetClassifier":
    """The README's classifier, unfitted: what ``train_flow(net_factory='prefect_torch.examples:make_net')`` builds."""
    from . import NeuralNetClassifier

    return NeuralNetClassifier(MyModule, module__num_units=num_units, max_epochs=max_epochs, lr=lr, verbose=verbose)
