"""Saying plainly why a write failed: a full disk is named as such, whatever layer raised it.

>>> import errno
>>> try:
...     try:
...         raise OSError(errno.ENOSPC, "No space left on device")
...     except OSError:
...         raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
... except RuntimeError as error:
...     print(explain(error, "writing params.pt", "/data/run", needed=106_269, free=0))
[Errno 28] no space left on device: writing params.pt needs 106,269 bytes in /data/run, 0 bytes are free

torch's writer reports a full disk as "unexpected pos" (the ``OSError`` is only its context), so
the chain of causes is searched, and where no errno says it, the free space of the device does.
"""
from __future__ import annotations

import errno

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(OSError):
    """ENOSPC, said plainly: what needed how many bytes, where, and how many were free."""


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and the errors it was raised from or during, each once."""
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in found):
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def is_disk_full(error: BaseException, needed: int | None = None, free: int | None = None) -> bool:
    """True when ``error`` (or one it came from) is ENOSPC/EDQUOT, or when an I/O error without
    an errno happened on a device with less free space than ``needed``.

    >>> is_disk_full(RuntimeError("unexpected pos"), needed=100, free=10)
    True
    >>> is_disk_full(PermissionError(13, "Permission denied"), needed=100, free=10)
    False
    """
    errnos = {e.errno for e in _chain(error) if isinstance(e, OSError) and isinstance(e.errno, int)}
    if errnos:
        return bool(errnos & NO_SPACE)  # an OS error said what happened (read-only, missing...)
    return (isinstance(error, (OSError, RuntimeError)) and needed is not None and free is not None
            and free < needed)


def explain(error: BaseException, what: str, where: str, needed: int | None = None,
            free: int | None = None) -> BaseException:
    """A :class:`DiskFullError` saying what needed how many bytes where, when ``error`` comes
    from a full disk; ``error`` itself otherwise (or when it already says so)."""
    if isinstance(error, DiskFullError) or not is_disk_full(error, needed, free):
        return error
    need = f"needs {needed:,} bytes" if needed is not None else "needs more space"
    have = f", {free:,} bytes are free" if free is not None else ""
    return DiskFullError(errno.ENOSPC, f"no space left on device: {what} {need} in {where}{have}")
