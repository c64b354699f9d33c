"""What the benchmarks share: repeated timings, the Prefect API they measure against (a running
one or a local server of their own), their common options and report lines.

Run the benchmarks from the repository root (``python bench/<name>.py``): this module is imported
from next to them.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import prefect
import torch

import prefect_torch

SERVER_START_TIMEOUT = 180.0


@dataclass
class Timing:
    """Seconds of each round; the best round is the steady figure on a noisy machine."""

    seconds: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def worst(self) -> float:
        return max(self.seconds)


# -- the Prefect API -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class ServerError(RuntimeError):
    """No Prefect API to measure against."""


class Server:
    """The Prefect API the flows report to: a running one (``--api-url``) or our own local server."""

    def __init__(self, api_url: str, own: bool):
        self.api_url, self.own = api_url, own
        self.start_seconds = 0.0
        self.counts: dict[str, int] | None = None  # of the local server's log lines, once it stopped

    def wait_healthy(self) -> None:
        if not healthy(self.api_url):
            raise ServerError(f"no healthy Prefect API at {self.api_url} ({self.api_url}/health)")

    def stop(self) -> None:
        """Nothing to stop: the server is not ours."""

    def cpu_seconds(self) -> float | None:
        """CPU time the server's process used so far (our own server, on Linux), else ``None``."""
        return None


def _stop_with_parent() -> None:
    """In the server's process, before exec: SIGTERM when the bench dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class LocalServer(Server):
    """``prefect server start`` on a free loopback port, in a fresh temporary PREFECT_HOME; it
    starts when the object is made (so the bench can prepare meanwhile) and stops on ``stop``."""

    def __init__(self, keep_home: bool):
        port = free_port()
        super().__init__(f"http://127.0.0.1:{port}/api", own=True)
        self.keep_home, self.stopped = keep_home, False
        self.home = Path(tempfile.mkdtemp(prefix="prefect-home-"))
        self.log_path = self.home / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_HOME=str(self.home), PREFECT_API_URL=self.api_url,
                   PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false")
        self.started = time.perf_counter()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port),
                 "--no-ui", "--analytics-off"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                preexec_fn=_stop_with_parent if sys.platform == "linux" else None)

    def wait_healthy(self) -> None:
        while not healthy(self.api_url):
            if self.proc.poll() is not None:
                raise ServerError(f"prefect server start exited with {self.proc.returncode}:\n"
                                   f"{self.log_path.read_text(errors='replace')[-3000:]}")
            if time.perf_counter() - self.started > SERVER_START_TIMEOUT:
                raise ServerError(f"the Prefect server was not healthy after {SERVER_START_TIMEOUT:.0f} s; "
                                   f"its log: {self.log_path}")
            time.sleep(0.25)
        self.start_seconds = time.perf_counter() - self.started

    def cpu_seconds(self) -> float | None:
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the session we started: the server and its children
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.log_path.exists():
            text = self.log_path.read_text(errors="replace")
            self.counts = {"database is locked": text.count("database is locked"), "503": text.count(" 503")}
        if self.keep_home:
            print(f"(kept the local server's PREFECT_HOME: {self.home})")
        else:
            shutil.rmtree(self.home, ignore_errors=True)


def source_version() -> str:
    """The repository's commit (``+dirty src`` with uncommitted changes under src/), or ``?``."""
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=repo, capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return head + ("+dirty src" if dirty else "")


def quiet_console() -> None:
    """Prefect's console lines ("Finished in state Completed()" per task) down to warnings."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.WARNING)


def print_rule(title: str) -> None:
    print(f"\n{title}\n{'-' * len(title)}")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The options the Prefect benches share: which server, its logs, where files go, JSON output."""
    parser.add_argument("--api-url", default=None,
                        help="use this Prefect API (e.g. http://127.0.0.1:4200/api) instead of starting "
                             "a local server")
    parser.add_argument("--api-logs", action="store_true",
                        help="send run logs to the API too (PREFECT_LOGGING_TO_API_ENABLED; default off)")
    parser.add_argument("--console-logs", action="store_true",
                        help="keep Prefect's INFO lines on the console (default: warnings only)")
    parser.add_argument("--keep-server-home", action="store_true",
                        help="keep the local server's PREFECT_HOME (its database and log) for inspection")
    parser.add_argument("--dir", default=None,
                        help="where the checkpoints go (default: a temp folder); removed after each run")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON")


def with_server(args: argparse.Namespace, body: Callable[[Server, float], int]) -> int:
    """``body(server, began)`` with the server of ``args`` (``--api-url``, else a local one that
    starts now and is stopped at the end, SIGTERM included); a server error exits 2."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the local server on the way out
    began = time.perf_counter()
    server: Server
    if args.api_url:
        server = Server(args.api_url.rstrip("/"), own=False)
    else:
        server = LocalServer(args.keep_server_home)  # starts now; it needs 15-30 s
    try:
        return body(server, began)
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        server.stop()


def versions_line() -> str:
    """Python, torch, Prefect and prefect-torch versions, CPUs and the load at the start."""
    return (f"python {platform.python_version()}, torch {torch.__version__}, prefect {prefect.__version__}, "
            f"prefect_torch {prefect_torch.__version__} ({source_version()}), {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f} (1 min) at the start")


