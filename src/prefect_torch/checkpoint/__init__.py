"""The checkpoint store: versioned, verified, crash-safe checkpoint directories.

>>> import tempfile, torch
>>> from prefect_torch.checkpoint import CheckpointStore, PendingFile
>>> store = CheckpointStore(tempfile.mkdtemp(), keep_last=2)
>>> for epoch in (1, 2, 3):
...     weights = {"w": torch.full((2,), float(epoch))}
...     _ = store.commit([PendingFile("params.pt", "f_params", lambda f: torch.save(weights, f))],
...                      epoch=epoch, metrics={"valid_loss": 1 / epoch}, best=True)
>>> version = store.latest_verified()
>>> version.epoch, torch.load(store.source(version, "params.pt"), weights_only=True)["w"].tolist()
(3, [3.0, 3.0])
>>> [v.epoch for v in store.read_manifest().versions]   # keep_last=2 pruned epoch 1
[2, 3]

It knows files, state dicts and bytes; nets and Prefect are not its business.
"""
from .errors import (
    CheckpointConcurrencyWarning,
    CheckpointConflictError,
    CheckpointCorruptError,
    CheckpointError,
    CheckpointFallbackWarning,
    CheckpointSaveWarning,
    CheckpointVersionError,
    DamagedEntryError,
)
from .location import Location, is_url, open_location
from .manifest import FileEntry, Manifest, Version
from .store import CheckpointStore, PendingFile

__all__ = [
    "CheckpointStore",
    "PendingFile",
    "Manifest",
    "Version",
    "FileEntry",
    "Location",
    "open_location",
    "is_url",
    "CheckpointError",
    "CheckpointConflictError",
    "CheckpointCorruptError",
    "CheckpointFallbackWarning",
    "CheckpointSaveWarning",
    "CheckpointVersionError",
    "CheckpointConcurrencyWarning",
    "DamagedEntryError",
]
