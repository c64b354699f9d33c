"""Exceptions raised by prefect_torch."""
from __future__ import annotations

from sklearn.exceptions import NotFittedError


class NotInitializedError(NotFittedError):
    """The net was used before ``initialize()`` or ``fit()``."""


class StopTraining(KeyboardInterrupt):
    """Raised by a callback (e.g. EarlyStopping) to end ``fit`` after the current epoch."""
