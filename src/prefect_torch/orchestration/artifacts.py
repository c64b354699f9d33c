"""Checkpoints in the Prefect UI: a table, a markdown summary with links, and a progress bar.

Each is created once per training run under a key of the experiment (``<slug>-checkpoints``,
``<slug>-latest``, ``<slug>-progress``), so the flow run's Artifacts tab shows this run's three
and the Artifacts page shows each experiment's latest. They are then updated in place, on a
helper thread that sends only the newest state, at most every few seconds, and in full when
training ends: a slow API never slows training down, and a failing one only logs a warning.
"""
from __future__ import annotations

import contextvars
import logging
import threading
import time
from typing import Any, cast
from uuid import UUID

from prefect.artifacts import (
    TableArtifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactUpdate

from ..checkpoint import CheckpointStore, Manifest
from .records import SHA256_SHOWN, checkpoint_record, checkpoint_rows, markdown_location

log = logging.getLogger("prefect_torch.orchestration")


def table_description(experiment: str, url: str) -> str:
    return (f"Checkpoints of experiment **{experiment}** in {markdown_location(url)}, one row per committed version "
            "kept there (oldest first); *folder* is the version's folder in that directory. *current* is what a "
            "resumed run loads, *best* the version with the best validation score; sha256 is the first "
            f"{SHA256_SHOWN} hex digits of the weights file's hash.")


def progress_description(experiment: str, epoch: int, target: int) -> str:
    """What the progress card says: the cards of both Prefect UIs show an artifact's description,
    not its value, so the description leads with the value (and is updated with it).

    >>> progress_description("mnist", 7, 10)
    '**70%** trained: epoch 7 of 10 (experiment mnist)'
    """
    return f"**{_percent(epoch, target):g}%** trained: epoch {epoch} of {target} (experiment {experiment})"


def summary_markdown(experiment: str, store: CheckpointStore, manifest: Manifest | None, epoch: int,
                     target: int) -> str:
    """The experiment's state for people: where the checkpoints are, the current and best
    versions with links to their files, and how to check or resume them."""
    url = store.url
    lines = [f"# Experiment `{experiment}`", "",
             f"Trained **{epoch}** of {target} epochs. Checkpoints: {markdown_location(url)}", ""]
    same = manifest is not None and manifest.best == manifest.current
    for which in ("current", "best"):
        record = checkpoint_record(store, manifest, which)
        version = manifest.version(getattr(manifest, which)) if manifest else None
        if record is None or version is None or (which == "best" and same):
            continue
        title = "Current and best" if which == "current" and same else which.capitalize()
        metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(record["metrics"].items()))
        lines += [f"## {title}: epoch {record['epoch']} (version {record['version']})", "",
                  f"{metrics}  ", f"sha256 of the weights: `{record['sha256']}`", ""]
        lines += [f"- {name}: {markdown_location(store.file_url(version, name))}" for name in version.files]
        lines.append("")
    if manifest is None or not manifest.versions:
        lines.append("No checkpoint committed yet.")
    lines += ["", f"Check the files: `prefect-torch verify {url}`. A re-run of this flow with the same "
              "experiment resumes from the current version."]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


class ArtifactPublisher:
    """Creates the three artifacts of one training run and keeps them up to date: progress at
    most every ``progress_interval`` seconds, the table and summary at most every
    ``checkpoints_interval`` seconds (each update costs the server tens of ms of CPU), and both
    once more when training ends."""

    def __init__(self, experiment: str, key: str, store: CheckpointStore, progress_interval: float = 1.0,
                 checkpoints_interval: float = 5.0):
        self.experiment, self.key, self.store = experiment, key, store
        self.progress_interval, self.checkpoints_interval = progress_interval, checkpoints_interval
        self._ids: dict[str, UUID] = {}
        self._pending: dict[str, Any] | None = None
        self._wake = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def start(self, manifest: Manifest | None, epoch: int, target: int) -> None:
        """Create the artifacts (in the flow run's context, which they are attached to)."""
        url = self.store.url
        self._ids["table"] = cast(UUID, create_table_artifact(
            checkpoint_rows(self.store, manifest), key=f"{self.key}-checkpoints",
            description=table_description(self.experiment, url)))
        self._ids["markdown"] = cast(UUID, create_markdown_artifact(
            summary_markdown(self.experiment, self.store, manifest, epoch, target), key=f"{self.key}-latest",
            description=f"Current and best checkpoint of experiment {self.experiment}, where their files are"))
        self._ids["progress"] = cast(UUID, create_progress_artifact(
            _percent(epoch, target), key=f"{self.key}-progress",
            description=progress_description(self.experiment, epoch, target)))
        context = contextvars.copy_context()  # the API settings of this run
        self._thread = threading.Thread(target=context.run, args=(self._loop,), daemon=True,
                                        name=f"prefect-torch-artifacts-{self.key}")
        self._thread.start()

    def update(self, manifest: Manifest | None, epoch: int, target: int) -> None:
        """Show this state soon (replacing any state not sent yet)."""
        with self._wake:
            self._pending = {"manifest": manifest, "epoch": epoch, "target": target}
            self._wake.notify()

    def close(self, manifest: Manifest | None = None, epoch: int | None = None, target: int | None = None) -> None:
        """Send the final state (if given) in full, then stop the helper thread."""
        with self._wake:
            if epoch is not None:
                self._pending = {"manifest": manifest, "epoch": epoch, "target": target or epoch}
            self._closing = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _loop(self) -> None:
        sent: bytes | None = None
        checkpoints_due = 0.0
        with get_client(sync_client=True) as client:
            while True:
                with self._wake:
                    while self._pending is None and not self._closing:
                        self._wake.wait()
                    state, closing, self._pending = self._pending, self._closing, None
                if state is None:
                    return  # closing, and everything sent
                now = time.monotonic()
                full = closing or now >= checkpoints_due
                sent = self._send(client, state, sent, full)
                if full:
                    checkpoints_due = now + self.checkpoints_interval
                with self._wake:  # coalesce what arrives meanwhile; closing cuts the wait short
                    while not self._closing and time.monotonic() < now + self.progress_interval:
                        self._wake.wait(timeout=now + self.progress_interval - time.monotonic())

    def _send(self, client: Any, state: dict[str, Any], sent: bytes | None, full: bool) -> bytes | None:
        """Progress; with ``full``, also the table and summary if the manifest changed since
        ``sent``. Returns the manifest the table now shows."""
        manifest, epoch, target = state["manifest"], state["epoch"], state["target"]
        raw = manifest.to_json() if manifest is not None else None
        try:
            client.update_artifact(self._ids["progress"], ArtifactUpdate(
                data=_percent(epoch, target), description=progress_description(self.experiment, epoch, target)))
            if full and raw != sent:
                rows = checkpoint_rows(self.store, manifest)
                # JSON (NaN as null) as create_table_artifact sends it; _sync as Prefect calls it itself
                table = TableArtifact(table=rows).format(_sync=True)  # type: ignore[call-arg]
                client.update_artifact(self._ids["table"], ArtifactUpdate(data=table))
                client.update_artifact(self._ids["markdown"], ArtifactUpdate(
                    data=summary_markdown(self.experiment, self.store, manifest, epoch, target)))
                return raw
        except Exception as error:  # the UI mirror must never stop training
            log.warning("could not update the artifacts of experiment %s: %s: %s",
                        self.experiment, type(error).__name__, error)
        return sent


def _percent(epoch: int, target: int) -> float:
    return 100.0 if target <= 0 else round(100.0 * min(epoch, target) / target, 1)

