"""Binary classification: :class:`NeuralNetBinaryClassifier`, one logit per sample.

>>> import numpy as np
>>> from sklearn.datasets import make_classification
>>> from prefect_torch.toy import make_binary_classifier
>>> X, y = make_classification(200, 10, random_state=0)
>>> net = NeuralNetBinaryClassifier(make_binary_classifier(input_units=10, output_units=1),
...                                 max_epochs=2, verbose=0)
>>> net.fit(X.astype(np.float32), y.astype(np.float32)).predict_proba(X[:3].astype(np.float32)).shape
(3, 2)
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from torch import nn

from .callbacks.scoring import with_valid_accuracy
from .data import ValidSplit
from .net import NeuralNet
from .utils import is_torch_dataset, to_numpy


def _two_columns(p: torch.Tensor) -> torch.Tensor:
    """``[1 - p, p]`` per sample: scikit-learn's shape for binary probabilities."""
    return torch.stack((1 - p, p), 1)


def _sigmoid_two_columns(logits: torch.Tensor) -> torch.Tensor:
    return _two_columns(torch.sigmoid(logits))


class NeuralNetBinaryClassifier(ClassifierMixin, NeuralNet):
    """A :class:`NeuralNet` for two classes whose module outputs one logit per sample.

    The module's output must have shape ``(n,)`` or ``(n, 1)`` (it is flattened to ``(n,)``);
    the default criterion is ``BCEWithLogitsLoss``. Targets are 0 or 1, one per sample (1-D); an
    integer ``y`` is converted to the output's float dtype for the loss. ``predict_proba`` returns
    two columns, ``[P(0), P(1)]`` (the sigmoid of the logit, or, with ``criterion=BCELoss``, the
    module's output as it is); ``predict`` returns 1 where ``P(1) > threshold``, as ``uint8``.
    Validation accuracy is logged as ``valid_acc``.

    Parameters
    ----------
    module, **kwargs
        As for :class:`NeuralNet`.
    criterion : default ``torch.nn.BCEWithLogitsLoss``
    train_split : default ``ValidSplit(5, stratified=True)``
    threshold : float, default 0.5
        Probability of class 1 above which ``predict`` says 1.
    """

    def __init__(self, module: Any, *, criterion: Any = nn.BCEWithLogitsLoss,
                 train_split: Any = ValidSplit(5, stratified=True), threshold: float = 0.5,
                 **kwargs: Any):
        super().__init__(module, criterion=criterion, train_split=train_split, **kwargs)
        self.threshold = threshold

    def get_default_callbacks(self) -> list[tuple[str, Any]]:
        return with_valid_accuracy(super().get_default_callbacks())

    @property
    def classes_(self) -> np.ndarray:
        return np.array([0, 1])

    def check_data(self, X: Any, y: Any = None) -> None:
        super().check_data(X, y)
        if is_torch_dataset(X):
            return
        if y is None:
            raise ValueError(
                f"{type(self).__name__} needs targets: call fit(X, y) with y holding 0 or 1 per sample")
        if to_numpy(y).ndim != 1:
            raise ValueError("The target data should be 1-dimensional.")

    def infer(self, x: Any, **fit_params: Any) -> Any:
        """The module's output flattened to one logit per sample (extra outputs pass through)."""
        output = super().infer(x, **fit_params)
        first, rest = (output[0], output[1:]) if isinstance(output, tuple) else (output, None)
        if first.dim() > 2 or (first.dim() == 2 and first.shape[1] != 1):
            raise ValueError(
                f"Expected module output to have shape (n,) or (n, 1), got {tuple(first.shape)} instead")
        first = first.reshape(-1)
        return first if rest is None else (first, *rest)

    def get_loss(self, y_pred: Any, y_true: Any, X: Any = None, training: bool = False) -> torch.Tensor:
        is_bce = isinstance(self.criterion_, (nn.BCEWithLogitsLoss, nn.BCELoss))
        if is_bce and isinstance(y_true, torch.Tensor) and not torch.is_floating_point(y_true):
            y_true = y_true.to(y_pred.dtype)  # BCE needs float targets; 0/1 labels are often ints
        return super().get_loss(y_pred, y_true, X=X, training=training)

    def _predict_nonlinearity(self) -> Callable[[Any], Any]:
        if self.predict_nonlinearity == "auto":
            if isinstance(self.criterion_, nn.BCEWithLogitsLoss):
                return _sigmoid_two_columns
            if isinstance(self.criterion_, nn.BCELoss):
                return _two_columns
        return super()._predict_nonlinearity()

    def predict(self, X: Any) -> np.ndarray:
        """1 where the probability of class 1 exceeds ``threshold``, else 0 (``uint8``)."""
        return (self.predict_proba(X)[:, 1] > self.threshold).astype("uint8")
