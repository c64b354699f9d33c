"""Logging callbacks: :class:`EpochTimer` (the ``dur`` column) and :class:`PrintLog` (the table).

>>> from prefect_torch.callbacks import PrintLog
>>> quiet_log = PrintLog(keys_ignored=["dur"])   # a table without the duration column
"""
from __future__ import annotations

import itertools
import numbers
import os
import sys
import time
from typing import Any, Callable, Iterable

from ..utils import Ansi
from .base import Callback, wants_output

_COLORS = tuple(c.value for c in (Ansi.CYAN, Ansi.GREEN, Ansi.MAGENTA, Ansi.RED, Ansi.BLUE))
_RESET = Ansi.ENDC.value


class EpochTimer(Callback):
    """Records each epoch's wall time, in seconds, as ``dur``."""

    def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
        self.epoch_start_ = time.perf_counter()

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        net.history.record("dur", time.perf_counter() - self.epoch_start_)


def _stdout_is_color_terminal() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


class PrintLog(Callback):
    """Prints one table row per epoch: ``epoch`` first, metrics sorted by name, events, ``dur`` last.

    A metric whose ``<name>_best`` flag is set is highlighted when printing to a color
    terminal; ``event_*`` keys (such as ``event_cp``) show as a ``+`` column without their prefix.
    ``sink`` receives each line (default ``print``, which prints only for a ``verbose`` net).
    """

    call_order = 2  # last, so the row holds every callback's keys

    def __init__(self, keys_ignored: str | Iterable[str] | None = None, sink: Callable = print,
                 tablefmt: str = "simple", floatfmt: str = ".4f", stralign: str = "right"):
        self.keys_ignored = keys_ignored
        self.sink = sink
        self.tablefmt = tablefmt
        self.floatfmt = floatfmt
        self.stralign = stralign

    def initialize(self) -> "PrintLog":
        if self.tablefmt != "simple":
            raise ValueError(f"PrintLog(tablefmt={self.tablefmt!r}) is not supported; use 'simple'")
        if self.stralign not in ("left", "right"):
            raise ValueError(f"PrintLog(stralign={self.stralign!r}): use 'left' or 'right'")
        ignored = [self.keys_ignored] if isinstance(self.keys_ignored, str) else self.keys_ignored
        self.keys_ignored_ = set(ignored or ()) | {"batches"}
        self.first_iteration_ = True
        return self

    def sorted_keys(self, keys: Iterable[str]) -> list[str]:
        """Column order: epoch, sorted metrics (no ``_best`` flags or batch counts), events, dur."""
        keys = [key for key in keys if key not in self.keys_ignored_]
        metrics = sorted(
            k for k in keys
            if k not in ("epoch", "dur") and not k.endswith(("_best", "_batch_count"))
            and not k.startswith("event_")
        )
        events = sorted(k for k in keys if k.startswith("event_"))
        head = ["epoch"] if "epoch" in keys else []
        tail = ["dur"] if "dur" in keys else []
        return head + metrics + events + tail

    def format_value(self, value: Any) -> str:
        """``+`` for a true flag, nothing for false/None, ``floatfmt`` for non-integral numbers."""
        if isinstance(value, bool) or value is None:
            return "+" if value else ""
        if isinstance(value, numbers.Real) and not float(value).is_integer():
            return format(value, self.floatfmt)
        return str(value)

    def table_lines(self, row: dict) -> tuple[str, str, str]:
        """The header, separator and value lines of ``row`` as ``simple`` table lines."""
        keys = self.sorted_keys(row)
        headers = [key[len("event_"):] if key.startswith("event_") else key for key in keys]
        values = [self.format_value(row.get(key)) for key in keys]
        widths = [max(len(h) + 2, len(v)) for h, v in zip(headers, values)]
        colors = itertools.cycle(_COLORS)
        highlight = self.sink is print and _stdout_is_color_terminal()
        cells = []
        for key, value, width in zip(keys, values, widths):
            color = next(colors) if not key.startswith("event_") and key not in ("epoch", "dur") else ""
            numeric = isinstance(row.get(key), numbers.Number) and not isinstance(row.get(key), bool)
            cell = value.rjust(width) if numeric or self.stralign == "right" else value.ljust(width)
            if highlight and color and row.get(f"{key}_best"):
                cell = cell.replace(value, f"{color}{value}{_RESET}")
            cells.append(cell)
        header = "  ".join(h.rjust(w) for h, w in zip(headers, widths))
        separator = "  ".join("-" * w for w in widths)
        return header, separator, "  ".join(cells)

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        if not wants_output(self.sink, net.verbose):
            return
        header, separator, line = self.table_lines(net.history[-1])
        if self.first_iteration_:
            self.sink(header)
            self.sink(separator)
            self.first_iteration_ = False
        self.sink(line)
        if self.sink is print:
            sys.stdout.flush()
