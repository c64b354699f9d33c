"""A real Prefect server on loopback for the integration tests: ``prefect server start``.

:class:`PrefectServer` runs ``python -m prefect server start`` on a free port of 127.0.0.1 with
its own ``PREFECT_HOME`` (a temporary folder), analytics off, the UI on (``PREFECT_UI_API_URL``
points at this port, so a browser opening :attr:`PrefectServer.ui_url` talks to this server),
and waits for ``/api/health``. The ``prefect_server`` fixture (session scope, started by the
first test that asks for it) also points the *test process* at the server; a test module uses
it with ``from prefect_server import prefect_server  # noqa: F401`` (tests/conftest.py does).

Database: an in-memory SQLite (``sqlite+aiosqlite:///:memory:``) by default, chosen by measuring
``prefect server start`` on the 2-core machine (3 flows x 30 trivial tasks, twice per server):

- SQLite *file* (Prefect's default): healthy in 12-25 s; 3 of every 6 flow-run creations were
  answered "database is locked" -> HTTP 503 and the client backed off ~2 s each (flows 0.5-4.2 s);
- in-memory SQLite: healthy in 10-16 s (30 s under heavy load; it migrates on every start, as a
  fresh file does); 0 lock errors, 0 retries (flows 0.5-2.7 s); task runs recorded within ~1 s;
- Postgres 15 (local, fsync off): healthy in 9-14 s plus ~1.2 s for initdb/start; 0 retries but
  flows 0.8-2.3 s and the task runs recorded 2-7 s after the flows ended.

The in-memory database lives and dies with the server process (one connection, so requests are
serialized; plenty for tests). ``PREFECT_TORCH_TEST_DB`` chooses another one: ``file`` (SQLite
file in the home: needed to restart a server on the same data) or any SQLAlchemy URL, e.g.
``postgresql+asyncpg://user@127.0.0.1:5432/db``.

What the fixture changes in the test process, for the rest of the session (documented choice:
the server is shared by the session, so are its settings): ``PREFECT_API_URL`` (this server),
``PREFECT_HOME`` (the server's temporary home, so persisted results stay out of ~/.prefect),
``PREFECT_FLOWS_HEARTBEAT_FREQUENCY=None`` (saves ~1 s per flow; only a setting can say None, an
environment variable cannot), analytics off and ``PREFECT_LOGGING_TO_API_ENABLED`` off (set
``PREFECT_TORCH_TEST_LOG_TO_API=1`` to turn it on). They are set with Prefect's
``temporary_settings`` and as Prefect's process-global settings context (what
``prefect_test_harness`` does), so threads see them too. ``os.environ`` is not changed:
subprocesses get the server through :meth:`PrefectServer.env` / :meth:`PrefectServer.run_python`.
Tests that never import prefect are unaffected; tests that use prefect without the fixture
after it started talk to this server instead of an ephemeral one.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.request
from typing import Any, Iterator, Mapping

import pytest

from helpers import parent_death_signal
from processes import ExitedEarly, free_port, launch, start_retrying, stop_group, tail, wait_until

START_TIMEOUT = 120.0  # seconds; healthy after 10-16 s on a busy 2-core machine (migrations included)
WORKER_QUERY_SECONDS = 1  # how often a test worker polls for scheduled runs
MEMORY_DB_URL = "sqlite+aiosqlite:///:memory:"
DB_ENV = "PREFECT_TORCH_TEST_DB"  # "memory" (default) | "file" | an SQLAlchemy URL
LOG_TO_API_ENV = "PREFECT_TORCH_TEST_LOG_TO_API"  # "1" sends the logs of flow runs to the server

_running: set["PrefectServer"] = set()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _db_url_from_env(home: pathlib.Path) -> str:
    """The database URL that ``PREFECT_TORCH_TEST_DB`` asks for (default: in-memory SQLite)."""
    choice = os.environ.get(DB_ENV, "").strip()
    if choice in ("", "memory"):
        return MEMORY_DB_URL
    if choice == "file":
        return f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    return choice


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` without any ``PREFECT_*`` variable of the caller, updated with ``extra``.

    A developer's PREFECT_API_URL / PREFECT_PROFILE / PREFECT_HOME must not send a test's
    subprocess to another server.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(extra or {})
    return env


def _python_args(script: str | os.PathLike[str], args: tuple[str | os.PathLike[str], ...]) -> list[str]:
    """``python FILE args`` for a path, ``python -c CODE args`` for a str of code."""
    if isinstance(script, os.PathLike):
        head = [sys.executable, os.fspath(script)]
    else:
        head = [sys.executable, "-c", script]
    return head + [os.fspath(a) for a in args]


class PrefectServer:
    """A running ``prefect server start``; use :func:`start_prefect_server` or ``with PrefectServer(dir)``.

    Start it from a thread that outlives it (the main thread): on Linux the server is killed when
    the thread that started it ends, so that a crashed test run leaves no process behind.
    """

    def __init__(self, home: pathlib.Path | str, *, db_url: str | None = None,
                 log_to_api: bool | None = None):
        self.home = pathlib.Path(home).resolve()
        self.db_url = db_url or _db_url_from_env(self.home)
        self.log_to_api = _truthy(os.environ.get(LOG_TO_API_ENV)) if log_to_api is None else log_to_api
        self.port: int | None = None
        self.api_url = ""
        self.ui_url = ""
        self.log_path = self.home / "server.log"
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen | None = None

    # -- client configuration -----------------------------------------------------------------------

    def env(self, log_to_api: bool | None = None) -> dict[str, str]:
        """The ``PREFECT_*`` variables with which a subprocess's Prefect uses this server.

        Merge them into a clean environment (:func:`clean_env`), as :meth:`run_python` does. Flow
        heartbeats stay on (180 s) in subprocesses: an environment variable cannot turn them off;
        a script does it with ``temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})``.
        """
        to_api = self.log_to_api if log_to_api is None else log_to_api
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_TO_API_ENABLED": "true" if to_api else "false",
        }

    def settings(self) -> dict[Any, Any]:
        """The in-process settings (for ``prefect.settings.temporary_settings``) of :meth:`activate`."""
        import prefect.settings as ps

        return {
            ps.PREFECT_API_URL: self.api_url,
            ps.PREFECT_HOME: str(self.home),
            ps.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
            ps.PREFECT_SERVER_ANALYTICS_ENABLED: False,
            ps.PREFECT_LOGGING_TO_API_ENABLED: self.log_to_api,
        }

    @contextlib.contextmanager
    def activate(self) -> Iterator["PrefectServer"]:
        """Point this process's Prefect at the server (see the module docstring) while inside.

        Prefect's events worker is a process-wide singleton that keeps the API URL it was
        created with; it is drained (and so recreated) on entry and exit.
        """
        import prefect.context
        from prefect.settings import temporary_settings

        _drain_prefect_workers()
        with contextlib.ExitStack() as stack:
            stack.enter_context(temporary_settings(updates=self.settings()))
            global_context = getattr(prefect.context, "_temporary_global_settings_context", None)
            if global_context is not None:  # private in 3.9 (used by prefect_test_harness)
                stack.enter_context(global_context(prefect.context.get_settings_context()))
            stack.callback(_drain_prefect_workers)
            yield self

    def client(self, sync: bool = True):
        """A Prefect API client for this server (``with server.client() as c: ...``).

        ``sync=False`` gives the async ``PrefectClient`` (``async with``).
        """
        from prefect.client.orchestration import PrefectClient, SyncPrefectClient

        return SyncPrefectClient(self.api_url) if sync else PrefectClient(self.api_url)

    def get_json(self, path: str, timeout: float = 10) -> Any:
        """``GET {api_url}{path}`` decoded, without importing prefect (e.g. ``"/health"``)."""
        with urllib.request.urlopen(self.api_url + path, timeout=timeout) as response:
            return json.load(response)

    def post_json(self, path: str, body: Any, timeout: float = 30) -> Any:
        """``POST {api_url}{path}`` with a JSON body, decoded (e.g. ``"/flow_runs/filter"``)."""
        request = urllib.request.Request(self.api_url + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)

    # -- subprocesses -------------------------------------------------------------------------------

    def subprocess_env(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """A complete environment for a subprocess: :func:`clean_env` + :meth:`env` + ``env``."""
        return clean_env({**self.env(), **(env or {})})

    def run_python(self, script: str | os.PathLike[str], *args: str | os.PathLike[str],
                   env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
                   timeout: float = 240, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``python FILE`` (a ``Path``) or ``python -c CODE`` (a ``str``) against this server.

        Waits for it and returns the ``CompletedProcess`` (text stdout/stderr captured).
        """
        return subprocess.run(_python_args(script, args), env=self.subprocess_env(env), cwd=cwd,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=check)

    def start_python(self, script: str | os.PathLike[str], *args: str | os.PathLike[str],
                     env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
                     log_path: str | os.PathLike[str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``python FILE``/``-c CODE`` against this server in its own process group; no wait.

        Output goes to ``log_path`` (default: a new file in the server home; its path is the
        returned Popen's ``log_path`` attribute). ``proc.kill()`` is a SIGKILL of the script
        alone, ``os.killpg(proc.pid, signal.SIGKILL)`` of its whole group.
        """
        if log_path is None:
            log_dir = self.home / "scripts"
            log_dir.mkdir(exist_ok=True)
            log_path = log_dir / f"script-{time.strftime('%H%M%S')}-{os.urandom(3).hex()}.log"
        log_path = pathlib.Path(log_path)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(_python_args(script, args), env=self.subprocess_env(env), cwd=cwd,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, preexec_fn=parent_death_signal())
        proc.log_path = log_path  # type: ignore[attr-defined]
        return proc

    @contextlib.contextmanager
    def work_pool(self, name: str, type: str = "process", *, query_seconds: float = WORKER_QUERY_SECONDS,
                  env: Mapping[str, str] | None = None, timeout: float = START_TIMEOUT) -> Iterator["Worker"]:
        """Create work pool ``name`` (if missing) and run ``prefect worker start --pool name`` inside.

        Yields a :class:`Worker` once the worker has registered with the server (3-8 s); it is
        stopped (SIGTERM to its process group, then SIGKILL) on exit. The worker polls every
        ``query_seconds`` (``PREFECT_WORKER_QUERY_SECONDS``): measured with 1 s, a deployment run
        went Scheduled -> Pending 0.4-0.9 s after it was created and Running 4-13 s later (the
        flow-run subprocess imports prefect and loads the flow first). ``env`` is added to the
        worker's environment, which its flow runs inherit.
        """
        worker = Worker(self, name, type, query_seconds=query_seconds, env=env)
        try:
            worker.start(timeout=timeout)
            yield worker
        finally:
            worker.stop()

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> "PrefectServer":
        began = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        def start_once() -> None:
            self._launch(free_port())
            try:
                self._wait_until_healthy(began + timeout)
            except ExitedEarly:
                self._kill()
                raise

        start_retrying(start_once, self.log_path, "prefect server")
        self.startup_seconds = time.monotonic() - began
        return self

    def server_env(self) -> dict[str, str]:
        """The environment of the server process."""
        return clean_env({
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_UI_API_URL": self.api_url,  # what the UI's JavaScript calls (default :4200)
            "PREFECT_SERVER_UI_ENABLED": "true",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": self.db_url,
            "PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true",  # "database is locked" shows in the log
            "PREFECT_SERVER_LOGGING_LEVEL": "INFO",  # the access log: one line per request
        })

    def _launch(self, port: int) -> None:
        self.port = port
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.ui_url = f"http://127.0.0.1:{port}"
        args = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                "--port", str(port)]
        # cwd = home: pydantic-settings would read a .env / prefect.toml / pyproject.toml there
        self._proc = launch(args, self.log_path, cwd=self.home, env=self.server_env())
        _running.add(self)

    def _wait_until_healthy(self, deadline: float) -> None:
        """Poll ``/api/health`` until it answers ``true`` (migrations and services are up then)."""
        def healthy() -> bool:
            try:
                return self.get_json("/health", timeout=5) is True
            except (OSError, ValueError):
                return False

        assert self._proc is not None
        try:
            wait_until(self._proc, healthy, deadline, f"prefect server {self.api_url} was not healthy in time", self.log_path)
        except TimeoutError:
            self.stop()
            raise

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        stop_group(proc)

    def stop(self) -> None:
        """Stop the server: SIGTERM to its process group (graceful), SIGKILL if it lingers."""
        self._kill()
        _running.discard(self)

    def __enter__(self) -> "PrefectServer":
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PrefectServer({self.api_url or 'not started'}, db={self.db_url!r})"


class Worker:
    """A ``prefect worker start --pool NAME`` subprocess; use :meth:`PrefectServer.work_pool`."""

    def __init__(self, server: PrefectServer, pool: str, type: str = "process", *,
                 query_seconds: float = WORKER_QUERY_SECONDS, env: Mapping[str, str] | None = None):
        self.server = server
        self.pool = pool
        self.type = type
        self.name = f"{pool}-worker-{os.urandom(3).hex()}"
        self.query_seconds = query_seconds
        self.extra_env = dict(env or {})
        self.workdir = server.home / "workers" / self.name
        self.log_path = self.workdir / "worker.log"
        self.startup_seconds: float | None = None
        self.proc: subprocess.Popen | None = None

    def create_pool(self) -> None:
        """Create the work pool with the default job template of its type (kept if it exists)."""
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.exceptions import ObjectAlreadyExists
        from prefect.workers.base import BaseWorker

        worker_class = BaseWorker.get_worker_class_from_type(self.type)
        template = worker_class.get_default_base_job_template() if worker_class else {}
        with self.server.client() as client, contextlib.suppress(ObjectAlreadyExists):
            client.create_work_pool(WorkPoolCreate(name=self.pool, type=self.type,
                                                   base_job_template=template))

    def start(self, timeout: float = START_TIMEOUT) -> "Worker":
        began = time.monotonic()
        self.create_pool()
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "prefect", "worker", "start", "--pool", self.pool,
                "--type", self.type, "--name", self.name]
        env = self.server.subprocess_env({"PREFECT_WORKER_QUERY_SECONDS": str(self.query_seconds),
                                          **self.extra_env})
        self.proc = launch(args, self.log_path, cwd=self.workdir, env=env)
        self._wait_until_registered(began + timeout)
        self.startup_seconds = time.monotonic() - began
        return self

    def _wait_until_registered(self, deadline: float) -> None:
        """Wait until the server lists this worker in the pool (its first heartbeat is sent
        after it has loaded its flow-run machinery, just before it starts polling)."""
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect worker exited with code {self.proc.returncode}\n"
                                   f"{self.log_tail()}")
            try:
                workers = self.server.post_json(f"/work_pools/{self.pool}/workers/filter", {})
                if any(w.get("name") == self.name for w in workers):
                    return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"worker {self.name} did not register in time\n{self.log_tail()}")
            time.sleep(0.2)

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)

    def stop(self) -> None:
        """SIGTERM the worker's process group, SIGKILL after 15 s.

        The flow-run processes the worker started run in process groups of their own; the worker
        stops them itself on SIGTERM (measured: gone 0.5 s later, their runs left ``Running``).
        """
        proc, self.proc = self.proc, None
        stop_group(proc)

    def __repr__(self) -> str:
        return f"Worker({self.name!r}, pool={self.pool!r}, running={self.is_running()})"


def _drain_prefect_workers() -> None:
    """Flush and stop Prefect's background log/event workers of this process (if prefect is loaded)."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for drain in (APILogWorker.drain_all, EventsWorker.drain_all):
        with contextlib.suppress(Exception):
            drain(timeout=10)


def start_prefect_server(home: pathlib.Path | str, **kwargs: Any) -> PrefectServer:
    """Start ``prefect server start`` with its home (and database, logs) in ``home``; healthy on return."""
    return PrefectServer(home, **kwargs).start()


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A real Prefect server for the whole session; this process's Prefect uses it (see module doc)."""
    pytest.importorskip("prefect")
    server = start_prefect_server(tmp_path_factory.mktemp("prefect-server"))
    try:
        with server.activate():
            yield server
    finally:
        server.stop()
