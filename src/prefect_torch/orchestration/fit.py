"""``fit_in_flow``: train a net inside a Prefect flow, epochs as task runs, resuming by itself."""
from __future__ import annotations

import os
from typing import Any

from prefect.exceptions import Abort

from ..callbacks import Checkpoint, LoadInitState, TrainEndCheckpoint
from ..checkpoint import CheckpointConflictError
from ..epochs import driving_epochs
from .driver import TaskDriver
from .fencing import attempt_label, newer_attempt
from .records import checkpoint_record, slug

RESUME_POLICIES = ("latest", "extend", "never")


def fit_in_flow(net: Any, X: Any, y: Any = None, *, experiment: str | None = None, resume: str | None = None,
                checkpoint: Checkpoint | None = None, epochs_per_task: int | str = 1, task_retries: int = 0,
                retry_delay_seconds: float = 0, max_resumes: int = 3, artifacts: bool = True,
                **fit_params: Any) -> dict[str, Any]:
    """Fit ``net`` in the running Prefect flow: each epoch (or ``epochs_per_task`` of them) is a
    task run, the net's :class:`~prefect_torch.callbacks.Checkpoint` commits inside it, and the
    run resumes from the last commit after a failure, a retry or a crash.

    - ``experiment``: the stable name of this training across runs and attempts (default: the
      checkpoint directory's name); artifacts are keyed by it.
    - ``resume``: ``"latest"`` continues from the current checkpoint up to ``max_epochs`` in all
      (a finished experiment does nothing), ``"extend"`` trains ``max_epochs`` more, ``"never"``
      starts over (an attempt of the same flow run still resumes its own progress). ``None``
      keeps the net's own :class:`~prefect_torch.callbacks.LoadInitState`, or acts as
      ``"latest"`` if it has none. The net's callbacks are set accordingly.
    - ``task_retries``: retries of a failed epoch task, each restoring the last commit first.
    - ``max_resumes``: attempts in a row that may start from the same checkpoint and fail
      before the experiment is considered stuck.
    - ``artifacts``: the checkpoints table, summary and progress in the Prefect UI.

    Returns the training record (JSON): ``experiment``, ``checkpoint_dir``, ``epoch``,
    ``trained_epochs``, ``current`` and ``best`` (epoch, version, uri, sha256, size, metrics),
    ``flow_run_id``, ``attempt``, ``tasks``.

    >>> from prefect import flow
    >>> from prefect_torch import NeuralNetClassifier
    >>> from prefect_torch.examples import MyModule, make_data
    >>> @flow
    ... def train(dirname: str) -> dict:
    ...     net = NeuralNetClassifier(MyModule, max_epochs=5, callbacks=[Checkpoint(monitor=None, dirname=dirname)])
    ...     return fit_in_flow(net, *make_data(), experiment="demo")
    >>> train("checkpoints/demo")["current"]["epoch"]    # doctest: +SKIP
    5
    """
    if resume is not None and resume not in RESUME_POLICIES:
        raise ValueError(f"resume={resume!r}: use one of {', '.join(map(repr, RESUME_POLICIES))}, or None")
    checkpoint = checkpoint or find_checkpoint(net)
    experiment = experiment or default_experiment(checkpoint)
    label = attempt_label(experiment)
    manifest = checkpoint.store().read_manifest()
    use_resume_policy(net, checkpoint, own_progress_policy(manifest, label, resume))
    driver = TaskDriver(checkpoint, label, slug(experiment), epochs_per_task=epochs_per_task,
                        task_retries=task_retries, retry_delay_seconds=retry_delay_seconds,
                        max_resumes=max_resumes, stop_at=earlier_attempt_target(manifest, label),
                        artifacts=artifacts)
    try:
        with driving_epochs(driver):
            net.fit(X, y, **fit_params)
    except CheckpointConflictError as error:
        newer = newer_attempt(checkpoint.store().read_manifest(), label)
        if newer is None:
            raise
        # Prefect runs this flow run twice; the newer attempt owns it, its state included: stop
        # without reporting one (what the engine does when the server aborts an attempt)
        raise Abort(f"attempt {label['run_count']} of flow run {label['flow_run_name']!r} stops: attempt "
                    f"{newer} of the same run took over experiment {experiment!r}; nothing more is "
                    "committed by this attempt, and the run's state is the newer attempt's") from error
    checkpoint.store().release()
    return training_record(net, checkpoint.store(), driver.records, label)


def training_record(net: Any, store: Any, tasks: list[dict[str, Any]], label: dict[str, Any]) -> dict[str, Any]:
    """What :func:`fit_in_flow` returns (see there), from the store's manifest and the task records."""
    manifest = store.read_manifest()
    trained = [r["epochs"] for r in tasks if r["epochs"][1] >= r["epochs"][0]]
    return {
        "experiment": label["experiment"],
        "checkpoint_dir": store.url,
        "epoch": len(net.history),
        "trained_epochs": [trained[0][0], trained[-1][1]] if trained else [],
        "current": checkpoint_record(store, manifest),
        "best": checkpoint_record(store, manifest, "best"),
        "flow_run_id": label["flow_run_id"],
        "attempt": label["run_count"],
        "tasks": len(tasks),
    }


def own_progress_policy(manifest: Any, label: dict[str, Any], resume: str | None) -> str | None:
    """``resume``, except that ``"never"`` resumes what an earlier attempt of this same flow run
    committed (a retry finishes its own training; it never picks up another run's)."""
    current = manifest.version(manifest.current) if manifest else None
    own = current is not None and current.writer.get("flow_run_id") == label["flow_run_id"]
    return "latest" if resume == "never" and own else resume


def find_checkpoint(net: Any) -> Checkpoint:
    """The net's :class:`Checkpoint` that writes a versioned directory (the one a
    :class:`LoadInitState` loads, if there are several)."""
    callbacks = [cb for _, cb in net._named_callbacks() if not isinstance(cb, type)]
    found = [cb for cb in callbacks if isinstance(cb, Checkpoint) and cb.uses_store()]
    loaded = [cb.checkpoint for cb in callbacks if isinstance(cb, LoadInitState)]
    preferred = [cb for cb in found if any(cb is other for other in loaded)]
    if len(preferred) == 1 or len(found) == 1:
        return (preferred or found)[0]
    if not found:
        hint = (" (a TrainEndCheckpoint saves only when training ends, too late to resume from)"
                if any(isinstance(cb, TrainEndCheckpoint) for cb in callbacks) else "")
        raise ValueError("fit_in_flow needs the net to checkpoint as it trains: add "
                         "Checkpoint(monitor=None, dirname=...) to its callbacks, so a resumed run loses at "
                         f"most one epoch{hint}")
    raise ValueError(f"the net has {len(found)} Checkpoint callbacks; pass the one to resume from as "
                     "fit_in_flow(..., checkpoint=...)")


def default_experiment(checkpoint: Checkpoint) -> str:
    """The checkpoint directory's name (and ``fn_prefix``), e.g. ``'exp1'`` for ``dirname='runs/exp1'``."""
    dirname = os.fspath(checkpoint.dirname or ".").rstrip("/")
    name = os.path.basename(dirname if "://" in dirname else os.path.abspath(dirname))
    return f"{name}-{checkpoint.fn_prefix.strip('_-')}" if checkpoint.fn_prefix.strip("_-") else name


def earlier_attempt_target(manifest: Any, label: dict[str, Any]) -> int | None:
    """The epoch an earlier attempt of this same flow run trained towards (it finishes that, no more)."""
    for claim in reversed(getattr(manifest, "claims", None) or []):
        if claim.get("flow_run_id") == label["flow_run_id"] and claim.get("run_count", 0) < label["run_count"]:
            return claim.get("target")
    return None


def use_resume_policy(net: Any, checkpoint: Checkpoint, resume: str | None) -> None:
    """Make the net's :class:`LoadInitState` for ``checkpoint`` follow ``resume`` (see :func:`fit_in_flow`)."""
    entries = list(net.callbacks) if isinstance(net.callbacks, (list, tuple)) else []

    def loads_checkpoint(entry: Any) -> bool:
        cb = entry[1] if isinstance(entry, tuple) else entry
        return isinstance(cb, LoadInitState) and cb.checkpoint is checkpoint

    ours = [i for i, entry in enumerate(entries) if loads_checkpoint(entry)]
    if resume is None and ours:
        return
    kept = [entry for entry in entries if not loads_checkpoint(entry)]
    if resume != "never":
        kept.append(("resume", LoadInitState(checkpoint, until_max_epochs=resume != "extend")))
    if [id(e) for e in kept] != [id(e) for e in entries]:
        net.set_params(callbacks=kept)
