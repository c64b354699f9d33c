"""Background commits: the training thread snapshots state into reused CPU buffers and goes on.

>>> import torch
>>> staging, committer = Staging(), BackgroundCommitter()
>>> weights = {"w": torch.ones(3)}
>>> snapshot = staging.stage("params", weights)
>>> _ = weights["w"].add_(1)                   # training goes on...
>>> committer.submit(lambda: snapshot["w"].tolist(), label=1)
>>> committer.wait(); committer.take_error() is None
True

At most one commit is in flight: the next snapshot waits for it, since it reuses its buffers.
The writer is an ordinary (non-daemon) thread, so the interpreter waits for it at exit.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import torch


class Staging:
    """CPU copies of state dicts, in buffers kept from one snapshot to the next."""

    def __init__(self) -> None:
        self._buffers: dict[tuple, torch.Tensor] = {}

    def stage(self, key: Any, obj: Any) -> Any:
        """``obj`` with every tensor copied into this staging's buffer for its place in ``obj``."""
        return self._copy(obj, (key,))

    def _copy(self, obj: Any, path: tuple) -> Any:
        if isinstance(obj, torch.Tensor):
            buffer = self._buffers.get(path)
            if buffer is None or buffer.shape != obj.shape or buffer.dtype != obj.dtype:
                buffer = torch.empty(obj.shape, dtype=obj.dtype, device="cpu")
                self._buffers[path] = buffer
            return buffer.copy_(obj.detach())
        if isinstance(obj, dict):
            copied = {k: self._copy(v, path + (k,)) for k, v in obj.items()}
            return type(obj)(copied) if type(obj) is not dict else copied
        if isinstance(obj, (list, tuple)):
            items = [self._copy(v, path + (i,)) for i, v in enumerate(obj)]
            return type(obj)(items) if not hasattr(obj, "_fields") else type(obj)(*items)
        return obj


class BackgroundCommitter:
    """Runs one job at a time on a writer thread and keeps its error for the trainer to collect."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: tuple[Any, BaseException] | None = None

    def submit(self, job: Callable[[], Any], label: Any = None) -> None:
        """Wait for the job in flight, then start ``job``; ``label`` comes back with its error."""
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(job, label), name="prefect-torch-commit")
        self._thread.start()

    def _run(self, job: Callable[[], Any], label: Any) -> None:
        try:
            job()
        except BaseException as error:  # handed to the training thread by take_error()
            self._error = (label, error)

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> None:
        """Block until the job in flight (if any) is done."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def take_error(self) -> tuple[Any, BaseException] | None:
        """``(label, error)`` of a failed job since the last call, else ``None``."""
        error, self._error = self._error, None
        return error
