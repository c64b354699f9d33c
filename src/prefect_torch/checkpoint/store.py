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

One writer at a time: every manifest write is a compare-and-swap against the manifest this
writer read (under a ``flock`` on local disks, with S3 conditional writes on object stores), and
a writer that finds a manifest it did not write, since it began or last committed, stops with a
:class:`CheckpointConflictError` and removes its uncommitted folder. Where the storage can do
neither, a :class:`CheckpointConcurrencyWarning` says so once, and pruning stays on the safe side.

Everything read back (the manifest, each ``version.json``, the listing of ``versions/``) is
untrusted: it goes through the validating parser of :mod:`.manifest`, paths go through the
checks of :mod:`.location`, and damage means a fallback with one warning naming the entry and
its value, never a read, write or delete outside the directory. Pruning removes only folders
in the store's own shape that the manifest, as re-read just before, does not name.
"""
from __future__ import annotations

import contextlib
import json
import operator
import os
import re
import secrets
import time
import warnings
from typing import Any, Callable, Literal, NamedTuple, NoReturn, Sequence, Union

from . import faults
from .background import BackgroundCommitter
from .errors import (
    CheckpointConcurrencyWarning,
    CheckpointConflictError,
    CheckpointCorruptError,
    CheckpointFallbackWarning,
    CheckpointSaveWarning,
    CheckpointVersionError,
    DamagedEntryError,
)
from .hashing import FileRecord
from .location import Location, WriteConflict, WriteFn, open_location
from .manifest import (
    VERSION_INFO,
    VERSIONS,
    FileEntry,
    Manifest,
    Version,
    check_prefix,
    folder_name,
    is_version_folder,
    parse_json,
    writer_identity,
)

#: how a version is named: ``'current'``, ``'best'``, or its version id (not its epoch)
VersionName = Union[Literal["current", "best"], int]
MAX_LINK_SECONDS = 7 * 24 * 3600  # the longest an S3 presigned URL (signature version 4) may last
KEPT_CLAIMS = 20
MANIFEST_SWAP_TRIES = 8  # compare-and-swap rounds lost to writes that change no generation (releases)
_warned_unenforced: set[tuple[str, str]] = set()  # once per directory and process


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


def check_version_name(name: Any) -> VersionName:
    """``name`` if it names a version (``'current'``, ``'best'`` or a version id >= 1), else a
    ``ValueError`` saying how to name one."""
    if name == "current" or name == "best":
        return "current" if name == "current" else "best"
    if isinstance(name, int) and not isinstance(name, bool) and name >= 1:
        return name
    raise ValueError(f"version={name!r}: name a version with 'current', 'best', or its version id (an int >= 1: "
                     "the 'version' column of `prefect-torch checkpoints DIR`, not the epoch)")


def kept_versions(manifest: Manifest) -> str:
    """The kept versions, e.g. ``'4 (epoch 4, best), 5 (epoch 5, current)'``."""
    def marks(version: Version) -> str:
        return "".join(f", {mark}" for mark, vid in (("current", manifest.current), ("best", manifest.best))
                       if vid == version.id)
    return ", ".join(f"{v.id} (epoch {v.epoch}{marks(v)})" for v in sorted(manifest.versions, key=lambda v: v.id))


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
        try:
            check_prefix(prefix)
        except DamagedEntryError:
            raise ValueError(f"prefix={prefix!r}: the prefix starts file names in the directory, so it must be a "
                             "string without '/', '\\' or NUL; put sub-folders in the directory instead") from None
        self.location: Location = open_location(directory, **storage_options)
        self.prefix = prefix
        self.keep_last = keep_last
        self.writer = writer_identity(writer)
        self.manifest_name = f"{prefix}manifest.json"
        self._lock_name = f"{VERSIONS}/.{prefix}commit.lock"
        self._seen_generation: int | None = None
        self._seen_current: int | None = None
        self._seen_writer: str | None = None  # the session that wrote the manifest last seen
        self._claimed = False
        self._published_marker = f"{VERSIONS}/.{prefix}published"
        self._warned_damage: tuple[bytes | None, str] | None = None  # a damaged manifest warns once
        self.finish_in_background = finish_in_background
        self._finisher: BackgroundCommitter | None = BackgroundCommitter() if finish_in_background else None

    @property
    def url(self) -> str:
        return self.location.root

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.location!r}, prefix={self.prefix!r}, "
                f"keep_last={self.keep_last!r})")

    # -- reading -------------------------------------------------------------------------
    def read_manifest(self, _exclude: str | None = None) -> Manifest | None:
        """The committed manifest, ``None`` if nothing was committed yet.

        A damaged manifest (not in the form the store writes, see :mod:`.manifest`) is rebuilt
        from the ``version.json`` of each version folder, leaving out ``_exclude`` (the folder a
        commit in progress just wrote), with one :class:`CheckpointFallbackWarning` naming the
        damaged entry and each folder left out.
        """
        return self._read_manifest_tagged(_exclude)[0]

    def _read_manifest_tagged(self, exclude: str | None = None) -> tuple[Manifest | None, str | None]:
        """:meth:`read_manifest`, and the tag of what was read for :meth:`_swap_manifest`."""
        raw: bytes | None = None
        tag: str | None = None
        try:
            raw, tag = self.location.read_tagged(self.manifest_name)
            return Manifest.from_json(raw, self.prefix), tag
        except FileNotFoundError:
            return None, None
        except (DamagedEntryError, IsADirectoryError) as error:  # not what the store writes, or a link
            damage = str(error)
        manifest, left_out = self._rebuild_manifest(exclude)
        if self._warned_damage != (raw, damage):
            self._warned_damage = (raw, damage)
            found = ", ".join(f"epoch {v.epoch}" for v in manifest.versions) or "none"
            warnings.warn(
                f"{self.location.url(self.manifest_name)} is damaged ({damage}); rebuilding the list of "
                f"versions from the version folders (found: {found})"
                + "".join(f"; left out {note}" for note in left_out),
                CheckpointFallbackWarning, stacklevel=3,
            )
        return manifest, tag

    def _rebuild_manifest(self, exclude: str | None) -> tuple[Manifest, list[str]]:
        """The versions whose ``version.json`` is valid and names the folder it sits in, oldest
        first; and what was left out, and why."""
        # a repair by this writer is not another writer's commit: keep the generation it knows
        manifest = Manifest(prefix=self.prefix, generation=self._seen_generation or 0)
        found, left_out = [], []
        try:
            folders = self._own_folders()
        except (OSError, DamagedEntryError) as error:
            return manifest, [f"{VERSIONS}: {error}"]
        for name in folders:
            folder = f"{VERSIONS}/{name}"
            info = f"{folder}/{VERSION_INFO}"
            if folder == exclude:
                continue
            try:
                version = Version.from_dict(parse_json(self.location.read_bytes(info), info), self.prefix, info)
                if version.folder != folder:
                    raise DamagedEntryError(f"{info}: folder must be {folder!r} (the folder it sits in), "
                                            f"not {version.folder!r}")
            except FileNotFoundError:
                continue  # a commit that never finished: no version.json
            except (OSError, DamagedEntryError) as error:
                left_out.append(str(error) if isinstance(error, DamagedEntryError) else f"{info}: {error}")
                continue
            found.append(version)
        for version in sorted(found, key=lambda v: (v.epoch, v.time)):
            manifest.add(version, best=False)
        manifest.best = None  # no version.json says which was best: load_params(version="best") says so
        return manifest, left_out

    def _own_folders(self) -> list[str]:
        """The entries of ``versions/`` in the shape of this series' version folders."""
        return [name for name in self.location.listdir(VERSIONS) if is_version_folder(name, self.prefix)]

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
            except DamagedEntryError as error:
                found.append(f"{name} is not read: {error}")
                continue
            except OSError as error:
                found.append(f"{name} cannot be read ({type(error).__name__}: {error})")
                continue
            if record.size != entry.size:
                found.append(f"{name} has {record.size} bytes, {entry.size} were committed")
            elif record.sha256 != entry.sha256:
                found.append(f"{name} has a different sha256 than committed (the file was changed or damaged)")
        return found

    def latest_verified(self, check: Callable[[Version], list[str]] | None = None) -> Version | None:
        """The current version if intact, else the newest intact one (with a warning).

        ``check(version)`` may name more problems of a version whose hashes match (e.g. a file
        that does not load); such a version is skipped like a damaged one. ``None`` when nothing
        was committed; :class:`CheckpointCorruptError` when no version is intact.
        """
        manifest = self.read_manifest()
        if manifest is None or not manifest.versions:
            return None
        damaged: list[str] = []
        for version in manifest.newest_first():
            problems = self.problems(version)
            if not problems and check is not None:
                problems = check(version)
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

    def find(self, name: VersionName, check: Callable[[Version], list[str]] | None = None) -> Version | None:
        """The version called ``name``, verified: ``'current'``, ``'best'``, or a version id (an
        ``int``: the ``version`` column of ``prefect-torch checkpoints``, not the epoch).

        Unlike :meth:`latest_verified`, it never answers with another version: one whose files
        are damaged (or fail ``check``) raises :class:`CheckpointCorruptError` naming them; one
        that is not kept (pruned, never written, no best recorded) raises
        :class:`CheckpointVersionError` listing the kept versions. ``None`` when nothing was
        committed yet.

        >>> import tempfile, torch
        >>> store = CheckpointStore(tempfile.mkdtemp(), keep_last=1)
        >>> for epoch in (1, 2, 3):
        ...     _ = store.commit([PendingFile("params.pt", "f_params", lambda f: torch.save({}, f))],
        ...                      epoch=epoch, best=epoch == 2)
        >>> store.find("best").epoch, store.find(3).epoch
        (2, 3)
        >>> store.find(1)
        Traceback (most recent call last):
        ...
        prefect_torch.checkpoint.errors.CheckpointVersionError: checkpoint ...: version 1 is not kept ...
        """
        check_version_name(name)
        manifest = self.read_manifest()
        if manifest is None or not manifest.versions:
            return None
        version_id = manifest.current if name == "current" else manifest.best if name == "best" else name
        version = manifest.version(version_id)
        if version is None:
            if name in ("current", "best"):
                why = f"no {name} version is recorded in its manifest"
            elif isinstance(version_id, int) and version_id < manifest.next_id:
                why = f"version {version_id} is not kept (pruned by keep_last)"
            else:
                why = f"version {version_id} was never written here (the newest id is {manifest.next_id - 1})"
            raise CheckpointVersionError(
                f"checkpoint {self.url}: {why}. Kept versions: {kept_versions(manifest)}. Pick one with "
                "version=<id> (the 'version' column of `prefect-torch checkpoints`, not the epoch), or "
                "version='current' / 'best'.")
        problems = self.problems(version)
        if not problems and check is not None:
            problems = check(version)
        if problems:
            raise CheckpointCorruptError(
                f"checkpoint {self.url}: version {version.id} (epoch {version.epoch}, files in "
                f"{self.location.url(version.folder)}) is damaged: " + "; ".join(problems)
                + f". It is not replaced by another version. Kept versions: {kept_versions(manifest)}; "
                "pick an intact one with version=<id>, or check them all with `prefect-torch verify`.")
        return version

    def download_url(self, version: Version, name: str, expires: int = 3600) -> str | None:
        """A link that downloads file ``name`` of ``version`` for ``expires`` seconds (at most 7
        days): an S3 presigned https URL for ``s3://`` directories (``http`` only where the
        endpoint itself is), ``None`` for local folders and other file systems.

        The link carries S3's signature query (the access key id, the expiry and the signature;
        never the secret key). Anyone holding it can download that one file until it expires.

        >>> import tempfile, torch
        >>> store = CheckpointStore(tempfile.mkdtemp())
        >>> v = store.commit([PendingFile("params.pt", "f_params", lambda f: torch.save({}, f))], epoch=1)
        >>> store.download_url(v, "params.pt") is None   # a local folder: no link
        True
        """
        if isinstance(expires, bool) or not isinstance(expires, int) or not 1 <= expires <= MAX_LINK_SECONDS:
            raise ValueError(f"expires={expires!r}: a link lasts a whole number of seconds from 1 to "
                             f"{MAX_LINK_SECONDS} (7 days, the most S3 allows)")
        if name not in version.files:
            raise ValueError(f"{name!r} is not a file of version {version.id} (epoch {version.epoch}); its files "
                             f"are {sorted(version.files)}")
        return self.location.signed_url(f"{version.folder}/{name}", expires)

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
            self._seen_writer = manifest.writer.get("session") if manifest else None
        if manifest is not None:
            self._tidy(manifest)

    def _tidy(self, manifest: Manifest) -> None:
        """Bring the root files to the current version and remove unfinished version folders
        and temporary files. What fails (a full disk, a read-only directory) is a warning: the
        committed versions are intact, and loading reads them, not the root files."""
        failures: list[str] = []
        try:
            stale_root = manifest.current is not None and self._published() != manifest.current
            if not (stale_root or self._unfinished_folders(manifest) or self._temp_files(manifest)):
                return  # nothing to do: no lock taken, so a read-only directory still loads quietly
            with self.location.lock(self._lock_name):
                if stale_root:
                    failures += self._repair_root(manifest)
                    if not failures:
                        self._mark_published(manifest.current)
                for name in self._unfinished_folders(manifest):
                    self.location.remove_tree(f"{VERSIONS}/{name}")
                self._remove_temp_files(manifest)
        except Exception as error:
            failures.append(self._describe(error))
        if failures:
            current = manifest.version(manifest.current)
            which = f"version {current.id} (epoch {current.epoch})" if current else "the current version"
            warnings.warn(
                f"checkpoint {self.url}: could not finish what an earlier commit left undone: "
                + "; ".join(failures) + f". Training goes on; {which} stays the current one and loads "
                "from its version folder, but the plain files at the root may hold an older version "
                "until this succeeds (it is tried again at the next start and after the next commit).",
                CheckpointSaveWarning, stacklevel=3,
            )

    def _describe(self, error: BaseException, what: str = "updating the directory",
                  needed: int | None = None) -> str:
        """``error`` as one clause of a warning, a full disk said as such."""
        explained = faults.explain(error, what, self.url, needed, self.location.free_bytes())
        return f"{type(explained).__name__}: {explained}"

    def _reraise(self, error: Exception, what: str, needed: int | None = None) -> NoReturn:
        """Raise ``error``, or a :class:`~.faults.DiskFullError` saying what needed how many
        bytes when a full disk caused it."""
        explained = faults.explain(error, what, self.url, needed, self.location.free_bytes())
        if explained is error:
            raise error
        raise explained from error

    def _unfinished_folders(self, manifest: Manifest) -> list[str]:
        """Version folders that ``manifest`` does not name and that were never finished (no
        ``version.json``): left by a commit that failed or was killed while writing files.

        Only where folders are real (local disks): there, a live writer whose folder is removed
        fails at its next file and commits nothing. On an object store its next files would land
        anyway and its commit could name a version with files missing, so such folders are left
        to the pruning after this writer's own commit (when any writer of theirs can no longer
        commit)."""
        if not self.location.real_folders:
            return []
        named = {v.folder.rsplit("/", 1)[-1] for v in manifest.versions}
        return [name for name in self._own_folders()
                if name not in named and not self.location.exists(f"{VERSIONS}/{name}/{VERSION_INFO}")]

    def _published(self) -> int | None:
        """The version whose files the root holds, as recorded after its last complete publish."""
        try:
            return int(self.location.read_bytes(self._published_marker))
        except (OSError, ValueError):
            return None

    def _mark_published(self, version_id: int | None) -> None:
        self.location.write(self._published_marker, lambda f: f.write(str(version_id).encode()), durable=False)

    def _repair_root(self, manifest: Manifest) -> list[str]:
        """Publish the current version's files that the root lacks (names validated by the parser:
        plain file names of the version, never the store's own); what could not be copied."""
        current = manifest.version(manifest.current)
        if current is None:
            return []
        failures = []
        for name, entry in current.files.items():
            expected = FileRecord(entry.size, entry.sha256)
            if self._record(name) == expected:
                continue
            if self._record(f"{current.folder}/{name}") != expected:
                continue  # a damaged version is never published; loading falls back anyway
            try:
                self.location.publish(f"{current.folder}/{name}", name)
            except Exception as error:
                failures.append(self._describe(error, f"copying {name} to the root", entry.size))
        return failures

    def _record(self, rel: str) -> FileRecord | None:
        """Size and sha256 of file ``rel``; ``None`` if it is missing, unreadable or a link."""
        try:
            return self.location.hash(rel)
        except (OSError, DamagedEntryError):
            return None

    def _remove_temp_files(self, manifest: Manifest) -> None:
        """Temporary files of this series' root files and manifest, left by a killed writer."""
        for entry in self._temp_files(manifest):
            self.location.remove_file(entry)

    def _temp_files(self, manifest: Manifest) -> list[str]:
        names = {self.manifest_name} | {name for v in manifest.versions for name in v.files}
        pattern = re.compile(rf"^\.({'|'.join(map(re.escape, sorted(names)))})\.tmp-[0-9a-f]+$")
        return [entry for entry in self.location.listdir("") if pattern.match(entry)]

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
        before: list[Manifest] = []

        def take(manifest: Manifest) -> bool:  # run again on a fresh manifest if another writer came first
            if self._seen_generation is not None and manifest.current != self._seen_current:
                self._check_no_other_writer(manifest)
            if check is not None:
                check(manifest)
            before[:] = [Manifest.from_json(manifest.to_json())]
            manifest.generation += 1
            manifest.writer = self.writer
            claim = {**self.writer, "epoch": manifest.current_epoch, "finished": None}
            manifest.claims = [*manifest.claims, claim][-KEPT_CLAIMS:]
            return True

        with self.location.lock(self._lock_name):
            manifest = self._update_manifest(take)
            self._saw(manifest)
            self._claimed = True
        return before[0]

    def release(self) -> None:
        """Record that this writer's claim ended normally (see :meth:`claim`); it stays the
        last writer, so nothing else changes."""
        self.wait()
        if not self._claimed:
            return

        def close(manifest: Manifest) -> bool:
            if not self._wrote_last(manifest):
                return False  # another writer took over; its claim is not ours to close
            for claim in reversed(manifest.claims):
                if claim.get("session") == self.writer["session"]:
                    claim["finished"] = time.time()
                    break
            return True

        with self.location.lock(self._lock_name):
            try:
                self._update_manifest(close)
            except CheckpointConflictError:
                pass  # the manifest kept changing: others write here now, the claim is theirs
        self._claimed = False

    def commit(self, files: Sequence[PendingFile], epoch: int, metrics: dict[str, Any] | None = None,
               best: bool = False) -> Version:
        """Write ``files`` as a new version, then make it current (and best if ``best``).

        With ``finish_in_background``, the root files and pruning are done on a helper thread
        once the manifest is committed; the next commit, :meth:`begin` and :meth:`wait` wait for it.
        """
        self.wait()
        epoch = operator.index(epoch)
        folder = folder_name(self.prefix, epoch, secrets.token_hex(3))
        self._check_new_version(files, epoch, folder, metrics)
        version = self._write_version(folder, files, epoch, metrics)
        _test_pause("before-manifest")
        dropped: list[Version] = []
        unfinished: set[str] = set()

        def add(manifest: Manifest) -> bool:  # run again on a fresh manifest if another writer came first
            self._check_no_other_writer(manifest)
            # folders no manifest names now, seen before this commit: their writers (if alive)
            # began before it, so they can no longer commit; folders that appear later may be
            # a live writer's next version, and are left alone
            named = {v.folder for v in manifest.versions} | {folder}
            unfinished.clear()
            unfinished.update(f"{VERSIONS}/{name}" for name in self._own_folders()
                              if f"{VERSIONS}/{name}" not in named)
            manifest.add(version, best=best)
            dropped[:] = manifest.retain(self.keep_last)
            manifest.generation += 1
            manifest.writer = self.writer
            return True

        with self.location.lock(self._lock_name):
            try:
                manifest = self._update_manifest(add, exclude=folder)
            except CheckpointConflictError:
                self.location.remove_tree(folder)  # never committed: nobody names it
                raise
            self._saw(manifest)
        _test_pause("after-manifest")
        if self._finisher is not None:
            self._finisher.submit(lambda: self._finish(version, dropped, unfinished))
        else:
            self._finish(version, dropped, unfinished)
        return version

    def _write_version(self, folder: str, files: Sequence[PendingFile], epoch: int,
                       metrics: dict[str, Any] | None) -> Version:
        """Write the files of a version under ``folder``, durably. On failure the folder is
        removed again, and a full disk is reported as such."""
        try:
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
            self.location.write(f"{folder}/{VERSION_INFO}",
                                lambda f: f.write(json.dumps(version.to_dict()).encode()), durable=False)
            if hasattr(self.location, "fsync"):
                self.location.fsync(folder)  # its files' entries...
                self.location.fsync(VERSIONS)  # ...and its own, before the manifest names it
            return version
        except Exception as error:
            needed = self._bytes_needed(folder)
            with contextlib.suppress(Exception):
                self.location.remove_tree(folder)
            self._reraise(error, f"writing the version of epoch {epoch}", needed)
        except BaseException:  # an interrupt: no half-written folder stays behind either
            with contextlib.suppress(Exception):
                self.location.remove_tree(folder)
            raise

    def _bytes_needed(self, folder: str) -> int | None:
        """About what a version takes: the size of the current one, else what ``folder`` (a
        failed write) holds."""
        try:
            manifest = Manifest.from_json(self.location.read_bytes(self.manifest_name))
            current = manifest.version(manifest.current)
            if current is not None:
                return current.size
        except Exception:
            pass
        try:
            return sum(self.location.size(f"{folder}/{name}") for name in self.location.listdir(folder)) or None
        except Exception:
            return None

    def _update_manifest(self, change: Callable[[Manifest], bool], exclude: str | None = None) -> Manifest:
        """Read the manifest, let ``change`` edit it (it returns whether to write; it may raise
        :class:`CheckpointConflictError`), and write it back as one compare-and-swap: if another
        writer replaced the manifest in between, start over from a fresh read."""
        for _ in range(MANIFEST_SWAP_TRIES):
            read, tag = self._read_manifest_tagged(exclude)
            manifest = read or Manifest(prefix=self.prefix)
            if not change(manifest) or self._swap_manifest(manifest, tag if read is not None else None):
                return manifest
        raise CheckpointConflictError(
            f"checkpoint {self.url}: the manifest changed under this writer {MANIFEST_SWAP_TRIES} times in a "
            "row: other writers are active here. Two live trainings must not share a checkpoint directory: "
            "give each its own dirname. This run stops without committing.")

    def _swap_manifest(self, manifest: Manifest, tag: str | None) -> bool:
        """Write ``manifest`` if the manifest read with ``tag`` (``None``: none) is still there;
        ``False`` if another writer replaced it first."""
        self._warn_if_unenforced()
        data = manifest.to_json()
        try:
            self.location.write_if_unchanged(self.manifest_name, data, tag)
        except WriteConflict:
            try:  # a request retried after its first try had succeeded is refused, yet won
                return self.location.read_bytes(self.manifest_name) == data
            except FileNotFoundError:
                return False
        return True

    def _warn_if_unenforced(self) -> None:
        reason = self.location.unenforced()
        if reason is not None and (self.url, reason) not in _warned_unenforced:
            _warned_unenforced.add((self.url, reason))
            warnings.warn(
                f"checkpoint {self.url}: {reason}, so two writers committing here at the same time are "
                "not kept apart (the last manifest written wins). Pruning leaves alone every version folder "
                "this writer did not commit itself. Give each live training its own directory.",
                CheckpointConcurrencyWarning, stacklevel=5)

    def _saw(self, manifest: Manifest) -> None:
        """Remember ``manifest`` as the last one this writer wrote."""
        self._seen_generation, self._seen_current = manifest.generation, manifest.current
        self._seen_writer = manifest.writer.get("session")

    def _wrote_last(self, manifest: Manifest | None) -> bool:
        """True when ``manifest`` is still the one this writer last wrote or began from."""
        if manifest is None or manifest.generation != self._seen_generation:
            return False
        session = manifest.writer.get("session")  # absent in a manifest rebuilt after damage
        return session is None or self._seen_writer is None or session == self._seen_writer

    def _check_new_version(self, files: Sequence[PendingFile], epoch: int, folder: str,
                           metrics: dict[str, Any] | None) -> None:
        """Refuse, before anything is written, a version that readers would take for damage
        (the parser's rules: plain file names, ``f_*`` keys, metric values, epoch range)."""
        names = [pending.name for pending in files]
        if len(set(names)) != len(names):
            raise ValueError(f"the files of one version need distinct names, not {names}")
        planned = Version(id=0, epoch=epoch, folder=folder, files={
            p.name: FileEntry(p.key, 0, "0" * 64) for p in files}, metrics=dict(metrics or {}), writer=self.writer)
        Version.from_dict(planned.to_dict(), self.prefix, "the new version")

    def wait(self) -> None:
        """Wait for the root files and pruning of the last commit (``finish_in_background``)."""
        if self._finisher is not None:
            self._finisher.wait()

    def _finish(self, version: Version, dropped: list[Version], unfinished: set[str]) -> None:
        """After a commit: the root files show ``version``, dropped and unfinished versions go.

        Only while this commit's manifest is still the newest: once another writer committed,
        the root files and what to prune are its business. The commit stands whatever happens
        here: a failure is a warning, and the next :meth:`begin` repairs the root files. Pruning
        goes first: on a full disk, the space it frees is what the root copies need.
        """
        failures: list[str] = []
        try:
            with self.location.lock(self._lock_name):
                try:  # strictly: a damaged or replaced manifest is nothing to prune or publish on
                    fresh = Manifest.from_json(self.location.read_bytes(self.manifest_name), self.prefix)
                except (OSError, DamagedEntryError):
                    return
                if not self._wrote_last(fresh):
                    return
                try:
                    self._prune(fresh, dropped, unfinished)
                except Exception as error:
                    failures.append(f"pruning old versions failed: {self._describe(error)}")
                self._publish(version)
                self._mark_published(version.id)
        except Exception as error:
            failures.append(f"updating the plain files at the root failed: {self._describe(error)}")
        if failures:
            warnings.warn(f"checkpoint {self.url}: version {version.id} (epoch {version.epoch}) is committed and "
                          f"stays the current one, but " + "; ".join(failures)
                          + ". The next start tries again.", CheckpointSaveWarning, stacklevel=2)

    def _check_no_other_writer(self, manifest: Manifest) -> None:
        if self._seen_generation is None or self._wrote_last(manifest):
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
        for name, entry in version.files.items():
            try:
                self.location.publish(f"{version.folder}/{name}", name)
            except Exception as error:
                self._reraise(error, f"copying {name} to the root", entry.size)

    def _prune(self, manifest: Manifest, dropped: list[Version], unfinished: set[str]) -> None:
        """Remove dropped versions and ``unfinished`` folders (left by a crash or a writer that
        lost), except what ``manifest`` (freshly read, still this writer's) names; only folders
        in this series' own shape.

        Where the storage cannot refuse a second writer's manifest, a folder this writer never
        committed may be that writer's current version: only dropped versions go there.
        """
        named = {v.folder for v in manifest.versions}
        doomed = {v.folder for v in dropped}
        if self.location.unenforced() is None:
            doomed |= unfinished
        for folder in sorted(doomed - named):
            if is_version_folder(folder.removeprefix(f"{VERSIONS}/"), self.prefix):
                self.location.remove_tree(folder)
        self._remove_temp_files(manifest)

