"""Errors and warnings of the checkpoint store."""
from __future__ import annotations


class CheckpointError(Exception):
    """Base class of the checkpoint store's errors."""


class CheckpointConflictError(CheckpointError):
    """Another live writer committed to the same checkpoint directory."""


class CheckpointCorruptError(CheckpointError):
    """No committed version of a checkpoint directory is intact."""


class CheckpointFallbackWarning(UserWarning):
    """A damaged version was skipped; an older intact one was loaded instead."""


class CheckpointSaveWarning(UserWarning):
    """Saving a checkpoint failed; training went on without it."""


class CheckpointConcurrencyWarning(UserWarning):
    """The storage cannot keep two writers of one checkpoint directory apart (no locks, no
    conditional writes): nothing committed is pruned while another writer may name it, but
    two live writers are not stopped there."""
