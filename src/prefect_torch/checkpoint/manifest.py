"""The manifest: the committed versions of a checkpoint directory and its ``current``/``best`` pointers.

>>> m = Manifest(prefix="")
>>> v = m.add(Version(id=0, epoch=3, folder="versions/epoch-000003-ab12cd", files={}), best=True)
>>> m2 = Manifest.from_json(m.to_json())
>>> m2.current, m2.best, m2.version(m2.current).epoch
(1, 1, 3)

It is JSON, small, and replaced atomically: a version exists once the manifest names it.
"""
from __future__ import annotations

import json
import os
import platform
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT = "prefect-torch-checkpoints/1"


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
    def from_dict(cls, data: dict[str, Any]) -> "Version":
        files = {name: FileEntry(**entry) for name, entry in data["files"].items()}
        return cls(**{**data, "files": files})


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
    def from_json(cls, raw: bytes) -> "Manifest":
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a prefect-torch manifest (expected format {FORMAT!r})")
        return cls(
            prefix=data["prefix"],
            versions=[Version.from_dict(v) for v in data["versions"]],
            current=data["current"],
            best=data["best"],
            next_id=data["next_id"],
            generation=data["generation"],
            writer=data.get("writer", {}),
            claims=data.get("claims", []),
        )


def writer_identity(label: dict[str, Any] | None = None) -> dict[str, Any]:
    """Who writes: a fresh session id, host, pid and start time, plus ``label`` (e.g. a run id)."""
    return {
        "session": uuid.uuid4().hex,
        "host": platform.node(),
        "pid": os.getpid(),
        "started": time.time(),
        **(label or {}),
    }
