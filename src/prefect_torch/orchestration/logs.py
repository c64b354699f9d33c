"""PrintLog's table in the Prefect run's logs (the UI's Logs tab), without doubling the console."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from prefect.logging.handlers import APILogHandler

from ..callbacks import PrintLog
from ..callbacks.base import wants_output

_logger = logging.getLogger("prefect_torch.epochs")


class _ToRunLogs:
    """A PrintLog sink: each line goes where it went before, and to the run's logs."""

    def __init__(self, sink: Callable[[str], Any], verbose: Any):
        self.sink, self.verbose = sink, verbose

    def __call__(self, line: str) -> None:
        if wants_output(self.sink, self.verbose):
            self.sink(line)
        _logger.info(line)


@contextmanager
def print_log_to_run_logs(net: Any) -> Iterator[None]:
    """While training ``net`` in a flow, its :class:`PrintLog` lines also go to the run's logs:
    for the duration of the block only, the sinks are wrapped and the ``prefect_torch.epochs``
    logger sends to Prefect's API (and not to the console, which already shows the table)."""
    logs = [cb for _, cb in getattr(net, "callbacks_", []) if isinstance(cb, PrintLog)]
    originals = [cb.sink for cb in logs]
    handler, settings = APILogHandler(), (_logger.propagate, _logger.level)
    _logger.addHandler(handler)
    _logger.propagate = False
    _logger.setLevel(logging.INFO)
    for cb in logs:
        cb.sink = _ToRunLogs(cb.sink, net.verbose)
    try:
        yield
    finally:
        for cb, sink in zip(logs, originals):
            cb.sink = sink
        _logger.removeHandler(handler)
        _logger.propagate, level = settings
        _logger.setLevel(level)
