"""Small ready-made modules for prototyping and tests: an MLP and factories for each kind of net.

The layers are ``Linear`` then, between layers, the hidden non-linearity and ``Dropout``, all in
one ``nn.Sequential`` named ``sequential`` (so ``module.sequential[0]`` is the first ``Linear``).

>>> import numpy as np, torch
>>> from prefect_torch import NeuralNetClassifier
>>> X = np.random.rand(40, 5).astype(np.float32); y = np.arange(40) % 2
>>> net = NeuralNetClassifier(make_classifier(input_units=5), max_epochs=1, verbose=0).fit(X, y)
>>> [type(layer).__name__ for layer in net.module_.sequential]
['Linear', 'ReLU', 'Dropout', 'Linear', 'Softmax']
"""
from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

__all__ = ["MLPModule", "make_classifier", "make_binary_classifier", "make_regressor"]


class MLPModule(nn.Module):
    """A multi-layer perceptron.

    Parameters
    ----------
    input_units, output_units, hidden_units : int, defaults 20, 2, 10
        Width of the input, the output and every hidden layer.
    num_hidden : int, default 1
        Number of hidden layers.
    nonlin : nn.Module, default ``nn.ReLU()``
        Applied after each hidden layer.
    output_nonlin : nn.Module or None, default None
        Applied after the last layer.
    dropout : float, default 0
        Dropout rate after each hidden non-linearity.
    squeeze_output : bool, default False
        Drop the last dimension of the output (one logit per sample, for
        ``NeuralNetBinaryClassifier``).

    Examples
    --------
    >>> MLPModule(input_units=3, output_units=1, squeeze_output=True)(torch.zeros(4, 3)).shape
    torch.Size([4])
    """

    def __init__(self, input_units: int = 20, output_units: int = 2, hidden_units: int = 10,
                 num_hidden: int = 1, nonlin: nn.Module = nn.ReLU(), output_nonlin: nn.Module | None = None,
                 dropout: float = 0, squeeze_output: bool = False):
        super().__init__()
        self.input_units = input_units
        self.output_units = output_units
        self.hidden_units = hidden_units
        self.num_hidden = num_hidden
        self.nonlin = nonlin
        self.output_nonlin = output_nonlin
        self.dropout = dropout
        self.squeeze_output = squeeze_output
        self.reset_params()

    def reset_params(self) -> None:
        """Build the layers anew (fresh weights)."""
        widths = [self.input_units] + [self.hidden_units] * self.num_hidden + [self.output_units]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
            if i:
                layers += [self.nonlin, nn.Dropout(self.dropout)]
            layers.append(nn.Linear(n_in, n_out))
        if self.output_nonlin:
            layers.append(self.output_nonlin)
        self.sequential = nn.Sequential(*layers)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        out = self.sequential(X)
        return out.squeeze(-1) if self.squeeze_output else out


def make_classifier(output_nonlin: nn.Module = nn.Softmax(dim=-1), **kwargs: Any) -> Any:
    """An :class:`MLPModule` factory for ``NeuralNetClassifier`` (softmax output)."""
    return partial(MLPModule, output_nonlin=output_nonlin, **kwargs)


def make_binary_classifier(squeeze_output: bool = True, **kwargs: Any) -> Any:
    """An :class:`MLPModule` factory for ``NeuralNetBinaryClassifier`` (pass ``output_units=1``: one logit)."""
    return partial(MLPModule, squeeze_output=squeeze_output, **kwargs)


def make_regressor(output_units: int = 1, **kwargs: Any) -> Any:
    """An :class:`MLPModule` factory for ``NeuralNetRegressor`` (one output by default)."""
    return partial(MLPModule, output_units=output_units, **kwargs)
