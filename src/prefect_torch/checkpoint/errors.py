"""Errors and warnings of the checkpoint store."""
from __future__ import annotations


class CheckpointError(Exception):
    """Base class of the checkpoint store's errors."""


class CheckpointConflictError(CheckpointError):
    """Another live writer committed to the same checkpoint directory."""


class CheckpointCorruptError(CheckpointError):
    """No committed version of a checkpoint directory is intact."""


class CheckpointVersionError(CheckpointError, LookupError):
    """A version asked for by name (``'best'``, a version id) is not among the kept versions.

    The message lists the versions that are kept (id, epoch, current/best marks) and how to
    pick one.
    """


class DamagedEntryError(CheckpointCorruptError, ValueError):
    """An entry read from a checkpoint directory (a manifest field, a ``version.json``, a path)
    is not in the form the store writes, or leads outside the directory or through a link.

    The message names the entry and its value; the store treats the entry as damage and never
    acts on it.
    """


class CheckpointFallbackWarning(UserWarning):
    """A damaged version was skipped; an older intact one was loaded instead."""


class CheckpointSaveWarning(UserWarning):
    """Saving a checkpoint failed; training went on without it."""


class CheckpointConcurrencyWarning(UserWarning):
    """The storage cannot keep two writers of one checkpoint directory apart (no locks, no
    conditional writes): nothing committed is pruned while another writer may name it, but
    two live writers are not stopped there."""
