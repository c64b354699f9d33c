"""Classification: :class:`NeuralNetClassifier`.

>>> import numpy as np, torch
>>> from sklearn.datasets import make_classification
>>> X, y = make_classification(200, 10, random_state=0)
>>> module = torch.nn.Sequential(torch.nn.Linear(10, 2), torch.nn.Softmax(dim=-1))
>>> net = NeuralNetClassifier(module, max_epochs=2, verbose=0)
>>> net.fit(X.astype(np.float32), y).predict(X[:3].astype(np.float32)).shape
(3,)
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import ClassifierMixin
from torch import nn

from .callbacks.scoring import with_valid_accuracy
from .data import ValidSplit, targets_of
from .net import NeuralNet
from .utils import is_torch_dataset, to_numpy, yields_targets


class NeuralNetClassifier(ClassifierMixin, NeuralNet):
    """A :class:`NeuralNet` for classification with ``NLLLoss`` by default.

    The module may end in ``Softmax`` (probabilities; the log is taken for ``NLLLoss``) or
    output logits with ``criterion=torch.nn.CrossEntropyLoss`` (``predict_proba`` then applies
    softmax). Targets are class indices ``0..n_classes-1``; ``classes_`` lists the classes seen
    in ``fit`` (or the ``classes`` argument). Validation accuracy is logged as ``valid_acc``.
    """

    def __init__(self, module: Any, *, criterion: Any = nn.NLLLoss,
                 train_split: Any = ValidSplit(5, stratified=True), classes: Any = None,
                 **kwargs: Any):
        super().__init__(module, criterion=criterion, train_split=train_split, **kwargs)
        self.classes = classes

    def get_default_callbacks(self) -> list[tuple[str, Any]]:
        return with_valid_accuracy(super().get_default_callbacks())

    @property
    def classes_(self) -> np.ndarray:
        if self.classes is not None:
            if not len(self.classes):
                raise AttributeError(f"{type(self).__name__}.classes is empty")
            return np.asarray(self.classes)
        try:
            return self.classes_inferred_
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__} has no classes_ yet; fit it, or pass classes=[...]"
            ) from None

    def check_data(self, X: Any, y: Any = None) -> None:
        super().check_data(X, y)
        if y is None and yields_targets(self, X):
            y = targets_of(X) if is_torch_dataset(X) else None  # a Dataset's targets still tell the classes
            if y is None:
                return
        if y is None:
            raise ValueError(
                f"{type(self).__name__} needs targets: call fit(X, y) with y the class index of each sample"
            )
        y_np = to_numpy(y)
        if y_np.dtype.kind in "OUS":
            raise TypeError(
                f"{type(self).__name__}: y holds labels such as {str(y_np.flat[0])!r}; encode them "
                "as class indices 0..n_classes-1, e.g. with sklearn.preprocessing.LabelEncoder"
            )
        class_index_losses = [c for c in self._parts_of("criterion") if isinstance(c, (nn.NLLLoss, nn.CrossEntropyLoss))]
        if y_np.ndim == 1 and y_np.dtype.kind == "f" and class_index_losses:
            raise TypeError(
                f"{type(self).__name__}: y has dtype {y_np.dtype} but "
                f"{type(class_index_losses[0]).__name__} needs class indices of an integer dtype; "
                "convert it, e.g. y = y.astype(np.int64)"
            )
        if y_np.ndim == 1:
            self.classes_inferred_ = np.unique(y_np)

    def get_loss(self, y_pred: Any, y_true: Any, X: Any = None, training: bool = False) -> torch.Tensor:
        if isinstance(getattr(self, "criterion_", None), nn.NLLLoss):
            y_pred = torch.log(y_pred + torch.finfo(y_pred.dtype).eps)
        return super().get_loss(y_pred, y_true, X=X, training=training)

    def predict(self, X: Any) -> np.ndarray:
        """The index of the most probable class for each sample."""
        return self.predict_proba(X).argmax(axis=1)


from .binary_classifier import NeuralNetBinaryClassifier  # noqa: E402, F401  (skorch.classifier holds both)
