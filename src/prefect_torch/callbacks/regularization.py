"""Gradient clipping: :class:`GradientNormClipping` rescales the gradients before each step.

>>> from prefect_torch import NeuralNetClassifier
>>> from prefect_torch.callbacks import GradientNormClipping
>>> from prefect_torch.examples import MyModule, make_data
>>> X, y = make_data(100)
>>> net = NeuralNetClassifier(MyModule, max_epochs=1, verbose=0,
...                           callbacks=[GradientNormClipping(gradient_clip_value=1.0)]).fit(X, y)
"""
from __future__ import annotations

from typing import Any

from torch.nn.utils import clip_grad_norm_

from .base import Callback


class GradientNormClipping(Callback):
    """Clips the norm of all learnable parameters' gradients together, in place, after each
    backward pass (``torch.nn.utils.clip_grad_norm_``).

    Parameters
    ----------
    gradient_clip_value : float or None
        The largest norm the gradients may have (taken over all of them as one vector);
        ``None`` leaves them alone.
    gradient_clip_norm_type : float or 'inf'
        The p of the p-norm (default 2).
    """

    def __init__(self, gradient_clip_value: float | None = None, gradient_clip_norm_type: float | str = 2):
        self.gradient_clip_value = gradient_clip_value
        self.gradient_clip_norm_type = gradient_clip_norm_type

    def on_grad_computed(self, net: Any, named_parameters: Any, **kwargs: Any) -> None:
        if self.gradient_clip_value is None:
            return
        clip_grad_norm_(
            (param for _, param in named_parameters),
            max_norm=self.gradient_clip_value,
            norm_type=float(self.gradient_clip_norm_type),  # 'inf' too
        )
