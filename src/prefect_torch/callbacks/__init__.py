"""Callbacks: hooks into every step of training.

>>> from prefect_torch import NeuralNetClassifier
>>> from prefect_torch.callbacks import EarlyStopping, EpochScoring
>>> callbacks = [EpochScoring("f1", lower_is_better=False), EarlyStopping(patience=3)]

The loggers for experiment trackers (:mod:`.trackers`) import their tracker's library only
when they need it, so importing this package needs none of them.
"""
from .base import Callback
from .checkpoint import Checkpoint, LoadInitState, TrainEndCheckpoint
from .logging import EpochTimer, PrintLog
from .lr_scheduler import LRScheduler, WarmRestartLR
from .param_mapper import Freezer, Initializer, ParamMapper, Unfreezer
from .progress import ProgressBar
from .regularization import GradientNormClipping
from .scoring import BatchScoring, EpochScoring, PassthroughScoring
from .shape import InputShapeSetter
from .trackers import MlflowLogger, NeptuneLogger, SacredLogger, TensorBoard, WandbLogger
from .training import EarlyStopping

__all__ = [
    "Callback",
    "EpochTimer",
    "PrintLog",
    "ProgressBar",
    "PassthroughScoring",
    "EpochScoring",
    "BatchScoring",
    "EarlyStopping",
    "Checkpoint",
    "TrainEndCheckpoint",
    "LoadInitState",
    "LRScheduler",
    "WarmRestartLR",
    "GradientNormClipping",
    "InputShapeSetter",
    "ParamMapper",
    "Freezer",
    "Unfreezer",
    "Initializer",
    "TensorBoard",
    "MlflowLogger",
    "WandbLogger",
    "NeptuneLogger",
    "SacredLogger",
]
