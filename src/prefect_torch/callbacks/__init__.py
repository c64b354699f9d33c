"""Callbacks: hooks into every step of training.

>>> from prefect_torch import NeuralNetClassifier
>>> from prefect_torch.callbacks import EarlyStopping, EpochScoring
>>> callbacks = [EpochScoring("f1", lower_is_better=False), EarlyStopping(patience=3)]
"""
from .base import Callback
from .checkpoint import Checkpoint, LoadInitState, TrainEndCheckpoint
from .logging import EpochTimer, PrintLog
from .lr_scheduler import LRScheduler, WarmRestartLR
from .scoring import BatchScoring, EpochScoring, PassthroughScoring
from .training import EarlyStopping

__all__ = [
    "Callback",
    "EpochTimer",
    "PrintLog",
    "PassthroughScoring",
    "EpochScoring",
    "BatchScoring",
    "EarlyStopping",
    "Checkpoint",
    "TrainEndCheckpoint",
    "LoadInitState",
    "LRScheduler",
    "WarmRestartLR",
]
