"""What people are shown of checkpoints, for the CLI and the Prefect UI alike: which metrics
are reported, one record per committed version, sizes in words.

The metrics of a version are its epoch's numbers (:func:`~prefect_torch.history.epoch_metrics`);
of those, bookkeeping (``dur``, ``checkpoint_errors``, batch counts) and ``event_*`` flags are
not reported.

>>> reported_metrics({"train_loss": 0.5, "valid_acc": 0.75, "dur": 0.1, "checkpoint_errors": 0})
{'train_loss': 0.5, 'valid_acc': 0.75}
>>> metric_names_of([{"valid_acc": 0.7, "valid_loss": 0.5, "train_loss": 0.6, "dur": 1.0}])
['train_loss', 'valid_loss', 'valid_acc']
>>> human_size(1300), human_size(5_200_000)
('1.3 kB', '5.2 MB')
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from .checkpoint import CheckpointStore, Manifest

HIDDEN_METRICS = ("dur", "checkpoint_errors", "train_batch_count", "valid_batch_count")


def is_reported_metric(key: str) -> bool:
    """Whether a version's metric ``key`` is shown (see the module docstring).

    >>> is_reported_metric("valid_loss"), is_reported_metric("event_cp"), is_reported_metric("dur")
    (True, False, False)
    """
    return key not in HIDDEN_METRICS and not key.startswith("event_")


def reported_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` without the ones not shown (see :func:`is_reported_metric`)."""
    return {k: v for k, v in metrics.items() if is_reported_metric(k)}


def metric_names_of(metrics: Iterable[Mapping[str, Any]]) -> list[str]:
    """The reported metric names found in any of ``metrics``: losses first, then the rest by name."""
    names = {k for each in metrics for k in each if is_reported_metric(k)}
    preferred = [n for n in ("train_loss", "valid_loss") if n in names]
    return preferred + sorted(names - set(preferred))


def describe(store: CheckpointStore, manifest: Manifest, verify: bool) -> list[dict[str, Any]]:
    """One record per version, oldest first: version, epoch, metrics, size, current/best
    marks, time, folder URL, and with ``verify`` whether its files match their sha256
    (``verified``, ``problems``; ``None`` and ``[]`` without).

    >>> import tempfile, torch
    >>> from prefect_torch.checkpoint import PendingFile
    >>> store = CheckpointStore(tempfile.mkdtemp())
    >>> _ = store.commit([PendingFile("params.pt", "f_params", lambda f: torch.save({}, f))], epoch=2)
    >>> [(r["version"], r["epoch"], r["current"], r["verified"]) for r in describe(store, store.read_manifest(), True)]
    [(1, 2, True, True)]
    """
    rows = []
    for version in sorted(manifest.versions, key=lambda v: v.id):
        problems = store.problems(version) if verify else None
        rows.append({
            "version": version.id,
            "epoch": version.epoch,
            "metrics": version.metrics,
            "size": version.size,
            "current": version.id == manifest.current,
            "best": version.id == manifest.best,
            "time": version.time,
            "folder": store.location.url(version.folder),
            "verified": None if problems is None else not problems,
            "problems": problems or [],
        })
    return rows


def human_size(n: int) -> str:
    """``1300`` -> ``'1.3 kB'``."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover
