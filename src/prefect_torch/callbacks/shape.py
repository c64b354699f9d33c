"""Fit the module to the data's width: :class:`InputShapeSetter`.

>>> import numpy as np, torch
>>> from prefect_torch import NeuralNetRegressor
>>> from prefect_torch.callbacks import InputShapeSetter
>>> class Linear(torch.nn.Module):
...     def __init__(self, input_dim=1):
...         super().__init__()
...         self.layer = torch.nn.Linear(input_dim, 1)
...     def forward(self, X):
...         return self.layer(X)
>>> X, y = np.zeros((20, 7), dtype=np.float32), np.zeros((20, 1), dtype=np.float32)
>>> net = NeuralNetRegressor(Linear, max_epochs=1, verbose=0, callbacks=[InputShapeSetter()])
>>> net.fit(X, y).module_.layer.in_features
7
"""
from __future__ import annotations

from typing import Any, Callable

from .base import Callback


class InputShapeSetter(Callback):
    """Sets a module argument to the number of input features of the data each ``fit`` gets
    (``X.shape[-1]``), re-initializing the module (and the optimizer) only when it changes.

    Handy where the width is not known beforehand, e.g. after feature selection in a
    ``Pipeline`` or a grid search over transformers.

    Parameters
    ----------
    param_name : str
        The module's ``__init__`` argument for the input width (default ``'input_dim'``):
        the net's ``module__input_dim`` is set.
    input_dim_fn : callable or None
        ``input_dim_fn(X) -> int`` for data whose width is not ``X.shape[-1]`` (dicts,
        datasets, 1-d inputs).
    module_name : str
        Which of the net's modules (default ``'module'``; ``'module2'`` sets ``module2__...``).
    """

    def __init__(self, param_name: str = "input_dim", input_dim_fn: Callable[[Any], int] | None = None,
                 module_name: str = "module"):
        self.param_name = param_name
        self.input_dim_fn = input_dim_fn
        self.module_name = module_name

    def get_input_dim(self, X: Any) -> int:
        """The width of ``X``: ``input_dim_fn(X)``, else its last dimension."""
        if self.input_dim_fn is not None:
            return self.input_dim_fn(X)
        shape = getattr(X, "shape", None)
        if shape is None or len(shape) < 2:
            found = "no shape" if shape is None else f"shape {tuple(shape)}"
            raise ValueError(
                f"InputShapeSetter reads the input width from X.shape[-1], but X ({type(X).__name__}) "
                f"has {found}; pass X with at least two dimensions (samples x features), or "
                "InputShapeSetter(input_dim_fn=...) to compute the width from X"
            )
        return int(shape[-1])

    def on_train_begin(self, net: Any, X: Any = None, y: Any = None, **kwargs: Any) -> None:
        input_dim = self.get_input_dim(X)
        name = f"{self.module_name}__{self.param_name}"
        if net.get_params().get(name) == input_dim:
            return
        net.set_params(**{name: input_dim})
