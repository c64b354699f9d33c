"""Scoring callbacks: they record a metric (and whether it is the best so far) in the history.

>>> from prefect_torch.callbacks import EpochScoring
>>> auc = EpochScoring("roc_auc", lower_is_better=False)   # adds columns valid: roc_auc

Validation scores reuse the predictions made for the validation loss (``use_caching=True``),
so scoring costs no second forward pass.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
from sklearn.metrics import accuracy_score, get_scorer, make_scorer

from ..data import inputs_of, targets_of
from ..utils import to_numpy
from .base import Callback


def _scorer_name(scoring: Any) -> str:
    if isinstance(scoring, str):
        return scoring
    func = getattr(scoring, "_score_func", scoring)
    func = getattr(func, "func", func)  # functools.partial
    name = getattr(func, "__name__", None)
    return "score" if name in (None, "<lambda>") else name


class _Accuracy:
    """sklearn's ``"accuracy"`` scorer without its per-call input validation for plain labels.

    For 1-D integer labels the result is the same number (the mean of ``predict(X) == y``);
    anything else goes to sklearn's scorer.
    """

    def __call__(self, net: Any, X: Any, y: Any) -> float:
        y_pred = net.predict(X)
        y_true = np.asarray(y)
        plain = (
            y_true.ndim == 1 and y_true.shape == np.shape(y_pred)
            and y_true.dtype.kind in "iu" and np.asarray(y_pred).dtype.kind in "iu"
        )
        return float(np.mean(y_pred == y_true)) if plain else accuracy_score(y_true, y_pred)


def _net_score(net: Any, X: Any, y: Any) -> float:
    return net.score(X, y)


def _as_scorer(scoring: Any) -> Callable[[Any, Any, Any], float]:
    """A ``scorer(net, X, y)``: sklearn's named scorers, callables, or ``net.score`` for None."""
    if scoring is None:
        return _net_score
    if isinstance(scoring, str) and scoring == "accuracy":
        return _Accuracy()
    if isinstance(scoring, str):
        try:
            return get_scorer(scoring)
        except ValueError as exc:
            raise ValueError(
                f"scoring={scoring!r} is not a scikit-learn scorer name; pass one of "
                "sklearn.metrics.get_scorer_names() or a callable scorer(net, X, y)"
            ) from exc
    if isinstance(scoring, dict):
        raise ValueError(
            f"scoring={scoring!r}: a dict of several scorers is not supported; add one EpochScoring "
            "per metric, e.g. callbacks=[EpochScoring('f1', name='f1'), EpochScoring('recall', name='recall')]"
        )
    if callable(scoring):
        is_metric = getattr(scoring, "__module__", "").startswith("sklearn.metrics")
        if is_metric and not hasattr(scoring, "_score_func"):
            return make_scorer(scoring)  # a plain metric such as f1_score(y_true, y_pred)
        return scoring
    raise TypeError(f"scoring must be None, a string or a callable, got {scoring!r}")


class _ScoreRecorder(Callback):
    """Shared part: a ``name``, a direction, and recording ``name``/``name_best``."""

    name: str | None
    lower_is_better: bool | None
    on_train: bool

    def initialize(self) -> "_ScoreRecorder":
        self.best_score_ = math.inf if self.lower_is_better else -math.inf
        self.name_ = self.name if self.name is not None else _scorer_name(getattr(self, "scoring", None))
        return self

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        """Continue from the best score in the history (e.g. one loaded from a checkpoint)."""
        flags = [row.get(f"{self.name_}_best") for row in net.history]
        if any(flags):
            last_best = len(flags) - 1 - flags[::-1].index(True)
            self.best_score_ = net.history[last_best][self.name_]

    def state_dict(self) -> dict[str, Any]:
        return {"best_score_": self.best_score_}

    def _is_best(self, score: float) -> bool:
        return score < self.best_score_ if self.lower_is_better else score > self.best_score_

    def _record(self, net: Any, score: float) -> None:
        """Record ``name``, and ``name_best`` unless ``lower_is_better`` is None (no direction)."""
        net.history.record(self.name_, score)
        if self.lower_is_better is None:
            return
        is_best = bool(self._is_best(score))
        if is_best:
            self.best_score_ = score
        net.history.record(f"{self.name_}_best", is_best)

    def _phase(self, training: bool | None) -> bool:
        return bool(training) == bool(self.on_train)

    def _record_batch_average(self, net: Any) -> None:
        """Record the batch values of ``name`` averaged with batch sizes as weights, if any."""
        size_key = "train_batch_size" if self.on_train else "valid_batch_size"
        values, sizes = [], []
        for batch in net.history[-1]["batches"]:
            if self.name_ in batch and size_key in batch:
                values.append(batch[self.name_])
                sizes.append(batch[size_key])
        if sizes:
            self._record(net, float(np.average(values, weights=sizes)))


class PassthroughScoring(_ScoreRecorder):
    """Averages a batch-level value (e.g. ``train_loss``) into an epoch value and its ``_best`` flag."""

    def __init__(self, name: str, lower_is_better: bool = True, on_train: bool = False):
        self.name = name
        self.lower_is_better = lower_is_better
        self.on_train = on_train

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        self._record_batch_average(net)


class _Scoring(_ScoreRecorder):
    """Shared constructor of the scorer-driven callbacks."""

    def __init__(self, scoring: Any, lower_is_better: bool = True, on_train: bool = False,
                 name: str | None = None, target_extractor: Callable = to_numpy,
                 use_caching: bool = True):
        self.scoring = scoring
        self.lower_is_better = lower_is_better
        self.on_train = on_train
        self.name = name
        self.target_extractor = target_extractor
        self.use_caching = use_caching

    def initialize(self) -> "_Scoring":
        super().initialize()
        self.scorer_ = _as_scorer(self.scoring)
        return self

    def _caching(self, net: Any) -> bool:
        """Reuse the step's predictions? The net's ``use_caching`` wins unless it is ``'auto'``."""
        return self.use_caching if net.use_caching == "auto" else bool(net.use_caching)


class BatchScoring(_Scoring):
    """Scores every batch (``scoring`` as in :class:`EpochScoring`) and records the epoch average."""

    def on_batch_end(self, net: Any, batch: Any = None, training: bool | None = None,
                     y_pred: Any = None, **kwargs: Any) -> None:
        if not self._phase(training):
            return
        X, y = batch
        y = None if y is None else self.target_extractor(y)
        if self._caching(net) and y_pred is not None:
            with net.cached_predictions([y_pred]):
                score = self.scorer_(net, X, y)
        else:
            score = self.scorer_(net, X, y)
        net.history.record_batch(self.name_, float(score))

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        self._record_batch_average(net)


class EpochScoring(_Scoring):
    """Scores the whole validation (or, with ``on_train=True``, training) data once per epoch.

    ``scoring`` is a scikit-learn scorer name (``"accuracy"``, ``"roc_auc"``...), a callable
    ``scorer(net, X, y)``, or ``None`` for ``net.score``. With ``use_caching`` the scorer gets the
    validation dataset and the predictions already made; without, the data as passed to ``fit``
    (``X`` of an in-memory dataset). ``y`` is None when the data have no targets. The value is recorded as ``name``
    (default: the scorer's name) together with ``name + "_best"``.

    >>> EpochScoring("f1", lower_is_better=False, name="valid_f1").name
    'valid_f1'
    """

    def initialize(self) -> "EpochScoring":
        super().initialize()
        self._reset_cache()
        return self

    def _reset_cache(self) -> None:
        self.y_preds_: list = []
        self.y_trues_: list = []

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        self._reset_cache()

    def on_batch_end(self, net: Any, batch: Any = None, training: bool | None = None,
                     y_pred: Any = None, **kwargs: Any) -> None:
        if not self._caching(net) or not self._phase(training):
            return
        self.y_preds_.append(y_pred.detach() if isinstance(y_pred, torch.Tensor) else y_pred)
        y = batch[1] if isinstance(batch, (tuple, list)) and len(batch) > 1 else None
        if y is not None:
            self.y_trues_.append(y)

    def get_test_data(self, dataset_train: Any, dataset_valid: Any,
                      use_caching: bool | None = None) -> tuple[Any, Any, list]:
        """``(X, y, y_preds)`` this epoch is scored on: with caching the dataset, its targets and
        the batch predictions already made; without, the data as passed to ``fit`` (``X`` of an
        in-memory dataset), its targets and ``[]``. ``y`` is None when there are no targets."""
        caching = self.use_caching if use_caching is None else use_caching
        dataset = dataset_train if self.on_train else dataset_valid
        if caching:
            y = (np.concatenate([np.atleast_1d(self.target_extractor(y)) for y in self.y_trues_])
                 if self.y_trues_ else None)
            return dataset, y, self.y_preds_
        y = targets_of(dataset)
        return inputs_of(dataset), None if y is None else self.target_extractor(y), []

    def on_epoch_end(self, net: Any, dataset_train: Any = None, dataset_valid: Any = None,
                     **kwargs: Any) -> None:
        if (dataset_train if self.on_train else dataset_valid) is None:
            return
        caching = self._caching(net)
        X, y_true, y_preds = self.get_test_data(dataset_train, dataset_valid, use_caching=caching)
        if caching:
            if not y_preds:
                return
            with net.cached_predictions(y_preds):
                score = self.scorer_(net, X, y_true)
        else:
            score = self.scorer_(net, X, y_true)
        self._record(net, float(score))

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        self._reset_cache()


def with_valid_accuracy(defaults: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """A classifier's default callbacks: ``defaults`` with a ``valid_acc`` :class:`EpochScoring`
    inserted before the last one (``PrintLog``, which prints it).

    >>> [name for name, _ in with_valid_accuracy([("epoch_timer", None), ("print_log", None)])]
    ['epoch_timer', 'valid_acc', 'print_log']
    """
    scoring = ("valid_acc", EpochScoring("accuracy", name="valid_acc", lower_is_better=False))
    return defaults[:-1] + [scoring] + defaults[-1:]
