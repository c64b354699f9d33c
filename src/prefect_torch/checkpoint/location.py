"""Where checkpoint files live: a local folder or an fsspec URL, behind one small interface.

>>> import tempfile
>>> folder = open_location(tempfile.mkdtemp())
>>> record = folder.write("a/b.bin", lambda f: f.write(b"hello"))
>>> record.size, folder.read_bytes("a/b.bin")
(5, b'hello')

Local writes are durable before they count: every file is fsynced, small files are replaced
atomically (temp file + ``os.replace``), and folders are fsynced after their entries change.
On object stores (``s3://``) an object appears whole or not at all when its upload completes,
which gives the same guarantees.

One writer at a time: :meth:`Location.read_tagged` and :meth:`Location.write_if_unchanged` make
replacing a small file a compare-and-swap. Local folders serialise writers with :meth:`Location.lock`
(``flock``); S3 endpoints with conditional writes (``If-Match`` / ``If-None-Match: *`` on
PutObject), which :meth:`FsspecLocation.unenforced` checks once with a probe object.

Paths are relative to the root and checked before use: a path with an empty, ``.`` or ``..``
part, a backslash or NUL, or (on local disks) one that passes through a symbolic link below the
root raises :class:`~prefect_torch.checkpoint.errors.DamagedEntryError`; nothing outside the root
is read, written or removed.

>>> folder.read_bytes("../etc/passwd")
Traceback (most recent call last):
...
prefect_torch.checkpoint.errors.DamagedEntryError: '../etc/passwd' is not a plain relative path inside the checkpoint directory (no empty, '.' or '..' parts, no '\\' or NUL)
"""
from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import threading
import urllib.parse
from typing import IO, Any, Callable, Iterator

from .errors import DamagedEntryError
from .hashing import FileRecord, HashingWriter, sha256_of
from .redact import masked

WriteFn = Callable[[Any], Any]  # called with a writable binary file


class WriteConflict(Exception):
    """A conditional write found the file changed (or created) since it was read."""


def is_url(target: Any) -> bool:
    """True for fsspec URLs such as ``s3://bucket/x`` or ``memory://x`` (not for plain paths)."""
    return isinstance(target, str) and "://" in target and not target.startswith("file://")


def open_location(root: str | os.PathLike, **storage_options: Any) -> "Location":
    """A :class:`LocalLocation` for paths (and ``file://``), an :class:`FsspecLocation` for URLs."""
    text = os.fspath(root)
    if is_url(text):
        return FsspecLocation(text, **storage_options)
    return LocalLocation(text.removeprefix("file://"))


class Location:
    """The operations the store needs; paths are relative to the location's root, with ``/``."""

    #: True where removing a folder makes a writer's next file in it fail (local disks), rather
    #: than land anyway (object stores, whose "folders" are only key prefixes)
    real_folders = False

    root: str

    def url(self, rel: str) -> str:
        return f"{self.root.rstrip('/')}/{rel}" if rel else self.root

    @staticmethod
    def check(rel: str) -> list[str]:
        """The parts of ``rel`` if it is a plain relative path ('' is the root itself)."""
        parts = rel.split("/") if rel else []
        if any(part in ("", ".", "..") or "\\" in part or "\0" in part for part in parts):
            raise DamagedEntryError(f"{rel!r} is not a plain relative path inside the checkpoint directory "
                                    "(no empty, '.' or '..' parts, no '\\' or NUL)")
        return parts

    def write(self, rel: str, write_fn: WriteFn, durable: bool = True) -> FileRecord:
        """Create ``rel`` with ``write_fn(file)`` (on disk before returning when ``durable``)
        and return its size and sha256."""
        raise NotImplementedError

    def write_atomic(self, rel: str, data: bytes) -> None:
        """Replace ``rel`` with ``data`` so readers see the old or the new content, never a mix."""
        raise NotImplementedError

    def read_bytes(self, rel: str) -> bytes:
        raise NotImplementedError

    def read_tagged(self, rel: str) -> tuple[bytes, str | None]:
        """The content of ``rel`` and a tag of that content for :meth:`write_if_unchanged`
        (an S3 ETag; ``None`` where the storage has none). ``FileNotFoundError`` if absent."""
        return self.read_bytes(rel), None

    def write_if_unchanged(self, rel: str, data: bytes, tag: str | None) -> None:
        """Replace ``rel`` with ``data`` if it still holds what :meth:`read_tagged` tagged ``tag``
        (``tag`` ``None``: only if ``rel`` does not exist), else :class:`WriteConflict`.

        Where :meth:`unenforced` says so, the condition is not checked: a plain atomic replace
        (local folders serialise writers with :meth:`lock` instead).
        """
        self.write_atomic(rel, data)

    def unenforced(self) -> str | None:
        """``None`` when writers are serialised (lock or conditional writes); else why not,
        naming the storage (never its credentials)."""
        return None

    def open_read(self, rel: str) -> IO[bytes]:
        raise NotImplementedError

    def source(self, rel: str) -> Any:
        """What ``torch.load``/``json.load`` should read: a path here, or an open file."""
        return self.open_read(rel)

    def signed_url(self, rel: str, expires: int) -> str | None:
        """A link that downloads ``rel`` for ``expires`` seconds with no other credentials (an
        S3 presigned URL); ``None`` where the storage has no such links (local folders)."""
        return None

    def hash(self, rel: str) -> FileRecord:
        with self.open_read(rel) as f:
            return sha256_of(f)

    def exists(self, rel: str) -> bool:
        raise NotImplementedError

    def listdir(self, rel: str) -> list[str]:
        """Names (not paths) in folder ``rel``; empty when it does not exist."""
        raise NotImplementedError

    def publish(self, src: str, dst: str) -> None:
        """Make ``dst`` hold the content of ``src``, replacing ``dst`` in one step."""
        raise NotImplementedError

    def remove_tree(self, rel: str) -> None:
        raise NotImplementedError

    def remove_file(self, rel: str) -> None:
        """Remove file ``rel`` if it exists."""
        raise NotImplementedError

    def makedirs(self, rel: str = "") -> None:
        """Create folder ``rel`` (no-op on object stores, which have no folders)."""

    def size(self, rel: str) -> int:
        """Bytes in file ``rel``."""
        raise NotImplementedError

    def free_bytes(self) -> int | None:
        """Bytes free for this location on its device; ``None`` where that cannot be known."""
        return None

    @contextlib.contextmanager
    def lock(self, rel: str) -> Iterator[None]:
        """Exclusive among processes of this machine where the file system allows; else a no-op."""
        yield


class LocalLocation(Location):
    """A folder on a local (or mounted) file system."""

    real_folders = True

    def __init__(self, root: str):
        self.root = root or "."

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"

    def path(self, rel: str) -> str:
        """The local path of ``rel``; every folder on the way below the root must be a real folder."""
        parts = self.check(rel)
        for depth in range(1, len(parts)):
            if os.path.islink(os.path.join(self.root, *parts[:depth])):
                self._refuse_link("/".join(parts[:depth]))
        return os.path.join(self.root, *parts)

    def _refuse_link(self, rel: str) -> None:
        raise DamagedEntryError(f"{self.url(rel)} is a symbolic link: links inside a checkpoint directory are "
                                "not followed (they may lead outside it). Replace it with the real folder or "
                                "file, or use another directory.")

    def _target(self, rel: str) -> str:
        """The path of ``rel`` to read or list: itself not a symbolic link either."""
        path = self.path(rel)
        if os.path.islink(path):
            self._refuse_link(rel)
        return path

    def _own(self, rel: str) -> str:
        """The path of ``rel`` to create or replace: a symbolic link there is removed, not followed."""
        path = self.path(rel)
        if os.path.islink(path):
            os.remove(path)
        return path

    def write(self, rel: str, write_fn: WriteFn, durable: bool = True) -> FileRecord:
        path = self._own(rel)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as raw, HashingWriter(raw, _Writeback(raw) if durable else None) as f:
            write_fn(f)
            f.flush()
            if durable:
                os.fsync(raw.fileno())
            return f.record()

    def write_atomic(self, rel: str, data: bytes) -> None:
        with replacing(self.path(rel)) as tmp, open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def read_bytes(self, rel: str) -> bytes:
        with open(self._target(rel), "rb") as f:
            return f.read()

    def open_read(self, rel: str) -> IO[bytes]:
        return open(self._target(rel), "rb")

    def source(self, rel: str) -> str:
        return self._target(rel)

    def exists(self, rel: str) -> bool:
        return os.path.lexists(self.path(rel))

    def listdir(self, rel: str) -> list[str]:
        try:
            return sorted(os.listdir(self._target(rel)))
        except FileNotFoundError:
            return []

    def publish(self, src: str, dst: str) -> None:
        """Copy ``src`` over ``dst`` atomically (an in-kernel copy; not a hard link, which a
        program rewriting ``dst`` in place, as skorch does, would turn into a damaged version)."""
        source = self._target(src)
        with replacing(self.path(dst), durable=False) as tmp:
            shutil.copyfile(source, tmp)

    def remove_tree(self, rel: str) -> None:
        """Remove folder ``rel`` and what it holds; a symbolic link is removed itself, never followed."""
        path = self.path(rel)
        if os.path.islink(path):
            os.remove(path)
        else:
            shutil.rmtree(path, ignore_errors=True)

    def remove_file(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path(rel))

    def makedirs(self, rel: str = "") -> None:
        os.makedirs(self.path(rel), exist_ok=True)

    def size(self, rel: str) -> int:
        return os.path.getsize(self.path(rel))

    def free_bytes(self) -> int | None:
        path = os.path.abspath(self.root)
        while not os.path.exists(path) and os.path.dirname(path) != path:
            path = os.path.dirname(path)  # the folder may not exist yet: ask its nearest parent
        try:
            stat = os.statvfs(path)
        except (OSError, AttributeError):  # AttributeError: no statvfs on Windows
            return None
        return stat.f_bavail * stat.f_frsize

    def fsync(self, rel: str = "") -> None:
        fsync_dir(self.path(rel))

    def unenforced(self) -> str | None:
        try:
            import fcntl  # noqa: F401
        except ImportError:  # pragma: no cover - Windows
            return f"{self.root}: this platform has no file locks (fcntl)"
        return None

    @contextlib.contextmanager
    def lock(self, rel: str) -> Iterator[None]:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: commits rely on the generation check
            yield
            return
        path = self._own(rel)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class FsspecLocation(Location):
    """A prefix on any fsspec file system (``s3://``, ``gs://``, ``memory://``...).

    Credentials and endpoints come from ``storage_options`` or fsspec's usual configuration
    (for S3: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``).
    """

    def __init__(self, root: str, **storage_options: Any):
        import fsspec
        from fsspec.implementations.memory import MemoryFileSystem

        self.root = root.rstrip("/")
        self.fs, self._base = fsspec.core.url_to_fs(self.root, **storage_options)
        self._probed: tuple[str | None] | None = None
        # a file system no other process sees (memory://): a lock in this process serialises writers
        self._process_local = type(self.fs) is MemoryFileSystem
        self._shown_options = masked(storage_options)

    def __repr__(self) -> str:
        """The URL and the storage options, credentials masked (reprs end up in logs)."""
        options = "".join(f", {k}={v!r}" for k, v in self._shown_options.items())
        return f"{type(self).__name__}({self.root!r}{options})"

    def _full(self, rel: str) -> str:
        return f"{self._base}/{'/'.join(self.check(rel))}" if rel else self._base

    def write(self, rel: str, write_fn: WriteFn, durable: bool = True) -> FileRecord:
        with self.fs.open(self._full(rel), "wb") as raw, HashingWriter(raw) as f:
            write_fn(f)
            return f.record()

    def write_atomic(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(self._full(rel), data)

    def read_bytes(self, rel: str) -> bytes:
        return self.fs.cat_file(self._full(rel))

    def _is_s3(self) -> bool:
        protocols = self.fs.protocol if isinstance(self.fs.protocol, (tuple, list)) else (self.fs.protocol,)
        return "s3" in protocols and hasattr(self.fs, "_call_s3")

    def read_tagged(self, rel: str) -> tuple[bytes, str | None]:
        if not self._is_s3():
            return self.read_bytes(rel), None
        from fsspec.asyn import sync

        return sync(self.fs.loop, _s3_get_tagged, self.fs, self._full(rel))

    def write_if_unchanged(self, rel: str, data: bytes, tag: str | None) -> None:
        if self._process_local or self.unenforced() is not None:  # the lock serialises, or nothing can
            self.write_atomic(rel, data)
            return
        condition = {"mode": "create"} if tag is None else {"IfMatch": tag}
        try:
            self.fs.pipe_file(self._full(rel), data, **condition)
        except OSError as error:
            if _precondition_failed(error):
                raise WriteConflict(f"{self.url(rel)} changed since it was read") from error
            raise

    def unenforced(self) -> str | None:
        """Whether this storage refuses a write whose condition fails, checked once with a
        probe object beside the files (removed again); ``None`` if it does."""
        if self._process_local:
            return None
        if self._probed is None:
            self._probed = (self._probe(),)
        return self._probed[0]

    def _probe(self) -> str | None:
        if not self._is_s3():
            return f"its fsspec file system ({self.fs.protocol!r}) has no conditional writes"
        rel = f".prefect-torch-probe-{secrets.token_hex(4)}"
        path = self._full(rel)
        try:
            self.fs.pipe_file(path, b"1")
            _, tag = self.read_tagged(rel)
            for condition in ({"mode": "create"}, {"IfMatch": '"%s"' % ("0" * 32)}):
                try:
                    self.fs.pipe_file(path, b"2", **condition)
                except OSError as error:
                    if _precondition_failed(error):
                        continue
                    return f"{self.endpoint()} refused a conditional write ({type(error).__name__}: {error})"
                return (f"{self.endpoint()} ignores conditional writes (S3 PutObject with "
                        f"{'If-None-Match: *' if 'mode' in condition else 'If-Match'} replaced an object)")
            if tag is None:
                return f"{self.endpoint()} gives no ETag"
            try:
                self.fs.pipe_file(path, b"3", IfMatch=tag)
            except OSError as error:
                return f"{self.endpoint()} refused a write with a matching If-Match ({type(error).__name__})"
            return None
        finally:
            self.remove_file(rel)

    @contextlib.contextmanager
    def lock(self, rel: str) -> Iterator[None]:
        if not self._process_local:
            yield  # object stores: conditional writes instead (see write_if_unchanged)
            return
        with _PROCESS_LOCKS_GUARD:
            lock = _PROCESS_LOCKS.setdefault(self._full(rel), threading.RLock())
        with lock:
            yield

    def endpoint(self) -> str:
        """Which server holds this location, e.g. ``S3 endpoint http://host:9000``; no credentials."""
        if not self._is_s3():
            return f"fsspec file system {self.fs.protocol!r}"
        client = getattr(self.fs, "_s3", None)
        url = getattr(getattr(client, "meta", None), "endpoint_url", None) or self.fs.endpoint_url \
            or (self.fs.client_kwargs or {}).get("endpoint_url") or "AWS"
        parts = urllib.parse.urlsplit(str(url))
        if parts.hostname and (parts.username or parts.password):  # never a secret in a message
            port = f":{parts.port}" if parts.port else ""
            url = urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.hostname}{port}"))
        return f"S3 endpoint {url}"

    def open_read(self, rel: str) -> IO[bytes]:
        return io.BytesIO(self.read_bytes(rel))

    def signed_url(self, rel: str, expires: int) -> str | None:
        """S3's presigned GET URL (signature version 4: the signature, the access key id and
        the expiry are query parameters, never the secret key); ``None`` on other file systems."""
        if not self._is_s3():
            return None
        fs = self.fs
        config = dict(getattr(fs, "config_kwargs", None) or {})
        if "signature_version" not in config:  # botocore may presign with the retired version 2
            options = {**getattr(fs, "storage_options", {}), "config_kwargs": {**config, "signature_version": "s3v4"}}
            fs = type(fs)(**options)
        return str(fs.sign(self._full(rel), expiration=expires))

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self._full(rel)))

    def listdir(self, rel: str) -> list[str]:
        try:
            entries = self.fs.ls(self._full(rel), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries)

    def publish(self, src: str, dst: str) -> None:
        self.fs.copy(self._full(src), self._full(dst))

    def remove_tree(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._full(rel), recursive=True)

    def remove_file(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._full(rel))

    def size(self, rel: str) -> int:
        return int(self.fs.size(self._full(rel)))


_PROCESS_LOCKS: dict[str, threading.RLock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


async def _s3_get_tagged(fs: Any, path: str) -> tuple[bytes, str | None]:
    """An object's bytes and its ETag, from one GET (so they belong together)."""
    bucket, key, version_id = fs.split_path(path)
    response = await fs._call_s3("get_object", Bucket=bucket, Key=key,
                                 **({"VersionId": version_id} if version_id else {}))
    try:
        return await response["Body"].read(), response.get("ETag")
    finally:
        response["Body"].close()


def _precondition_failed(error: BaseException) -> bool:
    """True when an S3 write was refused because its ``If-Match``/``If-None-Match`` failed
    (412), or a concurrent conditional write won (409 ``ConditionalRequestConflict``)."""
    if isinstance(error, FileExistsError):
        return True
    response = getattr(error.__cause__, "response", None) or {}
    code = (response.get("Error") or {}).get("Code")
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412


class _Writeback:
    """Asks the kernel to start writing a file's new bytes to disk every few MB while the file
    is still being written (Linux ``sync_file_range``), so the final fsync has little left to do.
    A no-op where the call does not exist."""

    EVERY = 16 << 20
    _call: Any = None

    def __init__(self, raw: Any):
        self.raw = raw
        self.started = 0
        if _Writeback._call is None:
            _Writeback._call = _find_sync_file_range() or False

    def __call__(self, written: int) -> None:
        if not self._call or written - self.started < self.EVERY:
            return
        self.raw.flush()
        self._call(self.raw.fileno(), self.started, written - self.started, 2)  # SYNC_FILE_RANGE_WRITE
        self.started = written


def _find_sync_file_range() -> Any:
    try:
        import ctypes

        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    return call


@contextlib.contextmanager
def replacing(path: str, durable: bool = True) -> Iterator[str]:
    """A temporary path beside ``path``, renamed over it when the block succeeds (removed if not);
    with ``durable``, the folder is fsynced after the rename."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{secrets.token_hex(4)}")
    try:
        yield tmp
        os.replace(tmp, path)
        if durable:
            fsync_dir(folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def fsync_dir(path: str) -> None:
    """Persist a folder's entries (new, renamed or removed files); a no-op where unsupported."""
    with contextlib.suppress(OSError):
        fd = os.open(path or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
