"""An experiment in the Prefect UI: its checkpoints, its whole history, a summary with curves and
code, and a progress bar.

Each is created once per training run under a key of the experiment (``<slug>-checkpoints``,
``<slug>-history``, ``<slug>-latest``, ``<slug>-progress``), so the flow run's Artifacts tab
shows this run's four and the Artifacts page shows each experiment's latest. They are then
updated in place, on a helper thread that sends only the newest state, at most every few
seconds, and in full when training ends: a slow API never slows training down, and a failing
one only logs a warning. The training thread hands over a cheap snapshot of the history
(:func:`~.experiment_history.epoch_snapshot`); rows and curves are made on the helper thread,
the curves only when the history or the current/best versions changed.
"""
from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Sequence, cast
from uuid import UUID

from prefect.artifacts import (
    TableArtifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
)
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactUpdate

from .. import curves
from ..checkpoint import CheckpointStore, Manifest, Version
from .experiment_history import experiment_rows, history_head, lineage, resume_marks
from .links import artifact_key_url
from .loading import LINK_EXPIRES_ENV, LoadGuide, cli_commands, load_snippet
from .records import SHA256_SHOWN, checkpoint_record, checkpoint_rows, markdown_location

log = logging.getLogger("prefect_torch.orchestration")
CURVES_SHARE = 0.02  # during training, the curves take at most this share of the time (bench/curves_cost.py)
PLOT_EXTRA = "pip install 'prefect-torch[plot]'"


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


def history_description(experiment: str) -> str:
    return (f"Every epoch of experiment **{experiment}**'s history (the current version's), oldest first: its "
            "metrics, duration in seconds, the flow run and attempt that trained it (*earlier run*: one the "
            "manifest no longer remembers; *fit*: trained outside a flow), and its checkpoint version: "
            "*current*, *best*, *kept*, *pruned* (let go by retention) or *not saved*.")


def summary_markdown(experiment: str, store: CheckpointStore, manifest: Manifest | None, epoch: int,
                     target: int, *, guide: LoadGuide | None = None, images: Mapping[str, str] | None = None,
                     curves_note: str | None = None, now: float | None = None,
                     tables: Mapping[str, str] | None = None) -> str:
    """The experiment's state for people: where the checkpoints are, links to its tables in the UI
    (``tables``: URL by title), its curves (``images``: markdown images by name, or
    ``curves_note`` saying why there are none), the current and best versions with their files
    (S3: download links) and, with a ``guide``, the Python and the commands that load each of them."""
    url = store.url
    lines = [f"# Experiment `{experiment}`", "",
             f"Trained **{epoch}** of {target} epochs. Checkpoints: {markdown_location(url)}", ""]
    if tables:
        lines += [" · ".join(f"[{title}]({link})" for title, link in tables.items()), ""]
    if guide is not None and guide.relative:
        lines += [f"Paths below are relative to the working directory of the run, `{guide.workdir}` "
                  f"(the checkpoints: `{os.path.normpath(os.path.join(guide.workdir, guide.dirname))}`); run the code there.", ""]
    if images:
        lines += [*images.values(), ""]
    elif curves_note:
        lines += [curves_note, ""]
    same = manifest is not None and manifest.best == manifest.current
    expiry: str | None = None
    for which in ("current", "best"):
        record = checkpoint_record(store, manifest, which)
        version = manifest.version(getattr(manifest, which)) if manifest else None
        if record is None or version is None or (which == "best" and same):
            continue
        title = "Current and best" if which == "current" and same else which.capitalize()
        metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(record["metrics"].items()))
        lines += [f"## {title}: epoch {record['epoch']} (version {record['version']})", "",
                  f"{metrics}  ", f"sha256 of the weights: `{record['sha256']}`", ""]
        seconds = guide.link_seconds if guide is not None else None
        for name in version.files:
            link = _download_link(store, version, name, seconds) if seconds else None
            where = markdown_location(store.file_url(version, name))
            lines.append(f"- {name}: [download]({link}) ({where})" if link else f"- {name}: {where}")
            if link and seconds:
                expiry = _expiry(now, seconds)
        lines.append("")
        if guide is not None:
            lines += load_section(guide, version.id)
    if expiry:
        lines += [f"The download links work without credentials until {expiry} (`{LINK_EXPIRES_ENV}` where the flow "
                  "runs sets how many seconds they last, at most 7 days).", ""]
    if manifest is None or not manifest.versions:
        lines.append("No checkpoint committed yet.")
    lines += ["", f"Check the files: `prefect-torch verify {url}`. A re-run of this flow with the same "
              "experiment resumes from the current version."]
    return "\n".join(lines)


def load_section(guide: LoadGuide, version: int) -> list[str]:
    """Markdown lines: the Python and the commands that load ``version``."""
    how = ("Load it into a new net and predict" if guide.runnable else
           "Load it into a new net and predict (fill in the lines marked `<- fill in`)")
    return [f"{how}, from a new shell in `{guide.workdir}` with the project's environment active:", "",
            "```python", load_snippet(guide, version), "```", "", "From the shell:", "",
            "```bash", *cli_commands(guide, version), "```", ""]


def _download_link(store: CheckpointStore, version: Version, name: str, seconds: int) -> str | None:
    try:
        return store.download_url(version, name, expires=seconds)
    except Exception as error:  # no credentials where the flow runs, a file system without links...
        log.debug("no download link for %s: %s: %s", name, type(error).__name__, error)
        return None


def _expiry(now: float | None, seconds: int) -> str:
    moment = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc) + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def curve_images(snapshot: Sequence[Mapping[str, Any]], manifest: Manifest | None, head: str | None = None
                 ) -> tuple[dict[str, str], str | None]:
    """The summary's curves as markdown images by name (loss, the scoring metric), with the
    current and best epochs and each resume of the history of run ``head`` (a writer session,
    see :func:`~.experiment_history.lineage`) marked; or no images and a line saying why."""
    if not curves.curves_available():
        return {}, f"Curves of the losses and scores: `{PLOT_EXTRA}` where the flow runs (matplotlib)."
    if not snapshot:
        return {}, None
    current = manifest.version(manifest.current) if manifest else None
    best = manifest.version(manifest.best) if manifest else None
    chain = lineage(manifest.claims, history_head(manifest, head)) if manifest else []
    marks = resume_marks(chain, snapshot[-1].get("epoch"))
    pngs = curves.training_curves(list(snapshot), current=current.epoch if current else None,
                                  best=best.epoch if best else None, resumes=marks,
                                  scoring=scoring_metric(snapshot))
    return {name: curves.markdown_image(png, f"{name} curve") for name, png in pngs.items()}, None


def curves_delay(draw_seconds: float, interval: float) -> float:
    """Seconds to wait after a drawing that took ``draw_seconds`` before the next one during
    training: the table's ``interval``, or longer so that drawing stays within
    :data:`CURVES_SHARE` of the time.

    >>> curves_delay(0.05, 5.0), curves_delay(0.4, 5.0)
    (5.0, 20.0)
    """
    return max(interval, draw_seconds / CURVES_SHARE)


def scoring_metric(snapshot: Sequence[Mapping[str, Any]]) -> str | None:
    """The score to plot beside the losses: the first validation score that is not a loss.

    >>> scoring_metric([{"epoch": 1, "train_loss": 0.5, "valid_loss": 0.4, "valid_acc": 0.8, "dur": 1.0}])
    'valid_acc'
    """
    names = [k for row in snapshot[-1:] for k in row if k not in ("epoch", "dur", "saved") and not k.endswith("loss")]
    return next((n for n in names if n.startswith("valid")), names[0] if names else None)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


class ArtifactPublisher:
    """Creates the four artifacts of one training run and keeps them up to date: progress at
    most every ``progress_interval`` seconds, the tables and the summary (curves drawn again
    only when the history changed) at most every ``checkpoints_interval`` seconds (each update
    costs the server tens of ms of CPU), and all once more when training ends. ``guide`` adds
    the code that loads each version to the summary."""

    def __init__(self, experiment: str, key: str, store: CheckpointStore, progress_interval: float = 1.0,
                 checkpoints_interval: float = 5.0, guide: LoadGuide | None = None):
        self.experiment, self.key, self.store, self.guide = experiment, key, store, guide
        self.progress_interval, self.checkpoints_interval = progress_interval, checkpoints_interval
        self._ids: dict[str, UUID] = {}
        self._pending: dict[str, Any] | None = None
        self._wake = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._drawn: tuple[Any, ...] | None = None  # what the curves in ``_images`` show
        self._next_drawing = 0.0  # monotonic time before which training's curves are not drawn again
        self._images: tuple[dict[str, str], str | None] = ({}, None)
        self._tables: dict[str, str] = {}  # the summary's links to the tables, in the server's default UI

    @property
    def _session(self) -> str | None:
        """The writer session of the run training now (its claim heads the history shown)."""
        session = self.store.writer.get("session")
        return session if isinstance(session, str) else None

    def start(self, manifest: Manifest | None, epoch: int, target: int,
              history: Sequence[Mapping[str, Any]] = ()) -> None:
        """Create the artifacts (in the flow run's context, which they are attached to); the
        helper thread then draws the curves."""
        url, snapshot = self.store.url, list(history)
        links = {"Every epoch": artifact_key_url(f"{self.key}-history"),
                 "Kept versions": artifact_key_url(f"{self.key}-checkpoints")}
        self._tables = {title: link for title, link in links.items() if link}
        self._ids["table"] = cast(UUID, create_table_artifact(
            checkpoint_rows(self.store, manifest), key=f"{self.key}-checkpoints",
            description=table_description(self.experiment, url)))
        self._ids["history"] = cast(UUID, create_table_artifact(
            experiment_rows(snapshot, manifest, self._session), key=f"{self.key}-history",
            description=history_description(self.experiment)))
        self._ids["markdown"] = cast(UUID, create_markdown_artifact(
            self._summary(manifest, epoch, target), key=f"{self.key}-latest",
            description=f"Experiment {self.experiment}: curves, current and best checkpoint, how to load them"))
        self._ids["progress"] = cast(UUID, create_progress_artifact(
            _percent(epoch, target), key=f"{self.key}-progress",
            description=progress_description(self.experiment, epoch, target)))
        context = contextvars.copy_context()  # the API settings of this run
        self._thread = threading.Thread(target=context.run, args=(self._loop,), daemon=True,
                                        name=f"prefect-torch-artifacts-{self.key}")
        self._thread.start()
        if snapshot:
            self.update(manifest, epoch, target, snapshot)

    def update(self, manifest: Manifest | None, epoch: int, target: int,
               history: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Show this state soon (replacing any state not sent yet); ``history`` is a snapshot
        (:func:`~.experiment_history.epoch_snapshot`) the caller no longer changes."""
        with self._wake:
            self._pending = {"manifest": manifest, "epoch": epoch, "target": target, "history": history}
            self._wake.notify()

    def close(self, manifest: Manifest | None = None, epoch: int | None = None, target: int | None = None,
              history: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Send the final state (if given) in full, then stop the helper thread."""
        with self._wake:
            if epoch is not None:
                self._pending = {"manifest": manifest, "epoch": epoch, "target": target or epoch, "history": history}
            self._closing = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _loop(self) -> None:
        sent: Any = None
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
                sent = self._send(client, state, sent, full, closing)
                if full:
                    checkpoints_due = now + self.checkpoints_interval
                with self._wake:  # coalesce what arrives meanwhile; closing cuts the wait short
                    while not self._closing and time.monotonic() < now + self.progress_interval:
                        self._wake.wait(timeout=now + self.progress_interval - time.monotonic())

    def _send(self, client: Any, state: dict[str, Any], sent: Any, full: bool, final: bool = False) -> Any:
        """Progress; with ``full``, also the tables and summary if the manifest or the history
        changed since ``sent`` (``final``: training ended). Returns what the tables now show."""
        manifest, epoch, target, history = state["manifest"], state["epoch"], state["target"], state["history"]
        shown = (manifest.to_json() if manifest is not None else None, history)
        try:
            client.update_artifact(self._ids["progress"], ArtifactUpdate(
                data=_percent(epoch, target), description=progress_description(self.experiment, epoch, target)))
            if full and shown != sent:
                # JSON (NaN as null) as create_table_artifact sends it; _sync as Prefect calls it itself
                table = TableArtifact(table=checkpoint_rows(self.store, manifest)).format(_sync=True)  # type: ignore[call-arg]
                client.update_artifact(self._ids["table"], ArtifactUpdate(data=table))
                if history is not None:
                    rows = TableArtifact(table=experiment_rows(history, manifest, self._session)).format(_sync=True)  # type: ignore[call-arg]
                    client.update_artifact(self._ids["history"], ArtifactUpdate(data=rows))
                    self._draw(history, manifest, final)
                client.update_artifact(self._ids["markdown"], ArtifactUpdate(
                    data=self._summary(manifest, epoch, target)))
                return shown
        except Exception as error:  # the UI mirror must never stop training
            log.warning("could not update the artifacts of experiment %s: %s: %s",
                        self.experiment, type(error).__name__, error)
        return sent

    def _draw(self, history: Sequence[Mapping[str, Any]], manifest: Manifest | None, final: bool = False) -> None:
        """Draw the curves again if what they show changed (on the helper thread only). While
        training goes on, not sooner than :func:`curves_delay` after the last drawing: matplotlib
        holds the GIL, so drawing competes with a training loop that needs it."""
        drawn = (history, manifest.current if manifest else None, manifest.best if manifest else None,
                 tuple(claim.get("session") for claim in manifest.claims) if manifest else ())
        if drawn == self._drawn or (not final and time.monotonic() < self._next_drawing):
            return
        began = time.perf_counter()
        try:
            self._images = curve_images(history, manifest, self._session)
        except Exception as error:  # a plotting problem costs the curves, not the summary
            log.warning("could not draw the curves of experiment %s: %s: %s", self.experiment,
                        type(error).__name__, error)
            self._images = ({}, None)
        seconds = time.perf_counter() - began
        self._drawn = drawn
        self._next_drawing = time.monotonic() + curves_delay(seconds, self.checkpoints_interval)

    def _summary(self, manifest: Manifest | None, epoch: int, target: int) -> str:
        images, note = self._images
        return summary_markdown(self.experiment, self.store, manifest, epoch, target, guide=self.guide,
                                images=images, curves_note=note, tables=self._tables)


def _percent(epoch: int, target: int) -> float:
    return 100.0 if target <= 0 else round(100.0 * min(epoch, target) / target, 1)

