"""A crash-safe, versioned checkpoint directory.

>>> import tempfile, torch
>>> store = CheckpointStore(tempfile.mkdtemp())
>>> save = lambda obj: (lambda f: torch.save(obj, f))
>>> v = store.commit([PendingFile("params.pt", "f_params", save({"w": torch.ones(2)}))], epoch=1)
>>> sorted(store.location.listdir(""))
['manifest.json', 'params.pt', 'versions']
>>> store.latest_verified().epoch
1

A commit writes the files under a fresh folder ``versions/<prefix>epoch-<n>-<token>/``,
fsyncs them, then atomically replaces ``<prefix>manifest.json``, which names the committed
versions with their sizes and sha256, and the ``current`` and ``best`` ones. The plain files
(``params.pt``...) at the directory's root are then pointed at the new version, so skorch and
``load_params(f_params=...)`` read them directly. A kill at any instant leaves the previous
manifest, or the new one, never a mix; loading verifies hashes and falls back to the newest
intact version with a :class:`CheckpointFallbackWarning`.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
import warnings
from typing import Any, Callable, NamedTuple, Sequence

from .background import BackgroundCommitter
from .errors import (
    CheckpointConflictError,
    CheckpointCorruptError,
    CheckpointFallbackWarning,
    CheckpointSaveWarning,
)
from .hashing import FileRecord
from .location import Location, WriteFn, open_location
from .manifest import FileEntry, Manifest, Version, writer_identity

VERSIONS = "versions"
VERSION_INFO = "version.json"
KEPT_CLAIMS = 20


class PendingFile(NamedTuple):
    """A file to commit: its name, the ``f_*`` argument it belongs to, and how to write it."""

    name: str
    key: str
    write: WriteFn


CommitPause = Callable[[str], None]
_commit_pause: CommitPause | None = None


def set_commit_pause(pause: CommitPause | None) -> CommitPause | None:
    """Install ``pause(stage)``, called inside every commit of this process after each file
    (``"file"``), before and after the manifest replace (``"before-manifest"``,
    ``"after-manifest"``): fault-injection tests slow commits down or stop in them there.
    ``None`` removes it (the default: commits call nothing). Returns the previous one.

    >>> stages = []
    >>> previous = set_commit_pause(stages.append)
    >>> import tempfile, torch
    >>> _ = CheckpointStore(tempfile.mkdtemp()).commit(
    ...     [PendingFile("params.pt", "f_params", lambda f: torch.save({}, f))], epoch=1)
    >>> stages, set_commit_pause(previous) is not None
    (['file', 'before-manifest', 'after-manifest'], True)
    """
    global _commit_pause
    previous, _commit_pause = _commit_pause, pause
    return previous


def _test_pause(stage: str) -> None:
    """The installed commit pause, if any (see :func:`set_commit_pause`)."""
    if _commit_pause is not None:
        _commit_pause(stage)


class CheckpointStore:
    """The versions of one checkpoint series (one ``prefix``) in a directory or URL.

    ``keep_last`` keeps only the newest N versions (plus the current and the best) after each
    commit; ``None`` keeps all. ``writer`` labels the versions this process commits (e.g. a
    flow-run id and attempt).
    """

    def __init__(self, directory: str | os.PathLike, prefix: str = "", keep_last: int | None = None,
                 writer: dict[str, Any] | None = None, finish_in_background: bool = False,
                 **storage_options: Any):
        if keep_last is not None and keep_last < 1:
            raise ValueError(f"keep_last={keep_last!r}: keep at least 1 version, or None to keep all")
        self.location: Location = open_location(directory, **storage_options)
        self.prefix = prefix
        self.keep_last = keep_last
        self.writer = writer_identity(writer)
        self.manifest_name = f"{prefix}manifest.json"
        self._lock_name = f"{VERSIONS}/.{prefix}commit.lock"
        self._folder_pattern = re.compile(rf"^{re.escape(prefix)}epoch-\d+-[0-9a-f]+$")
        self._seen_generation: int | None = None
        self._seen_current: int | None = None
        self._claimed = False
        self._published_marker = f"{VERSIONS}/.{prefix}published"
        self.finish_in_background = finish_in_background
        self._finisher: BackgroundCommitter | None = BackgroundCommitter() if finish_in_background else None

    @property
    def url(self) -> str:
        return self.location.root

    # -- reading -------------------------------------------------------------------------
    def read_manifest(self, _exclude: str | None = None) -> Manifest | None:
        """The committed manifest, ``None`` if nothing was committed yet.

        A damaged manifest is rebuilt from the version folders (with a warning), leaving out
        ``_exclude`` (the folder a commit in progress just wrote).
        """
        try:
            raw = self.location.read_bytes(self.manifest_name)
        except FileNotFoundError:
            return None
        try:
            return Manifest.from_json(raw)
        except (ValueError, KeyError, TypeError) as error:
            warnings.warn(
                f"{self.location.url(self.manifest_name)} is damaged ({error}); rebuilding the list of "
                "versions from the version folders", CheckpointFallbackWarning, stacklevel=2,
            )
            return self._rebuild_manifest(_exclude)

    def _rebuild_manifest(self, exclude: str | None) -> Manifest:
        # a repair by this writer is not another writer's commit: keep the generation it knows
        manifest = Manifest(prefix=self.prefix, generation=self._seen_generation or 0)
        found = []
        for folder in self._own_folders():
            if f"{VERSIONS}/{folder}" == exclude:
                continue
            try:
                found.append(Version.from_dict(json.loads(
                    self.location.read_bytes(f"{VERSIONS}/{folder}/{VERSION_INFO}"))))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # never finished: no version.json
        for version in sorted(found, key=lambda v: (v.epoch, v.time)):
            manifest.add(version, best=False)
        return manifest

    def _own_folders(self) -> list[str]:
        return [name for name in self.location.listdir(VERSIONS) if self._folder_pattern.match(name)]

    def has_checkpoint(self) -> bool:
        """True once a version was committed here."""
        manifest = self.read_manifest()
        return bool(manifest and manifest.versions)

    def problems(self, version: Version) -> list[str]:
        """What is wrong with ``version``'s files (missing, truncated, hash differs); empty if intact."""
        found = []
        for name, entry in version.files.items():
            rel = f"{version.folder}/{name}"
            try:
                record = self.location.hash(rel)
            except FileNotFoundError:
                found.append(f"{name} is missing")
                continue
            if record.size != entry.size:
                found.append(f"{name} has {record.size} bytes, {entry.size} were committed")
            elif record.sha256 != entry.sha256:
                found.append(f"{name} has a different sha256 than committed (the file was changed or damaged)")
        return found

    def latest_verified(self) -> Version | None:
        """The current version if intact, else the newest intact one (with a warning).

        ``None`` when nothing was committed; :class:`CheckpointCorruptError` when no version
        is intact.
        """
        manifest = self.read_manifest()
        if manifest is None or not manifest.versions:
            return None
        damaged: list[str] = []
        for version in manifest.newest_first():
            problems = self.problems(version)
            if not problems:
                if damaged:
                    warnings.warn(
                        f"checkpoint {self.url}: " + "; ".join(damaged)
                        + f". Loading version {version.id} (epoch {version.epoch}) instead.",
                        CheckpointFallbackWarning, stacklevel=2,
                    )
                return version
            damaged.append(f"version {version.id} (epoch {version.epoch}) is damaged: {', '.join(problems)}")
        raise CheckpointCorruptError(
            f"checkpoint {self.url}: no committed version is intact: " + "; ".join(damaged)
            + ". Restore the files from a backup, or start over with an empty directory."
        )

    def source(self, version: Version, name: str) -> Any:
        """What ``torch.load`` or ``json.load`` reads for file ``name`` of ``version``."""
        return self.location.source(f"{version.folder}/{name}")

    def file_url(self, version: Version, name: str) -> str:
        return self.location.url(f"{version.folder}/{name}")

    # -- writing -------------------------------------------------------------------------
    def begin(self) -> None:
        """Start writing: a later commit fails if another writer commits here in between.

        Also finishes what a writer killed inside its last commit left undone: the plain files
        at the root are brought to the current version, temporary files are removed.
        """
        self.wait()
        manifest = self.read_manifest()
        if self._claimed:  # a claim is the baseline: it only holds if nobody came after it
            self._check_no_other_writer(manifest or Manifest(prefix=self.prefix))
        else:
            self._seen_generation = manifest.generation if manifest else 0
            self._seen_current = manifest.current if manifest else None
        if manifest is not None and manifest.current is not None and self._published() != manifest.current:
            with self.location.lock(self._lock_name):
                self._repair_root(manifest)
                self._remove_temp_files(manifest)
                self._mark_published(manifest.current)

    def _published(self) -> int | None:
        """The version whose files the root holds, as recorded after its last complete publish."""
        try:
            return int(self.location.read_bytes(self._published_marker))
        except (OSError, ValueError):
            return None

    def _mark_published(self, version_id: int | None) -> None:
        self.location.write(self._published_marker, lambda f: f.write(str(version_id).encode()), durable=False)

    def _repair_root(self, manifest: Manifest) -> None:
        current = manifest.version(manifest.current)
        if current is None:
            return
        for name, entry in current.files.items():
            expected = FileRecord(entry.size, entry.sha256)
            try:
                if self.location.hash(name) == expected:
                    continue
                if self.location.hash(f"{current.folder}/{name}") != expected:
                    continue  # a damaged version is never published; loading falls back anyway
            except FileNotFoundError:
                continue
            self.location.publish(f"{current.folder}/{name}", name)

    def _remove_temp_files(self, manifest: Manifest) -> None:
        """Temporary files of this series' root files and manifest, left by a killed writer."""
        names = {self.manifest_name} | {name for v in manifest.versions for name in v.files}
        pattern = re.compile(rf"^\.({'|'.join(map(re.escape, sorted(names)))})\.tmp-[0-9a-f]+$")
        for entry in self.location.listdir(""):
            if pattern.match(entry):
                self.location.remove_file(entry)

    def claim(self, label: dict[str, Any], check: Callable[[Manifest], None] | None = None) -> Manifest:
        """Become the one writer of this directory, before training, after :meth:`begin`.

        Under the commit lock: if a version was committed since :meth:`begin` this run would
        continue from stale state, so :class:`CheckpointConflictError`; ``check(manifest)`` may
        refuse by raising (e.g. another live run holds the claim). Then the manifest records
        this writer, labelled with ``label`` (e.g. a flow-run id and attempt), as the claimant
        and its generation goes up, so a writer that claimed or began before stops at its next
        commit. Returns the manifest as it was before the claim.
        """
        self.wait()
        self.writer = writer_identity(label)
        with self.location.lock(self._lock_name):
            manifest = self.read_manifest() or Manifest(prefix=self.prefix)
            if self._seen_generation is not None and manifest.current != self._seen_current:
                self._check_no_other_writer(manifest)
            if check is not None:
                check(manifest)
            before = Manifest.from_json(manifest.to_json())
            manifest.generation += 1
            manifest.writer = self.writer
            claim = {**self.writer, "epoch": manifest.current_epoch, "finished": None}
            manifest.claims = [*manifest.claims, claim][-KEPT_CLAIMS:]
            self.location.write_atomic(self.manifest_name, manifest.to_json())
            self._seen_generation, self._seen_current, self._claimed = manifest.generation, manifest.current, True
        return before

    def release(self) -> None:
        """Record that this writer's claim ended normally (see :meth:`claim`); it stays the
        last writer, so nothing else changes."""
        self.wait()
        if not self._claimed:
            return
        with self.location.lock(self._lock_name):
            manifest = self.read_manifest()
            if manifest is None or manifest.generation != self._seen_generation:
                return  # another writer took over; its claim is not ours to close
            for claim in reversed(manifest.claims):
                if claim.get("session") == self.writer["session"]:
                    claim["finished"] = time.time()
                    break
            self.location.write_atomic(self.manifest_name, manifest.to_json())
        self._claimed = False

    def commit(self, files: Sequence[PendingFile], epoch: int, metrics: dict[str, Any] | None = None,
               best: bool = False) -> Version:
        """Write ``files`` as a new version, then make it current (and best if ``best``).

        With ``finish_in_background``, the root files and pruning are done on a helper thread
        once the manifest is committed; the next commit, :meth:`begin` and :meth:`wait` wait for it.
        """
        self.wait()
        folder = f"{VERSIONS}/{self.prefix}epoch-{epoch:06d}-{secrets.token_hex(3)}"
        self.location.makedirs(folder)
        entries = {}
        for pending in files:
            record = self.location.write(f"{folder}/{pending.name}", pending.write)
            entries[pending.name] = FileEntry(pending.key, record.size, record.sha256)
            _test_pause("file")
        version = Version(id=0, epoch=epoch, folder=folder, files=entries, metrics=dict(metrics or {}),
                          time=time.time(), writer=self.writer)
        # a spare copy of the version's record, read only to rebuild a damaged manifest (which
        # verifies the files again), so it need not reach the disk before the commit
        self.location.write(f"{folder}/{VERSION_INFO}", lambda f: f.write(json.dumps(version.to_dict()).encode()),
                            durable=False)
        if hasattr(self.location, "fsync"):
            self.location.fsync(folder)  # its files' entries...
            self.location.fsync(VERSIONS)  # ...and its own, before the manifest names it
        _test_pause("before-manifest")
        with self.location.lock(self._lock_name):
            manifest = self.read_manifest(_exclude=folder) or Manifest(prefix=self.prefix)
            self._check_no_other_writer(manifest)
            manifest.add(version, best=best)
            dropped = manifest.retain(self.keep_last)
            manifest.generation += 1
            manifest.writer = self.writer
            self.location.write_atomic(self.manifest_name, manifest.to_json())
            self._seen_generation, self._seen_current = manifest.generation, manifest.current
        _test_pause("after-manifest")
        if self._finisher is not None:
            self._finisher.submit(lambda: self._finish(version, manifest, dropped))
        else:
            self._finish(version, manifest, dropped)
        return version

    def wait(self) -> None:
        """Wait for the root files and pruning of the last commit (``finish_in_background``)."""
        if self._finisher is not None:
            self._finisher.wait()

    def _finish(self, version: Version, manifest: Manifest, dropped: list[Version]) -> None:
        """After a commit: the root files show ``version``, dropped and unfinished versions go.

        The commit stands whatever happens here: a failure is a warning, and the next
        :meth:`begin` repairs the root files.
        """
        try:
            with self.location.lock(self._lock_name):
                self._publish(version)
                self._mark_published(version.id)
                self._prune(manifest, dropped)
        except Exception as error:
            warnings.warn(f"checkpoint {self.url}: version {version.id} is committed, but updating the plain "
                          f"files at the root or pruning old versions failed: {type(error).__name__}: {error}",
                          CheckpointSaveWarning, stacklevel=2)

    def _check_no_other_writer(self, manifest: Manifest) -> None:
        if self._seen_generation is None or manifest.generation == self._seen_generation:
            return
        other = manifest.writer
        newest = manifest.version(manifest.current)
        if manifest.current == self._seen_current:
            what = "took over this directory"
        else:
            what = f"committed {f'version {newest.id} (epoch {newest.epoch})' if newest else 'a change'}"
        raise CheckpointConflictError(
            f"checkpoint {self.url}: another writer (host {other.get('host')}, pid {other.get('pid')}"
            + "".join(f", {k} {v}" for k, v in other.items() if k not in ("session", "host", "pid", "started"))
            + f") {what} while this run was writing here. Two live trainings must not share a checkpoint "
            "directory: give each its own dirname. This run stops without committing."
        )

    def _publish(self, version: Version) -> None:
        """Point the plain files at the directory's root at ``version`` (what skorch reads).

        Each file is replaced atomically; they are conveniences (the manifest is the truth),
        so the folder is not fsynced for them.
        """
        for name in version.files:
            self.location.publish(f"{version.folder}/{name}", name)

    def _prune(self, manifest: Manifest, dropped: list[Version]) -> None:
        """Remove dropped versions and folders no commit finished (left by a crash)."""
        kept = {v.folder.rsplit("/", 1)[-1] for v in manifest.versions}
        doomed = {v.folder for v in dropped}
        doomed |= {f"{VERSIONS}/{name}" for name in self._own_folders() if name not in kept}
        for folder in sorted(doomed):
            self.location.remove_tree(folder)
        self._remove_temp_files(manifest)
