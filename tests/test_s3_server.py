"""The ``s3_server`` fixture gives a real, authenticated S3 endpoint that fsspec/s3fs can use."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys

import fsspec

from s3_server import S3Server


def _prefix() -> str:
    return f"test-s3-server/{secrets.token_hex(4)}"


def test_write_read_and_list(s3_server: S3Server):
    options = s3_server.storage_options()
    url = s3_server.url(f"{_prefix()}/hello.txt")
    with fsspec.open(url, "wb", **options) as f:
        f.write(b"hello s3")
    with fsspec.open(url, "rb", **options) as f:
        assert f.read() == b"hello s3"

    fs, path = fsspec.core.url_to_fs(url, **options)
    folder = path.rsplit("/", 1)[0]
    assert fs.ls(folder, detail=False, refresh=True) == [path]
    assert fs.info(path)["size"] == 8


def test_multipart_write_round_trips(s3_server: S3Server):
    data = os.urandom(12 * 2**20 + 123)
    url = s3_server.url(f"{_prefix()}/big.bin")
    fs = s3_server.filesystem()
    with fs.open(url, "wb", block_size=5 * 2**20) as f:
        for start in range(0, len(data), 2**20):  # s3fs uploads a 5 MiB part whenever one is full
            f.write(data[start:start + 2**20])

    info = fs.info(url)
    assert info["size"] == len(data)
    assert "-" in info["ETag"]  # "<md5 of the part md5s>-3": it really went up as a multipart upload
    assert fs.cat_file(url) == data


def test_env_lets_plain_fsspec_reach_the_server(s3_server: S3Server):
    url = s3_server.url(f"{_prefix()}/from-env.txt")
    code = ("import fsspec, sys\n"
            "with fsspec.open(sys.argv[1], 'wb') as f: f.write(b'via env')\n"
            "print(fsspec.open(sys.argv[1], 'rb').open().read().decode())\n")
    done = subprocess.run([sys.executable, "-c", code, url], env={**os.environ, **s3_server.env()},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "via env"
    assert s3_server.filesystem().cat_file(url) == b"via env"
