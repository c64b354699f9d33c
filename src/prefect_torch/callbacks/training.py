"""Callbacks that steer training: :class:`EarlyStopping`.

>>> from prefect_torch.callbacks import EarlyStopping
>>> stopper = EarlyStopping(monitor="valid_loss", patience=3, load_best=True)
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable

from ..exceptions import StopTraining
from .base import Callback, emit


class EarlyStopping(Callback):
    """Stops training when ``monitor`` has not improved for ``patience`` epochs.

    Improvement means beating the best value by ``threshold`` (relative, or absolute with
    ``threshold_mode='abs'``). With ``load_best=True`` the module's weights from the best
    epoch are restored when training ends.
    """

    def __init__(self, monitor: str = "valid_loss", patience: int = 5, threshold: float = 1e-4,
                 threshold_mode: str = "rel", lower_is_better: bool = True,
                 sink: Callable = print, load_best: bool = False):
        self.monitor = monitor
        self.patience = patience
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.lower_is_better = lower_is_better
        self.sink = sink
        self.load_best = load_best

    def initialize(self) -> "EarlyStopping":
        if self.threshold_mode not in ("rel", "abs"):
            raise ValueError(f"EarlyStopping(threshold_mode={self.threshold_mode!r}): use 'rel' or 'abs'")
        self._reset()
        return self

    def _reset(self) -> None:
        self.misses_ = 0
        self.dynamic_threshold_ = math.inf if self.lower_is_better else -math.inf
        self.best_epoch_ = 0
        self.best_model_weights_ = None

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        self._reset()

    def state_dict(self) -> dict[str, Any]:
        return {"misses_": self.misses_, "dynamic_threshold_": self.dynamic_threshold_,
                "best_epoch_": self.best_epoch_, "best_model_weights_": self.best_model_weights_}

    def _improves(self, score: float) -> bool:
        return score < self.dynamic_threshold_ if self.lower_is_better else score > self.dynamic_threshold_

    def _threshold_for(self, score: float) -> float:
        sign = -1 if self.lower_is_better else 1
        if self.threshold_mode == "rel":
            return score * (1 + sign * self.threshold)
        return score + sign * self.threshold

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        try:
            score = net.history[-1, self.monitor]
        except KeyError:
            raise ValueError(
                f"EarlyStopping(monitor={self.monitor!r}): that key is not in the history; "
                f"available keys: {sorted(k for k in net.history[-1] if k != 'batches')}"
            ) from None
        if self._improves(score):
            self.misses_ = 0
            self.dynamic_threshold_ = self._threshold_for(score)
            self.best_epoch_ = net.history[-1, "epoch"]
            if self.load_best:
                self.best_model_weights_ = copy.deepcopy(net.module_.state_dict())
            return
        self.misses_ += 1
        if self.misses_ >= self.patience:
            emit(self.sink, f"Stopping since {self.monitor} has not improved in the last "
                            f"{self.patience} epochs.", net.verbose)
            raise StopTraining

    def on_train_end(self, net: Any, **kwargs: Any) -> None:
        if self.load_best and self.best_model_weights_ is not None and self.misses_ > 0:
            emit(self.sink, f"Restoring best model from epoch {self.best_epoch_}.", net.verbose)
            net.module_.load_state_dict(self.best_model_weights_)
