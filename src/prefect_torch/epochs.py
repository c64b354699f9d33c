"""Who runs a net's epochs: one after another by default; an orchestrator may drive them itself.

>>> calls = []
>>> def as_pairs(net, epochs, one_epoch):      # an orchestrator: here, two epochs per step
...     for step in range(0, epochs, 2):
...         calls.append(step)
...         for _ in range(min(2, epochs - step)):
...             one_epoch()
>>> done = []
>>> with driving_epochs(as_pairs):
...     run_epochs(None, 5, lambda: done.append(1))
>>> len(done), calls
(5, [0, 2, 4])

The net's ``fit_loop`` hands each epoch to :func:`run_epochs` as a function of no arguments;
``prefect_torch.orchestration`` installs a driver that runs them as Prefect task runs. The
driver is a context variable, so the core never imports an orchestrator and two threads
training two nets never see each other's driver.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator

EpochDriver = Callable[[Any, int, Callable[[], None]], None]
"""``driver(net, epochs, one_epoch)``: call ``one_epoch()`` ``epochs`` times, in order."""

_driver: ContextVar[EpochDriver | None] = ContextVar("prefect_torch_epoch_driver", default=None)


def run_epochs(net: Any, epochs: int, one_epoch: Callable[[], None]) -> None:
    """Run ``epochs`` epochs of ``net``, through the active driver if there is one."""
    driver = _driver.get()
    if driver is None:
        for _ in range(epochs):
            one_epoch()
    else:
        driver(net, epochs, one_epoch)


@contextmanager
def driving_epochs(driver: EpochDriver) -> Iterator[None]:
    """Within this block, :func:`run_epochs` hands the epochs to ``driver``."""
    token = _driver.set(driver)
    try:
        yield
    finally:
        _driver.reset(token)
