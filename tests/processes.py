"""The life cycle the tests' servers share (Prefect, S3, PostgreSQL): start a program in a
session of its own with its output in a log, wait until it is ready (or has exited, or is
late), retry when its port was taken meanwhile, and stop its whole process group.

>>> import sys, tempfile, pathlib
>>> log = pathlib.Path(tempfile.mkdtemp()) / "sleep.log"
>>> proc = launch([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"], log)
>>> wait_until(proc, lambda: "up" in log.read_text(), time.monotonic() + 30, "the sleeper did not start")
>>> stop_group(proc, timeout=5)
>>> proc.returncode is not None
True
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import time
from typing import Any, Callable, Sequence

from helpers import parent_death_signal

STOP_TIMEOUT = 15.0  # graceful stop (SIGTERM) before SIGKILL


class ExitedEarly(Exception):
    """The program ended before it was ready; ``args[0]`` is its exit code."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (see :func:`start_retrying`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: Sequence[str], log_path: pathlib.Path, **popen: Any) -> subprocess.Popen[bytes]:
    """Start ``args`` in a session of its own (so :func:`stop_group` reaches its children), killed
    if this test process dies (Linux), stdin closed, stdout and stderr appended to ``log_path``
    after a ``$ args`` line; ``popen`` adds ``cwd``, ``env``, ``user``..."""
    with open(log_path, "ab") as log:
        log.write(f"\n$ {' '.join(map(str, args))}\n".encode())
        log.flush()
        return subprocess.Popen(list(args), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=parent_death_signal(), **popen)


def wait_until(proc: subprocess.Popen, ready: Callable[[], bool], deadline: float, late: str,
               log_path: pathlib.Path | None = None, interval: float = 0.1) -> None:
    """Poll ``ready()`` until it is true; :class:`ExitedEarly` if ``proc`` ends first,
    ``TimeoutError(late + the log's tail)`` past ``deadline`` (``time.monotonic()``)."""
    while True:
        if proc.poll() is not None:
            raise ExitedEarly(proc.returncode)
        if ready():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{late}\n{tail(log_path) if log_path else ''}")
        time.sleep(interval)


def start_retrying(start_once: Callable[[], None], log_path: pathlib.Path, what: str,
                   retry: Callable[[bytes], bool] = lambda log: b"already in use" in log, tries: int = 3) -> None:
    """``start_once()`` (launch and wait), again when it raised :class:`ExitedEarly` and
    ``retry(the log written meanwhile)`` says why (by default: its port was taken between
    picking and binding it); after ``tries``, or for another reason, a ``RuntimeError`` with
    the log's tail. ``start_once`` cleans up after itself when the program exits early."""
    for attempt in range(tries):
        log_start = log_path.stat().st_size if log_path.exists() else 0
        try:
            start_once()
            return
        except ExitedEarly as exited:
            with open(log_path, "rb") as log:
                log.seek(log_start)
                again = retry(log.read())
            if attempt == tries - 1 or not again:
                raise RuntimeError(f"{what} exited with code {exited} during start-up ({attempt + 1} tries)\n"
                                   f"{tail(log_path)}") from None


def stop_group(proc: subprocess.Popen | None, timeout: float = STOP_TIMEOUT, graceful: bool = True) -> None:
    """SIGTERM the process group of ``proc`` (started by :func:`launch`), SIGKILL after
    ``timeout`` (at once without ``graceful``), and reap it."""
    if proc is None:
        return
    if graceful and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    # the leader may be gone while children of its group still run
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def tail(path: pathlib.Path, lines: int = 60) -> str:
    """The last ``lines`` of the log at ``path``, titled, for error messages."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log at {path})"
    return f"--- last {len(text)} lines of {path} ---\n" + "\n".join(text)
