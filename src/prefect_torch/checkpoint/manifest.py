"""The manifest: the committed versions of a checkpoint directory and its ``current``/``best`` pointers.

>>> m = Manifest(prefix="")
>>> v = m.add(Version(id=0, epoch=3, folder="versions/epoch-000003-ab12cd", files={}), best=True)
>>> m2 = Manifest.from_json(m.to_json())
>>> m2.current, m2.best, m2.version(m2.current).epoch
(1, 1, 3)

It is JSON, small, and replaced atomically: a version exists once the manifest names it.
Everything read back is untrusted: :meth:`Manifest.from_json` and :meth:`Version.from_dict`
are the one validating parser (types, ranges, references, and every path in the exact shape the
store writes), and raise :class:`~prefect_torch.checkpoint.errors.DamagedEntryError` naming
the entry and its value:

>>> Manifest.from_json(m.to_json().replace(b"versions/epoch-000003-ab12cd", b"../victim"))
Traceback (most recent call last):
...
prefect_torch.checkpoint.errors.DamagedEntryError: versions[0].folder must be 'versions/epoch-<epoch, 6+ digits>-<6 hex digits>' (the shape the store writes), not '../victim'
"""
from __future__ import annotations

import json
import os
import platform
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import DamagedEntryError

FORMAT = "prefect-torch-checkpoints/1"
VERSIONS = "versions"  # the folder holding one sub-folder per version
VERSION_INFO = "version.json"  # a version's own record, inside its folder
MANIFEST_SUFFIX = "manifest.json"  # a series' manifest is <prefix>manifest.json

_MAX_INT = 2**63 - 1
_MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59 UTC, the last second a datetime can show
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILE_KEY = re.compile(r"f_[A-Za-z_][A-Za-z0-9_]*")
_FOLDER = r"epoch-(\d{6,19})-[0-9a-f]{6}"  # 19 digits hold any epoch up to 2**63-1
_SEPARATORS = ("/", "\\", "\0")
# fields of a writer record or a claim that other code compares: their types, when present
_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "session": (str,), "host": (str,), "pid": (int,), "started": (int, float), "epoch": (int,),
    "finished": (int, float, type(None)), "experiment": (str,), "flow_run_id": (str,),
    "flow_run_name": (str,), "run_count": (int,),
}


# -- the rules for names and paths -----------------------------------------------------------
def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def _damage(where: str, rule: str, value: Any) -> DamagedEntryError:
    return DamagedEntryError(f"{where} must be {rule}, not {_show(value)}")


def check_prefix(prefix: Any, where: str = "prefix") -> str:
    """``prefix`` if it can start a file name (a string without separators or NUL)."""
    if not isinstance(prefix, str) or any(sep in prefix for sep in _SEPARATORS):
        raise _damage(where, "a string without '/', '\\' or NUL (it starts file names)", prefix)
    return prefix


def check_plain_name(name: Any, where: str = "name") -> str:
    """``name`` if it is one plain file name: not empty, not ``.``/``..``, no separator or NUL.

    >>> check_plain_name("params.pt")
    'params.pt'
    >>> check_plain_name("../victim.txt", "files")
    Traceback (most recent call last):
    ...
    prefect_torch.checkpoint.errors.DamagedEntryError: files must be a plain file name (no '/', '\\', NUL, '.' or '..'), not '../victim.txt'
    """
    if (not isinstance(name, str) or name in ("", ".", "..") or any(sep in name for sep in _SEPARATORS)
            or len(name.encode("utf-8", "surrogatepass")) > 255):
        raise _damage(where, "a plain file name (no '/', '\\', NUL, '.' or '..')", name)
    return name


def check_file_name(name: Any, where: str = "file name") -> str:
    """``name`` if it may be a file of a version, and so a plain file at the directory's root:
    a plain name, not hidden, and none of the store's own names (``versions``, ``version.json``,
    ``*manifest.json``).

    >>> check_file_name("train_end_params.pt")
    'train_end_params.pt'
    """
    check_plain_name(name, where)
    if name.startswith(".") or name in (VERSIONS, VERSION_INFO) or name.endswith(MANIFEST_SUFFIX):
        raise _damage(where, f"a file name that is not hidden and not one of the store's own names "
                             f"({VERSIONS!r}, {VERSION_INFO!r}, '*{MANIFEST_SUFFIX}')", name)
    return name


def folder_name(prefix: str, epoch: int, token: str) -> str:
    """The folder (relative to the directory) of a new version: ``versions/<prefix>epoch-<n>-<token>``."""
    return f"{VERSIONS}/{prefix}epoch-{epoch:06d}-{token}"


def is_version_folder(name: str, prefix: str) -> bool:
    """True if ``name`` (an entry of ``versions/``) has the shape of a version folder of ``prefix``.

    >>> is_version_folder("epoch-000003-ab12cd", ""), is_version_folder("train_end_epoch-000003-ab12cd", "")
    (True, False)
    """
    match = re.fullmatch(re.escape(prefix) + _FOLDER, name)
    return match is not None and f"{int(match[1]):06d}" == match[1]


def check_folder(folder: Any, prefix: str | None, epoch: int, where: str = "folder") -> str:
    """``folder`` if it is exactly ``versions/<prefix>epoch-<epoch>-<6 hex>``, as the store writes it
    (any prefix when ``prefix`` is None)."""
    shown = "<prefix>" if prefix is None else prefix
    rule = f"'{VERSIONS}/{shown}epoch-<epoch, 6+ digits>-<6 hex digits>' (the shape the store writes)"
    if not isinstance(folder, str) or not folder.startswith(f"{VERSIONS}/"):
        raise _damage(where, rule, folder)
    name = folder[len(VERSIONS) + 1:]
    if prefix is None:
        match = re.fullmatch("(.*)" + _FOLDER, name, re.DOTALL)
        prefix = match[1] if match else ""
    if not is_version_folder(name, prefix) or any(sep in prefix for sep in _SEPARATORS):
        raise _damage(where, rule, folder)
    if folder != folder_name(prefix, epoch, folder[-6:]):
        raise _damage(where, f"the folder of epoch {epoch} ('{folder_name(prefix, epoch, '<6 hex digits>')}')",
                      folder)
    return folder


def _check_int(value: Any, where: str, low: int = 0) -> int:
    if type(value) is not int or not low <= value <= _MAX_INT:
        raise _damage(where, f"an integer from {low} to 2**63-1", value)
    return value


def _check_dict(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise _damage(where, "a JSON object", value)
    return value


def _check_record(record: Any, where: str) -> dict[str, Any]:
    """A writer record or a claim: a JSON object whose known fields have their types."""
    _check_dict(record, where)
    for key, types in _RECORD_TYPES.items():
        value = record.get(key)
        if key in record and (not isinstance(value, types) or isinstance(value, bool)):
            raise _damage(f"{where}[{key!r}]", " or ".join(t.__name__ for t in types), value)
    return record


def _check_metric(value: Any, where: str) -> Any:
    if value is not None and not isinstance(value, (bool, int, float, str)):
        raise _damage(where, "a number, a string, a bool or null", value)
    return value


def _check_time(value: Any, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= _MAX_TIME:  # NaN fails too
        raise _damage(where, "a time in seconds since 1970 (a finite number from 0 to year 9999)", value)
    return float(value)


@dataclass
class FileEntry:
    """One file of a version: the ``f_*`` argument it came from, its size and sha256."""

    key: str
    size: int
    sha256: str


@dataclass
class Version:
    """One committed checkpoint: its files live under ``folder`` (relative to the directory)."""

    id: int
    epoch: int
    folder: str
    files: dict[str, FileEntry]
    metrics: dict[str, Any] = field(default_factory=dict)
    time: float = 0.0
    writer: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(entry.size for entry in self.files.values())

    def name_of(self, key: str) -> str | None:
        """The file name stored for ``f_*`` argument ``key`` (e.g. ``'params.pt'``)."""
        for name, entry in self.files.items():
            if entry.key == key:
                return name
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, prefix: str | None = None, where: str = "version") -> "Version":
        """Parse and validate a version record (from a manifest or a ``version.json``).

        ``prefix`` is the series' ``fn_prefix`` that the folder name must start with (any when
        ``None``). :class:`DamagedEntryError` names the entry (``where`` and the field) and its value.
        """
        _check_dict(data, where)
        for name in ("id", "epoch", "folder", "files", "metrics", "time", "writer"):
            if name not in data:
                raise DamagedEntryError(f"{where} has no {name!r} field")
        epoch = _check_int(data["epoch"], f"{where}.epoch")
        folder = check_folder(data["folder"], prefix, epoch, f"{where}.folder")
        files: dict[str, FileEntry] = {}
        for name, entry in _check_dict(data["files"], f"{where}.files").items():
            at = f"{where}.files[{name!r}]"
            check_file_name(name, f"{where}.files name")
            _check_dict(entry, at)
            key = entry.get("key")
            if not isinstance(key, str) or not _FILE_KEY.fullmatch(key):
                raise _damage(f"{at}.key", "an f_* argument name such as 'f_params'", key)
            if any(other.key == key for other in files.values()):
                raise _damage(f"{at}.key", "different from the other files' keys", key)
            sha256 = entry.get("sha256")
            if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
                raise _damage(f"{at}.sha256", "64 lowercase hex digits", sha256)
            files[name] = FileEntry(key, _check_int(entry.get("size"), f"{at}.size"), sha256)
        metrics = {name: _check_metric(value, f"{where}.metrics[{name!r}]")
                   for name, value in _check_dict(data["metrics"], f"{where}.metrics").items()}
        return cls(id=_check_int(data["id"], f"{where}.id"), epoch=epoch, folder=folder, files=files,
                   metrics=metrics, time=_check_time(data["time"], f"{where}.time"),
                   writer=_check_record(data["writer"], f"{where}.writer"))


@dataclass
class Manifest:
    """All versions of one checkpoint series (one ``fn_prefix``) in a directory."""

    prefix: str
    versions: list[Version] = field(default_factory=list)
    current: int | None = None
    best: int | None = None
    next_id: int = 1
    generation: int = 0
    writer: dict[str, Any] = field(default_factory=dict)
    claims: list[dict[str, Any]] = field(default_factory=list)

    def version(self, version_id: int | None) -> Version | None:
        for version in self.versions:
            if version.id == version_id:
                return version
        return None

    def add(self, version: Version, best: bool) -> Version:
        """Append ``version`` under the next id and make it current (and best if ``best``)."""
        version.id = self.next_id
        self.next_id += 1
        self.versions.append(version)
        self.current = version.id
        if best or self.best is None:
            self.best = version.id
        return version

    def retain(self, keep_last: int | None) -> list[Version]:
        """Drop all but the newest ``keep_last`` versions, current and best; return the dropped."""
        if keep_last is None:
            return []
        newest = {v.id for v in sorted(self.versions, key=lambda v: v.id)[-keep_last:]} if keep_last else set()
        keep = newest | {self.current, self.best}
        dropped = [v for v in self.versions if v.id not in keep]
        self.versions = [v for v in self.versions if v.id in keep]
        return dropped

    @property
    def current_epoch(self) -> int:
        """The epoch of the current version (0 when nothing was committed)."""
        current = self.version(self.current)
        return current.epoch if current else 0

    def newest_first(self) -> list[Version]:
        """Versions to try when loading: current first, then the others newest first."""
        ordered = sorted(self.versions, key=lambda v: v.id, reverse=True)
        return sorted(ordered, key=lambda v: v.id != self.current)

    def to_json(self) -> bytes:
        data = {
            "format": FORMAT,
            "prefix": self.prefix,
            "current": self.current,
            "best": self.best,
            "next_id": self.next_id,
            "generation": self.generation,
            "writer": self.writer,
            "claims": self.claims,
            "versions": [v.to_dict() for v in self.versions],
        }
        return json.dumps(data, indent=1, allow_nan=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, prefix: str | None = None) -> "Manifest":
        """Parse and validate a manifest; :class:`DamagedEntryError` names what is wrong.

        ``prefix``, when given, is the series the manifest must belong to.
        """
        data = parse_json(raw, "the manifest")
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DamagedEntryError(f"the manifest is not a prefect-torch manifest (expected a JSON object "
                                    f"with format {FORMAT!r}, found {_show(data)[:60]})")
        for name in ("prefix", "versions", "current", "best", "next_id", "generation"):
            if name not in data:
                raise DamagedEntryError(f"the manifest has no {name!r} field")
        found_prefix = check_prefix(data["prefix"])
        if prefix is not None and found_prefix != prefix:
            raise _damage("prefix", f"{prefix!r} (the series read)", found_prefix)
        if not isinstance(data["versions"], list):
            raise _damage("versions", "a JSON list", data["versions"])
        versions = [Version.from_dict(v, found_prefix, f"versions[{i}]") for i, v in enumerate(data["versions"])]
        seen_ids: set[int] = set()
        seen_folders: set[str] = set()
        for i, version in enumerate(versions):
            if version.id in seen_ids or version.folder in seen_folders:
                raise _damage(f"versions[{i}]", "a version with its own id and folder",
                              f"id {version.id}, folder {version.folder}")
            seen_ids.add(version.id)
            seen_folders.add(version.folder)
        next_id = _check_int(data["next_id"], "next_id")
        if next_id <= max(seen_ids, default=0):
            raise _damage("next_id", f"greater than every version id ({max(seen_ids)})", next_id)
        pointers = {}
        for name in ("current", "best"):
            value = data[name]
            if value is not None and (type(value) is not int or value not in seen_ids):
                raise _damage(name, f"null or the id of a version listed (ids {sorted(seen_ids)})", value)
            pointers[name] = value
        claims = data.get("claims", [])
        if not isinstance(claims, list):
            raise _damage("claims", "a JSON list", claims)
        return cls(
            prefix=found_prefix,
            versions=versions,
            current=pointers["current"],
            best=pointers["best"],
            next_id=next_id,
            generation=_check_int(data["generation"], "generation"),
            writer=_check_record(data.get("writer", {}), "writer"),
            claims=[_check_record(claim, f"claims[{i}]") for i, claim in enumerate(claims)],
        )


def parse_json(raw: bytes, what: str) -> Any:
    """``raw`` as JSON; :class:`DamagedEntryError` if it is not (empty, truncated, not UTF-8...)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as error:
        detail = "it is empty" if not raw.strip() else f"{type(error).__name__}: {error}"
        raise DamagedEntryError(f"{what} is not valid JSON ({detail})") from None


def writer_identity(label: dict[str, Any] | None = None) -> dict[str, Any]:
    """Who writes: a fresh session id, host, pid and start time, plus ``label`` (e.g. a run id).

    ``label``'s known fields (``run_count``, ``flow_run_id``...) must have the types readers check.
    """
    return _check_record({
        "session": uuid.uuid4().hex,
        "host": platform.node(),
        "pid": os.getpid(),
        "started": time.time(),
        **(label or {}),
    }, "writer label")
