"""Small, JSON-able records of checkpoints: what task results, flow results and artifacts show.

>>> import tempfile, torch
>>> from prefect_torch.checkpoint import CheckpointStore, PendingFile
>>> store = CheckpointStore(tempfile.mkdtemp())
>>> _ = store.commit([PendingFile("params.pt", "f_params", lambda f: torch.save({}, f))], epoch=3,
...                  metrics={"valid_loss": 0.5})
>>> record = checkpoint_record(store, store.read_manifest())
>>> record["epoch"], record["version"], len(record["sha256"]), record["metrics"]
(3, 1, 64, {'valid_loss': 0.5})
>>> slug("My Experiment_1")
'my-experiment-1'
"""
from __future__ import annotations

import os
import re
from typing import Any

from ..checkpoint import CheckpointStore, Manifest
from ..reporting import describe, human_size, reported_metrics


def slug(text: str) -> str:
    """``text`` as a Prefect artifact key: lower case letters, digits and dashes."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if not cleaned:
        raise ValueError(f"experiment {text!r} has no letters or digits; name it e.g. 'mnist-small'")
    return cleaned


def location_link(url: str) -> str:
    """``url`` as a browser would take it: ``file://`` + the absolute path for local paths."""
    return url if "://" in url else "file://" + os.path.abspath(url)


def markdown_location(url: str) -> str:
    """``url`` in markdown: a link when a browser can follow it from the UI (http, https), else
    code to copy (the UI drops ``file://`` links, and ``s3://`` needs credentials anyway)."""
    return f"[{url}]({url})" if url.startswith(("http://", "https://")) else f"`{location_link(url)}`"


def checkpoint_record(store: CheckpointStore, manifest: Manifest | None, which: str = "current") -> dict | None:
    """The ``current`` or ``best`` version as a record: version, epoch, uri (its folder), sha256
    (of its weights file), size in bytes and metrics; ``None`` when there is none."""
    version = manifest.version(getattr(manifest, which)) if manifest else None
    if version is None:
        return None
    weights = version.name_of("f_params") or next(iter(version.files), None)
    return {
        "version": version.id,
        "epoch": version.epoch,
        "uri": store.location.url(version.folder),
        "sha256": version.files[weights].sha256 if weights else None,
        "size": version.size,
        "metrics": reported_metrics(version.metrics),
    }


SHA256_SHOWN = 12  # hex digits of a weights file's sha256 in the checkpoints table
METRIC_DIGITS = 4  # significant digits of a metric there (the history table has them all)


def checkpoint_rows(store: CheckpointStore, manifest: Manifest | None) -> list[dict[str, Any]]:
    """One table row per committed version, oldest first, the key columns first so that they fit
    a laptop's screen: epoch, version, current/best marks, metrics, then size, the first
    :data:`SHA256_SHOWN` hex digits of the weights' sha256 and the version's folder relative to
    the checkpoint directory (which the table's description names). Metrics are rounded to
    :data:`METRIC_DIGITS` significant digits."""
    if manifest is None:
        return []
    rows = []
    for entry in describe(store, manifest, verify=False):
        version = manifest.version(entry["version"])
        assert version is not None
        weights = version.name_of("f_params") or next(iter(version.files), "")
        metrics = {k: _short(v) for k, v in reported_metrics(entry["metrics"]).items()}
        rows.append({
            "epoch": entry["epoch"],
            "version": entry["version"],
            "current": "current" if entry["current"] else "",
            "best": "best" if entry["best"] else "",
            **metrics,
            "size": human_size(entry["size"]),
            "sha256": version.files[weights].sha256[:SHA256_SHOWN] if weights else "",
            "folder": version.folder,
        })
    return rows


def _short(value: Any) -> Any:
    """A float metric to :data:`METRIC_DIGITS` significant digits (``0.4092631`` -> ``0.4093``)."""
    return float(f"{value:.{METRIC_DIGITS}g}") if isinstance(value, float) else value
