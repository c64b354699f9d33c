"""Ctrl+C and SIGTERM while a flow trains: stop after the current commit, end the run Cancelled.

While :func:`~prefect_torch.orchestration.fit_in_flow` trains (in the main thread), the first
SIGINT or SIGTERM is only noted: the epoch in progress finishes, its checkpoint commits, then
training stops and the flow run ends **Cancelled**, its message naming the signal and the
epoch (:class:`TrainingInterrupted`). A second signal acts at once, as it would have without
``fit_in_flow`` (``KeyboardInterrupt``; Prefect's own SIGTERM handling). Outside the call the
process's handlers are the ones it had.

>>> import os, signal
>>> with InterruptRequests() as interrupts:
...     os.kill(os.getpid(), signal.SIGINT)     # noted, not raised
...     interrupts.acted_on()                   # training stopped on it
...     interrupts.requested
'SIGINT'

A signal noted but not acted on (it came as training ended) is delivered again when the block
ends, to the handler the process had, so the user's Ctrl+C is never lost.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from prefect.exceptions import Abort

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Abort):
    """Training stopped on a signal after its last commit; the flow run is Cancelled.

    Parameters
    ----------
    message : str
        What happened and what to do (the Cancelled state's message).
    record : dict
        :func:`~prefect_torch.orchestration.fit_in_flow`'s record of what was trained, with
        ``interrupted``: ``{"signal": "SIGINT", "epoch": k}``.

    >>> error = TrainingInterrupted("stopped", {"interrupted": {"signal": "SIGINT", "epoch": 3}})
    >>> error.record["interrupted"]["epoch"]
    3
    """

    def __init__(self, message: str, record: dict[str, Any]):
        super().__init__(message)
        self.record = record


class StopRequested(Exception):
    """Raised by the driver between tasks once a signal asked training to stop (``fit_in_flow``
    turns it into :class:`TrainingInterrupted`); not a ``KeyboardInterrupt``, so the net's fit
    does not take it for the end of training."""

    def __init__(self, signal_name: str):
        super().__init__(f"training stopped on {signal_name}")
        self.signal = signal_name


class InterruptRequests:
    """Within this block (in the main thread), SIGINT and SIGTERM are requests to stop that
    :attr:`requested` reports; a second one gets the handler the process had before."""

    def __init__(self) -> None:
        self.requested: str | None = None  # the signal's name, once one arrived
        self._signum: int | None = None
        self._acted_on = False
        self._previous: dict[int, Any] = {}

    def acted_on(self) -> None:
        """Training stopped on the signal: nothing to deliver again when the block ends."""
        self._acted_on = True

    def __enter__(self) -> "InterruptRequests":
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if self._signum is not None and not self._acted_on and exc_info[0] is None:
            signal.raise_signal(self._signum)  # as if it came now: the process's own handling

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is None:
            self.requested, self._signum = signal.Signals(signum).name, signum
            return
        previous = self._previous.get(signum)
        if previous == signal.SIG_IGN:
            return
        if callable(previous):
            previous(signum, frame)
        elif signum == signal.SIGINT or previous is None:
            raise KeyboardInterrupt
        else:  # SIG_DFL for SIGTERM: end the process as it would have
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
