"""Scoring functions for scikit-learn's ``scoring=`` and a net's ``score``.

:func:`loss_scoring` scores with the net's own criterion, the same loss as in training:

>>> import numpy as np, torch
>>> from prefect_torch import NeuralNetRegressor
>>> X = np.random.rand(20, 3).astype(np.float32); y = X.sum(1, keepdims=True)
>>> net = NeuralNetRegressor(torch.nn.Linear(3, 1), max_epochs=2, verbose=0).fit(X, y)
>>> bool(np.isclose(loss_scoring(net, X, y), torch.nn.MSELoss()(net.forward(X), torch.from_numpy(y)).item()))
True
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .net import unpack_batch
from .utils import to_numpy

__all__ = ["loss_scoring"]


def loss_scoring(net: Any, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
    """The net's criterion on ``(X, y)``, computed batch by batch as in validation.

    Use it as a ``score`` method (``def score(self, X, y=None): return loss_scoring(self, X, y)``)
    or as a scikit-learn scorer (its signature is ``(estimator, X, y)``); lower is better.

    Parameters
    ----------
    net : NeuralNet
        A fitted (or initialized) net.
    X, y
        Anything the net's ``fit`` accepts; ``y=None`` when ``X`` is a Dataset yielding targets.
    sample_weight : None
        Not supported: weighting would change the criterion; a value raises ``NotImplementedError``.

    Returns
    -------
    float or numpy.ndarray
        With the criterion's ``reduction`` ``"mean"``: the mean over all samples (batch means
        weighted by batch size); ``"sum"``: the sum; ``"none"``: one loss per sample.
    """
    if sample_weight is not None:
        raise NotImplementedError(
            "loss_scoring does not support sample_weight (the net's criterion defines the loss); "
            "pass sample_weight=None, or write a scorer that weights the per-sample losses of a "
            "criterion with reduction='none'")
    net.check_is_fitted()
    reduction = getattr(net.criterion_, "reduction", "mean")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(
            f"loss_scoring: expected one of 'mean', 'sum' or 'none' for reduction but got {reduction!r}")
    losses, sizes = [], []
    for batch in net.get_iterator(net.get_dataset(X, y), training=False):
        y_pred = net.evaluation_step(batch, training=False)
        y_true = unpack_batch(batch)[1]
        loss = net.get_loss(y_pred, y_true, X=unpack_batch(batch)[0], training=False)
        losses.append(to_numpy(loss) if reduction == "none" else loss.item())
        sizes.append(len(y_true))
    if reduction == "none":
        return np.concatenate(losses, 0)
    if reduction == "sum":
        return np.sum(losses)
    return np.average(losses, weights=sizes)
