"""A private PostgreSQL cluster on loopback for the tests, and a second Prefect server that uses it.

:class:`PostgresServer` runs ``initdb`` into a new temporary folder and starts ``postgres`` on a
free port of 127.0.0.1 (no other address), with its unix socket in that folder too, so it never
touches a system cluster, ``/var/run/postgresql`` or the port 5432 one may use. Durability is
off (``fsync``, ``synchronous_commit``, ``full_page_writes``): the data is thrown away at the
end. Authentication is ``trust`` (any local client may connect as any role): fine for a
loopback-only cluster that lives as long as the tests. It creates the database ``prefect``;
:attr:`PostgresServer.url` is the SQLAlchemy URL a Prefect server takes
(``postgresql+asyncpg://postgres@127.0.0.1:PORT/prefect``) and :meth:`PostgresServer.psql`
runs SQL with ``psql``, to check what a server has stored.

Postgres refuses to run as root. As root, the cluster's folder belongs to the ``postgres``
account (created by Debian's package) and ``initdb``, ``postgres`` and ``pg_ctl`` run as that
user; ``psql`` connects over TCP as the role ``postgres`` from any account.

The ``postgres`` server process is a child of the test process (not daemonized by ``pg_ctl
start``), so that, like the other servers of the tests, the kernel kills it when the test
process dies without cleaning up; its backends notice and exit. Normally it is stopped with
``pg_ctl stop -m fast`` (at fixture teardown, else at exit) and its folder removed.

Fixtures (a test module imports both: ``from postgres_server import postgres_server,
prefect_server_on_postgres  # noqa: F401``):

- ``postgres_server`` (session scope): the cluster. Skips the test when PostgreSQL is not
  installed (``bash scripts/install_postgres.sh`` installs it), or fails it when
  ``PREFECT_TORCH_REQUIRE_POSTGRES`` is set (CI sets it).
- ``prefect_server_on_postgres`` (module scope): a real ``prefect server start`` (see
  prefect_server.py) on the database ``prefect``, activated for the test process while the
  module runs (it then takes precedence over the session's ``prefect_server``).

Measured on the 2-core machine: initdb, start and ``create database`` in 0.8-1 s; the Prefect
server healthy on it 8-17 s later (its migrations included).
"""
from __future__ import annotations

import atexit
import contextlib
import os
import pathlib
import pwd
import shutil
import subprocess
import tempfile
import time
from typing import Any, Iterator, Mapping

import pytest

from prefect_server import PrefectServer, _truthy, start_prefect_server
from processes import ExitedEarly, free_port, launch, start_retrying, wait_until

REQUIRE_ENV = "PREFECT_TORCH_REQUIRE_POSTGRES"  # set: a missing PostgreSQL fails instead of skipping
PROGRAMS = ("initdb", "pg_ctl", "postgres", "psql")
OS_USER = "postgres"  # the account Postgres runs as when the tests run as root
ROLE = "postgres"  # the cluster's superuser role
DATABASE = "prefect"
START_TIMEOUT = 60.0  # seconds, initdb included (under a second on a 2-core machine)
STOP_TIMEOUT = 30.0
SETTINGS = {  # postgresql.conf of the throw-away cluster
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",  # a Prefect server holds up to ~30 (pool 5 + overflow 10, twice)
    "log_min_messages": "warning",
}

_running: set["PostgresServer"] = set()


def find_postgres() -> pathlib.Path | None:
    """The folder holding initdb, pg_ctl, postgres and psql: initdb's on PATH (links resolved),
    else the newest ``/usr/lib/postgresql/<version>/bin`` (Debian keeps them there, off PATH)."""
    candidates = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(pathlib.Path(on_path).resolve().parent)

    def version(path: pathlib.Path) -> tuple[int, ...]:
        return tuple(int(part) for part in path.parent.name.split(".") if part.isdigit())

    candidates += sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in PROGRAMS):
            return folder
    return None


def postgres_required() -> bool:
    """True when ``PREFECT_TORCH_REQUIRE_POSTGRES`` is set to a true value (1/true/yes/on)."""
    return _truthy(os.environ.get(REQUIRE_ENV))


def postgres_or_skip() -> pathlib.Path:
    """:func:`find_postgres`, or skip the test (fail it under ``PREFECT_TORCH_REQUIRE_POSTGRES``)."""
    reason = None
    bindir = find_postgres()
    if bindir is None:
        reason = "PostgreSQL (initdb, pg_ctl, postgres, psql) is not installed"
    elif os.geteuid() == 0 and not _account_exists(OS_USER):
        reason = f"running as root and there is no {OS_USER!r} account to run PostgreSQL as"
    if reason is None:
        assert bindir is not None
        return bindir
    if postgres_required():
        pytest.fail(f"{reason}, and {REQUIRE_ENV} is set (bash scripts/install_postgres.sh installs it)",
                    pytrace=False)
    pytest.skip(f"{reason} (bash scripts/install_postgres.sh installs it; set {REQUIRE_ENV}=1 to fail "
                "instead of skipping)")


def _account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class PostgresServer:
    """A throw-away PostgreSQL cluster; use :func:`start_postgres_server` or ``with PostgresServer(bindir)``.

    Start it from a thread that outlives it (the main thread): on Linux the server is killed when
    the thread that started it ends.
    """

    def __init__(self, bindir: pathlib.Path | str, *, database: str = DATABASE, role: str = ROLE):
        self.bindir = pathlib.Path(bindir)
        self.database = database
        self.role = role
        self.as_root = os.geteuid() == 0
        self.base: pathlib.Path | None = None  # the temporary folder: data/, sockets/, postgres.log
        self.port: int | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the database for Prefect (asyncpg driver, no password)."""
        return f"postgresql+asyncpg://{self.role}@127.0.0.1:{self.port}/{self.database}"

    @property
    def log_path(self) -> pathlib.Path:
        assert self.base is not None, "not started"
        return self.base / "postgres.log"

    # -- queries ------------------------------------------------------------------------------------

    def psql(self, sql: str, database: str | None = None, timeout: float = 60) -> str:
        """Run ``sql`` with ``psql`` over TCP; the rows unaligned (``a|b``), one per line, stripped.

        Raises :class:`subprocess.CalledProcessError` (with psql's message) when a statement fails.
        """
        args = [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", "127.0.0.1", "-p", str(self.port), "-U", self.role, "-d", database or self.database,
                "-c", sql]
        result = subprocess.run(args, env=_postgres_env(), stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=timeout)
        if result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, args, result.stdout, result.stderr)
        return result.stdout.strip()

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> "PostgresServer":
        began = time.monotonic()
        # not pytest's tmp_path: its folders are private to the user running the tests (0700),
        # which the postgres account could not enter; mkdtemp's is, and is then given to it
        self.base = pathlib.Path(tempfile.mkdtemp(prefix="prefect-torch-pg-"))
        _running.add(self)
        try:
            if self.as_root:
                account = pwd.getpwnam(OS_USER)
                os.chown(self.base, account.pw_uid, account.pw_gid)
            self._initdb()

            def start_once() -> None:
                self._launch(free_port())
                try:
                    self._wait_until_ready(began + timeout)
                except ExitedEarly:
                    self._proc = None
                    raise

            start_retrying(start_once, self.log_path, "postgres")
            self.psql(f'create database "{self.database}"', database="postgres")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _run_as_owner(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program as the cluster's owner (the postgres account when root)."""
        return subprocess.run(args, env=_postgres_env(), cwd=self.base, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, **self._owner_kwargs())

    def _owner_kwargs(self) -> dict[str, Any]:
        """``subprocess`` arguments that switch to the postgres account when root (like ``runuser
        -u postgres --``, but without a process in between that a parent-death signal would hit
        instead of postgres)."""
        if not self.as_root:
            return {}
        account = pwd.getpwnam(OS_USER)
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def _initdb(self) -> None:
        assert self.base is not None
        (self.base / "sockets").mkdir()
        if self.as_root:
            shutil.chown(self.base / "sockets", OS_USER, OS_USER)
        data = self.base / "data"
        result = self._run_as_owner([str(self.bindir / "initdb"), "-D", str(data), "-U", self.role,
                                     "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"], timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"initdb exited with code {result.returncode}:\n{result.stdout}{result.stderr}")
        settings = {**SETTINGS, "unix_socket_directories": f"'{self.base / 'sockets'}'"}
        with open(data / "postgresql.conf", "a") as conf:  # keeps its owner (postgres)
            conf.write("\n# prefect-torch tests\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))

    def _launch(self, port: int) -> None:
        assert self.base is not None
        self.port = port
        args = [str(self.bindir / "postgres"), "-D", str(self.base / "data"), "-p", str(port)]
        self._proc = launch(args, self.log_path, cwd=self.base, env=_postgres_env(), **self._owner_kwargs())

    def _wait_until_ready(self, deadline: float) -> None:
        """Poll with ``select 1`` until the server accepts connections."""
        def ready() -> bool:
            try:
                return self.psql("select 1", database="postgres", timeout=10) == "1"
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                return False

        assert self._proc is not None
        wait_until(self._proc, ready, deadline, f"postgres on port {self.port} was not ready in time", self.log_path)

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """``pg_ctl stop -m fast`` (SIGKILL if it does not end in time), then remove the folder."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            assert self.base is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._run_as_owner([str(self.bindir / "pg_ctl"), "stop", "-D", str(self.base / "data"),
                                    "-m", "fast", "-w", "-t", str(int(STOP_TIMEOUT))], timeout=STOP_TIMEOUT + 10)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()  # its backends exit when they see the postmaster gone
                proc.wait(timeout=10)
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None
        _running.discard(self)

    def __enter__(self) -> "PostgresServer":
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PostgresServer({self.url if self.port else 'not started'})"


def _postgres_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` without the caller's ``PG*`` variables (PGHOST, PGPORT, PGDATA... would send
    a program elsewhere), in the C locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"LC_ALL": "C", "LANG": "C"}, **(extra or {}))
    return env


def start_postgres_server(bindir: pathlib.Path | str | None = None, **kwargs: Any) -> PostgresServer:
    """Start a throw-away cluster (:func:`find_postgres`'s programs by default); ready on return."""
    bindir = bindir or find_postgres()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL is not installed (bash scripts/install_postgres.sh)")
    return PostgresServer(bindir, **kwargs).start()


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster on loopback for the whole session, with the empty database ``prefect``."""
    server = start_postgres_server(postgres_or_skip())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def prefect_server_on_postgres(postgres_server: PostgresServer,
                               tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A second real Prefect server, on ``postgres_server``'s database; this process's Prefect
    uses it while the module runs (see prefect_server.py's ``activate``)."""
    pytest.importorskip("prefect")
    server = start_prefect_server(tmp_path_factory.mktemp("prefect-server-pg"), db_url=postgres_server.url)
    try:
        with server.activate():
            yield server
    finally:
        server.stop()
