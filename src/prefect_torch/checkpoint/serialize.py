"""Writers for the store: ``torch.save`` without the zip CRC32 (sha256 already covers the bytes).

>>> import io, torch
>>> buffer = io.BytesIO()
>>> torch_writer({"w": torch.ones(2)})(buffer)
>>> _ = buffer.seek(0)
>>> torch.load(buffer, weights_only=True)["w"].tolist()
[1.0, 1.0]

torch's CRC32 of every record costs about a third of a large save; the store hashes every file
with sha256 anyway, and ``torch.load`` does not need the CRC. The switch is process-wide in torch
(``torch.utils.serialization.config``), so it is turned off only while a store write runs.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator

import torch

_lock = threading.Lock()
_users = 0


@contextlib.contextmanager
def without_crc32() -> Iterator[None]:
    """Within this block, ``torch.save`` skips the zip CRC32 (where this torch has the switch)."""
    global _users
    config = getattr(getattr(torch.utils, "serialization", None), "config", None)
    save_config = getattr(config, "save", None)
    if save_config is None or not hasattr(save_config, "compute_crc32"):
        yield
        return
    with _lock:
        _users += 1
        save_config.compute_crc32 = False
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                save_config.compute_crc32 = True


def torch_writer(obj: Any) -> Callable[[Any], None]:
    """A write function for :class:`~prefect_torch.checkpoint.PendingFile`: ``torch.save(obj)``."""

    def write(f: Any) -> None:
        with without_crc32():
            torch.save(obj, f)

    return write


def bytes_writer(data: bytes) -> Callable[[Any], None]:
    """A write function that writes ``data`` as it is."""
    return lambda f: f.write(data)
