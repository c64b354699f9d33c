"""The whole history of an experiment: one row per epoch ever trained, with the run that trained
it and what became of its checkpoint version.

Plain Python (no Prefect): the artifact publisher builds these rows on its own thread from a
cheap snapshot of the net's history (:func:`epoch_snapshot`, taken on the training thread) and
the checkpoint manifest.

Who trained an epoch. Each run claims the checkpoint directory before it trains; the manifest
keeps the last ``KEPT_CLAIMS`` claims, each with its flow run and attempt, the epoch it started
from (``start``) and the writer of the version it loaded (``from``; both recorded by the Prefect
layer since issue 12). The history's runs are a chain: the run that trains now (or wrote the
current version), the run whose version it loaded, and so on back to epoch 0 (:func:`lineage`);
each trained the epochs after its ``start`` up to the next one's. A run that resumed from an
older epoch and was later abandoned is not in the chain, and a retrained epoch shows the run
that trained it last. For claims recorded before ``from`` existed, the chain goes on with the
newest earlier claim that started before (only ``epoch``, the current epoch when it claimed,
stands for ``start``). Epochs older than the chain show ``earlier run`` when claims may have
been dropped (the list is full), else ``fit``: they were trained without a flow (plain
``net.fit``, or skorch).

What became of its version (``checkpoint``): the version of *this* history is the kept version
of that epoch written by the run that trained it (after a resume from an older epoch, several
versions can hold one epoch: the others belong to a history that was abandoned); without a
known trainer, the newest version of the epoch. It is ``current``, ``best`` (or
``current, best``), ``kept``, ``pruned`` (committed once, since let go by retention) or
``not saved`` (the Checkpoint's ``event_cp`` says it saved nothing that epoch).

>>> snapshot = [{"epoch": 1, "train_loss": 0.9, "dur": 0.1, "saved": True},
...             {"epoch": 2, "train_loss": 0.5, "dur": 0.1, "saved": True}]
>>> claims = [{"session": "a", "flow_run_name": "gentle-fox", "run_count": 1, "start": 0, "from": None},
...           {"session": "b", "flow_run_name": "brave-owl", "run_count": 1, "start": 1, "from": "a"}]
>>> [(r["epoch"], r["run"], r["checkpoint"]) for r in history_rows(snapshot, claims, [])]
[(1, 'gentle-fox', 'pruned'), (2, 'brave-owl', 'pruned')]
>>> resume_marks(lineage(claims))
[(1, 'run brave-owl')]
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from ..checkpoint import Manifest, Version
from ..checkpoint.store import KEPT_CLAIMS
from ..reporting import is_reported_metric, metric_names_of

EARLIER_RUN = "earlier run"  # trained by a run whose claim the manifest no longer keeps
PLAIN_FIT = "fit"  # trained without a flow: net.fit, or skorch


def epoch_snapshot(history: Iterable[Mapping[str, Any]], event_name: str | None = "event_cp") -> list[dict[str, Any]]:
    """What the history table and the curves need of ``history`` (a net's epoch dicts), cheap
    enough for the training thread: each epoch's number, reported metrics and ``dur`` (plain
    numbers only, no batches), and ``saved``, the Checkpoint's ``event_name`` flag (``None`` if
    it has none).

    >>> epoch_snapshot([{"epoch": 1, "train_loss": 0.5, "dur": 0.2, "event_cp": True, "batches": [{}]}])
    [{'epoch': 1, 'train_loss': 0.5, 'dur': 0.2, 'saved': True}]
    """
    return [_epoch_row(number, row, event_name) for number, row in enumerate(history, 1)]


class HistorySnapshots:
    """:func:`epoch_snapshot` again and again for one training: an epoch already seen (the same
    dict, not among the last two) is not read again, so a snapshot after each task costs
    microseconds per epoch, not a copy of the whole history. A history replaced (a retry
    restored a checkpoint) is read afresh.

    >>> snapshots, history = HistorySnapshots(), [{"epoch": e, "train_loss": 1 / e} for e in (1, 2, 3)]
    >>> first = snapshots.take(history)
    >>> history.append({"epoch": 4, "train_loss": 0.25})
    >>> [row["train_loss"] for row in snapshots.take(history)], snapshots.take(history)[0] is first[0]
    ([1.0, 0.5, 0.3333333333333333, 0.25], True)
    """

    FRESH = 2  # the newest epochs are read every time: callbacks may still write into them

    def __init__(self, event_name: str | None = "event_cp"):
        self.event_name = event_name
        self._seen: list[tuple[Mapping[str, Any], dict[str, Any]]] = []

    def take(self, history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The snapshot of ``history`` (a new list; its rows are never changed afterwards)."""
        reuse = 0
        stable = min(len(self._seen), len(history) - self.FRESH)
        while reuse < stable and self._seen[reuse][0] is history[reuse]:
            reuse += 1
        self._seen[reuse:] = [(row, _epoch_row(i, row, self.event_name))
                              for i, row in enumerate(history[reuse:], reuse + 1)]
        return [snapshot for _, snapshot in self._seen]


def _epoch_row(number: int, row: Mapping[str, Any], event_name: str | None) -> dict[str, Any]:
    kept: dict[str, Any] = {"epoch": row.get("epoch", number)}
    for key, value in row.items():
        if (key == "dur" or is_reported_metric(key)) and key not in ("epoch", "batches") \
                and isinstance(value, (int, float)) and not isinstance(value, bool):
            kept[key] = value
    kept["saved"] = row.get(event_name) if event_name else None
    return kept


def claim_start(claim: Mapping[str, Any]) -> int:
    """The epoch ``claim`` started training from: its ``start`` if recorded, else its ``epoch``
    (the current epoch when it claimed), else 0."""
    for key in ("start", "epoch"):
        value = claim.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return 0


def lineage(claims: Sequence[Mapping[str, Any]], head: str | None = None) -> list[Mapping[str, Any]]:
    """The claims whose epochs make up one history, newest first: from the claim of session
    ``head`` (else the newest claim) back through the writers of the versions each one loaded
    (see the module docstring). Damaged or cyclic links end the chain."""
    if not claims:
        return []
    by_session = {c["session"]: c for c in claims if isinstance(c.get("session"), str)}
    chain = [by_session.get(head) or claims[-1] if head else claims[-1]]
    while claim_start(chain[-1]) > 0:
        claim, start = chain[-1], claim_start(chain[-1])
        if "from" in claim:
            source = claim["from"]
            found = by_session.get(source) if isinstance(source, str) else None
        else:  # recorded before "from" existed: the newest earlier claim that started before it
            earlier = claims[:next(i for i, c in enumerate(claims) if c is claim)]
            found = next((c for c in reversed(earlier) if claim_start(c) < start), None)
        if found is None or any(found is c for c in chain) or claim_start(found) >= start:
            break
        chain.append(found)
    return chain


def trainer_of(epoch: int, chain: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The claim of ``chain`` (newest first, see :func:`lineage`) that trained ``epoch``: the
    first that started before it; ``None`` when none did."""
    for claim in chain:
        if claim_start(claim) < epoch:
            return claim
    return None


def run_label(claim: Mapping[str, Any] | None, claims_full: bool) -> tuple[str, Any]:
    """The ``run`` and ``attempt`` cells for an epoch trained by ``claim``."""
    if claim is None:
        return (EARLIER_RUN if claims_full else PLAIN_FIT), ""
    name = claim.get("flow_run_name")
    if not isinstance(name, str) or not name:
        return PLAIN_FIT, ""
    return name, claim.get("run_count", "")


def version_of(epoch: int, claim: Mapping[str, Any] | None, versions: Sequence[Version]) -> Version | None:
    """The kept version of ``epoch`` in this history: written by ``claim``'s session when the
    trainer is known, else the newest version of that epoch."""
    same = [v for v in versions if v.epoch == epoch]
    session = claim.get("session") if claim is not None else None
    if session:
        same = [v for v in same if v.writer.get("session") == session]
    return max(same, key=lambda v: v.id, default=None)


def version_state(version: Version | None, manifest: Manifest | None, saved: Any) -> str:
    """``current``, ``best``, ``current, best``, ``kept``, ``pruned`` or ``not saved``."""
    if version is None or manifest is None:
        return "not saved" if saved is False else "pruned"
    marks = [name for name in ("current", "best") if getattr(manifest, name) == version.id]
    return ", ".join(marks) or "kept"


def history_rows(snapshot: Sequence[Mapping[str, Any]], claims: Sequence[Mapping[str, Any]],
                 versions: Sequence[Version], manifest: Manifest | None = None, head: str | None = None
                 ) -> list[dict[str, Any]]:
    """One table row per epoch of ``snapshot`` (see :func:`epoch_snapshot`): epoch, the
    reported metrics (every row has the same columns), ``dur``, the ``run`` and ``attempt``
    that trained it, the state of its ``checkpoint`` version and its ``version`` id (``""``
    when not kept). ``head`` is the session of the run whose history it is (see
    :func:`lineage`). See the module docstring for the rules."""
    names = [name for name in metric_names_of(snapshot) if name != "saved"]
    full = len(claims) >= KEPT_CLAIMS
    chain = lineage(claims, head)
    rows = []
    for row in snapshot:
        epoch = row["epoch"]
        claim = trainer_of(epoch, chain) if isinstance(epoch, int) else None
        run, attempt = run_label(claim, full)
        version = version_of(epoch, claim, versions) if isinstance(epoch, int) else None
        rows.append({
            "epoch": epoch,
            **{name: _cell(row.get(name)) for name in names},
            "dur": _cell(row.get("dur"), 3),
            "run": run,
            "attempt": attempt,
            "checkpoint": version_state(version, manifest, row.get("saved")),
            "version": version.id if version is not None else "",
        })
    return rows


def experiment_rows(snapshot: Sequence[Mapping[str, Any]], manifest: Manifest | None, head: str | None = None
                    ) -> list[dict[str, Any]]:
    """:func:`history_rows` of ``snapshot`` against ``manifest``'s claims and kept versions;
    ``head``: the session of the run it belongs to (default: the current version's writer)."""
    if manifest is None:
        return history_rows(snapshot, [], [])
    return history_rows(snapshot, manifest.claims, manifest.versions, manifest, history_head(manifest, head))


def history_head(manifest: Manifest | None, head: str | None = None) -> str | None:
    """``head`` if ``manifest`` keeps its claim, else the session that wrote the current version."""
    if manifest is None:
        return None
    if head and any(claim.get("session") == head for claim in manifest.claims):
        return head
    current = manifest.version(manifest.current)
    session = current.writer.get("session") if current else None
    return session if isinstance(session, str) else None


def loaded_from(manifest: Manifest, epoch: int) -> str | None:
    """The session that wrote the version a run starting at ``epoch`` loaded (its claim's
    ``from``): of ``manifest``'s versions of that epoch the current, else the best, else the
    newest; ``None`` from scratch or when none is kept."""
    same = [v for v in manifest.versions if v.epoch == epoch] if epoch > 0 else []
    preferred = [v for v in same if v.id == manifest.current] or [v for v in same if v.id == manifest.best] or same
    source = max(preferred, key=lambda v: v.id, default=None)
    session = source.writer.get("session") if source else None
    return session if isinstance(session, str) else None


def resume_marks(chain: Sequence[Mapping[str, Any]], last_epoch: int | None = None) -> list[tuple[int, str]]:
    """Where a run took over, for the curves: ``(epoch it started from, label)`` for each claim
    of ``chain`` (see :func:`lineage`) that started after epoch 0 or is a later attempt of its
    flow run, oldest first; not one that started at ``last_epoch`` or later (it trained
    nothing shown)."""
    marks = []
    for claim in reversed(chain):
        start = claim_start(claim)
        attempt = claim.get("run_count")
        if last_epoch is not None and start >= last_epoch:
            continue
        if start > 0 or (isinstance(attempt, int) and attempt > 1):
            name, _ = run_label(claim, False)
            later = isinstance(attempt, int) and attempt > 1
            marks.append((start, f"run {name}, attempt {attempt}" if later else f"run {name}"))
    return marks


def _cell(value: Any, digits: int = 6) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, digits)
    return value
