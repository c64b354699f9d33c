"""Exceptions and warnings raised by prefect_torch, under skorch's names.

Every error is a :class:`SkorchException` (so ``except SkorchException`` written for skorch
keeps working) and also the built-in kind it is, where there is one (a
:class:`SkorchTrainingImpossibleError` is a ``RuntimeError``, a :class:`SkorchAttributeError` an
``AttributeError``); warnings are :class:`SkorchWarning`, a ``UserWarning``.

>>> import numpy as np, torch
>>> from prefect_torch import NeuralNet
>>> try:
...     NeuralNet(torch.nn.Linear(2, 1), criterion=torch.nn.MSELoss).predict(np.zeros((1, 2)))
... except SkorchException as error:
...     type(error).__name__
'NotInitializedError'
"""
from __future__ import annotations

from sklearn.exceptions import NotFittedError


class SkorchException(Exception):
    """Base class of prefect_torch's errors (skorch's name for it)."""


class NotInitializedError(SkorchException, NotFittedError):
    """The net was used before ``initialize()`` or ``fit()``."""


class SkorchAttributeError(SkorchException, AttributeError):
    """An attribute of a net was set in a way the net cannot track (e.g. a module named without ``_``)."""


class SkorchTrainingImpossibleError(SkorchException, RuntimeError):
    """The net cannot be trained (e.g. after ``trim_for_prediction()``)."""


class SkorchWarning(UserWarning):
    """Base class of prefect_torch's warnings."""


class DeviceWarning(SkorchWarning):
    """A device problem, e.g. a net pickled on CUDA loaded where there is none."""


class StopTraining(KeyboardInterrupt):
    """Raised by a callback (e.g. EarlyStopping) to end ``fit`` after the current epoch."""
