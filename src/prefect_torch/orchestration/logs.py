"""PrintLog's table in the Prefect run's logs (the UI's Logs tab), without doubling the console,
and without Prefect's ``Task run 'epoch-N' - Finished in state Completed()`` after each row."""
from __future__ import annotations

import logging
from contextlib import ExitStack, contextmanager
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
    logger sends to Prefect's API (and not to the console, which already shows the table).
    When the table prints to the console, the epoch tasks' own info lines stay off it too
    (:func:`epoch_task_lines_off_console`)."""
    logs = [cb for _, cb in getattr(net, "callbacks_", []) if isinstance(cb, PrintLog)]
    originals = [cb.sink for cb in logs]
    handler, settings = APILogHandler(), (_logger.propagate, _logger.level)
    _logger.addHandler(handler)
    _logger.propagate = False
    _logger.setLevel(logging.INFO)
    for cb in logs:
        cb.sink = _ToRunLogs(cb.sink, net.verbose)
    try:
        with ExitStack() as quiet:
            if any(sink is print and net.verbose for sink in originals):  # the table is on the console
                quiet.enter_context(epoch_task_lines_off_console())
            yield
    finally:
        for cb, sink in zip(logs, originals):
            cb.sink = sink
        _logger.removeHandler(handler)
        _logger.propagate, level = settings
        _logger.setLevel(level)


class _NotThisRunsEpochTasksEnd(logging.Filter):
    """Drops the ``Finished in state Completed()`` lines (below WARNING) of one flow run's epoch
    task runs; everything else passes (retries, failures, what the user's callbacks log)."""

    def __init__(self, flow_run_id: str, task_name: str):
        super().__init__()
        self.flow_run_id, self.task_name = flow_run_id, task_name

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno < logging.WARNING and getattr(record, "task_name", None) == self.task_name
                    and getattr(record, "flow_run_id", None) == self.flow_run_id
                    and str(record.msg).startswith("Finished in state "))


@contextmanager
def epoch_task_lines_off_console() -> Iterator[None]:
    """Within the block, the console does not show how the running flow run's epoch task runs
    ended (``Task run 'epoch-7' - Finished in state Completed()``, one after each row of the
    table): a filter on the console handlers that ``prefect.task_runs`` records reach (stream
    handlers other than files). The run's logs keep those lines (Prefect's API handler is left
    alone); the console keeps every other line: other tasks', the epoch tasks' retries and
    failures, and what callbacks log. Removed again when the block ends."""
    from prefect.context import FlowRunContext

    from .driver import train_epochs  # (the driver enters this module's blocks: import when used)

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        yield
        return
    quiet = _NotThisRunsEpochTasksEnd(str(context.flow_run.id), train_epochs.name)
    handlers = [handler for handler in _handlers_reached(logging.getLogger("prefect.task_runs"))
                if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
                and not isinstance(handler, APILogHandler)]
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


def _handlers_reached(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers a record of ``logger`` reaches: its own and its ancestors' while they propagate."""
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        found += [handler for handler in current.handlers if handler not in found]
        current = current.parent if current.propagate else None
    return found
