"""Writers for the store: ``torch.save`` without the zip CRC32 (sha256 already covers the bytes).

>>> import io, torch
>>> buffer = io.BytesIO()
>>> torch_writer({"w": torch.ones(2)})(buffer)
>>> _ = buffer.seek(0)
>>> torch.load(buffer, weights_only=True)["w"].tolist()
[1.0, 1.0]

torch's CRC32 of every record costs about a third of a large save; the store hashes every file
with sha256 anyway, and ``torch.load`` does not need the CRC. torch offers no per-writer switch:
``torch.save`` takes no such argument, and its only control (``torch.serialization.
set_crc32_options``, i.e. ``torch.utils.serialization.config.save.compute_crc32``, torch 2.13) is
process-wide and read by every ``torch.save`` call. So it is scoped in time instead: off only
while at least one store write runs (a count, for background commits on other threads), then
set back to what it was before the first of them (a user's own ``set_crc32_options(False)`` is
kept). Nothing is changed at import time. A ``torch.save`` of the user's own running at the same
instant on another thread writes without CRC too, which ``torch.load`` reads all the same.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator

import torch

_lock = threading.Lock()
_users = 0
_before: bool = True  # the setting when the first of the writes in progress began


@contextlib.contextmanager
def without_crc32() -> Iterator[None]:
    """Within this block, ``torch.save`` skips the zip CRC32 (where this torch has the switch)."""
    global _users, _before
    config = getattr(getattr(torch.utils, "serialization", None), "config", None)
    save_config = getattr(config, "save", None)
    if save_config is None or not hasattr(save_config, "compute_crc32"):
        yield
        return
    with _lock:
        if _users == 0:
            _before = bool(save_config.compute_crc32)
        _users += 1
        save_config.compute_crc32 = False
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                save_config.compute_crc32 = _before


def torch_writer(obj: Any) -> Callable[[Any], None]:
    """A write function for :class:`~prefect_torch.checkpoint.PendingFile`: ``torch.save(obj)``."""

    def write(f: Any) -> None:
        with without_crc32():
            torch.save(obj, f)

    return write


def bytes_writer(data: bytes) -> Callable[[Any], None]:
    """A write function that writes ``data`` as it is."""
    return lambda f: f.write(data)
