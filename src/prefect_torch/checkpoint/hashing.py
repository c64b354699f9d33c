"""sha256 of files, computed while they are written (no second read).

>>> import io
>>> with HashingWriter(io.BytesIO()) as f:
...     _ = f.write(b"abc")
>>> f.record().sha256[:16]
'ba7816bf8f01cfea'
"""
from __future__ import annotations

import hashlib
import io
import threading
from dataclasses import dataclass
from typing import IO, Any


@dataclass(frozen=True)
class FileRecord:
    """Size and sha256 of a file's bytes."""

    size: int
    sha256: str


_PARALLEL_FROM = 1 << 20  # hash big chunks on a helper thread while the caller writes them
_READ_CHUNK = 8 << 20


class _Hasher(threading.Thread):
    """A helper thread that hashes one chunk at a time while the caller writes it.

    ``hashlib`` and file writes both release the GIL, so a large chunk costs about
    ``max(hash, write)`` instead of their sum.
    """

    def __init__(self, digest: Any):
        super().__init__(daemon=True, name="prefect-torch-sha256")
        self.digest = digest
        self._chunk: Any = None
        self._ready = threading.Semaphore(0)
        self._done = threading.Semaphore(0)
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        while True:
            self._ready.acquire()
            chunk, self._chunk = self._chunk, None
            if chunk is None:
                return
            try:
                self.digest.update(chunk)
            except BaseException as error:  # re-raised in the writing thread
                self._error = error
            self._done.release()

    def begin(self, chunk: Any) -> None:
        self._chunk = chunk
        self._ready.release()

    def wait(self) -> None:
        self._done.acquire()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._chunk = None
        self._ready.release()
        self.join()


class HashingWriter(io.RawIOBase):
    """A write-only file that passes bytes to ``raw`` and hashes them on the way."""

    def __init__(self, raw: IO[bytes], on_written: Any = None):
        super().__init__()
        self.raw = raw
        self.on_written = on_written  # called with the running byte count after each write
        self.size = 0
        self._digest = hashlib.sha256()
        self._hasher: _Hasher | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        n = view.nbytes
        if n >= _PARALLEL_FROM:
            if self._hasher is None:
                self._hasher = _Hasher(self._digest)
            self._hasher.begin(view)
            try:
                self.raw.write(view)
            finally:
                self._hasher.wait()  # the chunk may be freed once write() returns
        else:
            self._digest.update(view)
            self.raw.write(view)
        self.size += n
        if self.on_written is not None:
            self.on_written(self.size)
        return n

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        if self._hasher is not None:
            self._hasher.close()
            self._hasher = None
        super().close()

    def record(self) -> FileRecord:
        return FileRecord(self.size, self._digest.hexdigest())


def sha256_of(f: IO[bytes]) -> FileRecord:
    """The :class:`FileRecord` of what ``f`` still holds."""
    digest, size = hashlib.sha256(), 0
    while chunk := f.read(_READ_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return FileRecord(size, digest.hexdigest())
