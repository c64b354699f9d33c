"""``fit_in_flow``: train a net inside a Prefect flow, epochs as task runs, resuming by itself."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator
from uuid import UUID

from prefect.exceptions import Abort
from prefect.logging import get_run_logger

from ..callbacks import Checkpoint, LoadInitState
from ..checkpoint import CheckpointConflictError
from ..epochs import driving_epochs
from ..net import NeuralNet
from .driver import TaskDriver
from .fencing import newer_attempt
from .records import checkpoint_record
from .run import Attempt, TrainingRun, check_epochs_per_task, check_resume, plan_run
from .signals import StopRequested, TrainingInterrupted

log = logging.getLogger("prefect_torch.orchestration")


def fit_in_flow(net: NeuralNet, X: Any, y: Any = None, *, experiment: str | None = None, resume: str | None = None,
                checkpoint: Checkpoint | None = None, epochs_per_task: int | str = 1, task_retries: int = 0,
                retry_delay_seconds: float = 0, max_resumes: int = 3, artifacts: bool = True,
                train_more_hint: str | None = None, data_source: str | None = None,
                data_params: dict[str, Any] | None = None, **fit_params: Any) -> dict[str, Any]:
    """Fit ``net`` in the running Prefect flow: each epoch (or ``epochs_per_task`` of them) is a
    task run, the net's :class:`~prefect_torch.callbacks.Checkpoint` commits inside it, and the
    run resumes from the last commit after a failure, a retry or a crash.

    The net is set up first (as ``net.fit`` does), so its routed parameters
    (``callbacks__checkpoint__dirname=...``) decide where it checkpoints; then one
    :class:`~prefect_torch.orchestration.TrainingRun` holds every decision of the call. The net
    is left as it was given: what this adds (a :class:`~prefect_torch.callbacks.LoadInitState`,
    the run-log sinks) exists for the call only. The first Ctrl+C or SIGTERM stops training after
    the epoch in progress commits and ends the flow run Cancelled
    (:class:`~prefect_torch.orchestration.TrainingInterrupted`); a second one acts at once.

    Parameters
    ----------
    net : NeuralNet
        The net to train; it needs a ``Checkpoint`` that writes a directory
        (``Checkpoint(monitor=None, dirname=...)`` loses at most one epoch on a crash).
    X, y
        The training data, as for ``net.fit``.
    experiment : str or None, default=None
        The stable name of this training across runs and attempts; artifacts are keyed by it.
        Default: the checkpoint directory's name (the directory training really writes).
    resume : {"latest", "extend", "never"} or None, default=None
        ``"latest"`` continues from the current checkpoint up to ``max_epochs`` in all (a
        finished experiment does nothing), ``"extend"`` trains ``max_epochs`` more, ``"never"``
        starts over (an attempt of the same flow run still resumes its own progress). ``None``
        keeps the net's own ``LoadInitState``, or acts as ``"latest"`` if it has none.
    checkpoint : Checkpoint or None, default=None
        Which of the net's ``Checkpoint`` callbacks to resume from, when it has several.
    epochs_per_task : int or "auto", default=1
        Epochs per task run; ``"auto"`` groups short epochs so Prefect's share stays near 5%.
    task_retries : int, default=0
        Retries of a failed epoch task, each restoring the last commit first.
    retry_delay_seconds : float, default=0
        Seconds Prefect waits before each of those retries.
    max_resumes : int, default=3
        Attempts in a row that may start from the same checkpoint and fail before the
        experiment is considered stuck (:class:`~prefect_torch.orchestration.ResumeLimitError`).
    artifacts : bool, default=True
        Keep the experiment's artifacts up to date in the Prefect UI: the checkpoints, the
        whole history, a summary (curves, and code that loads the current and best versions)
        and the progress.
    train_more_hint : str or None, default=None
        How to train more, in the line logged when there is nothing to train (see below), in
        the words of the flow's caller (a script says ``"raise --max-epochs"``). Default:
        ``'raise max_epochs, or pass resume="extend" to train max_epochs more'``.
    data_source : str or None, default=None
        Where the summary's code gets data to predict on: the import path
        (``'package.module:function'``) of a function returning ``(X, y)`` like the training
        data, e.g. ``'prefect_torch.examples:make_data'``; ``None`` leaves a line to fill in.
    data_params : dict or None, default=None
        Keyword arguments (plain literals) of ``data_source``.
    **fit_params
        Passed on to the net's ``fit`` (e.g. ``groups``).

    Returns
    -------
    dict
        The training record (JSON): ``experiment``, ``checkpoint_dir``, ``epoch``,
        ``trained_epochs``, ``current`` and ``best`` (epoch, version, uri, sha256, size,
        metrics), ``flow_run_id``, ``attempt``, ``tasks`` (their number), and ``timings``:
        ``task_seconds`` (the time inside each task run's body: its epochs and their commits)
        and ``close_seconds`` (the artifacts' final update when training ended).

        A run that trains no epoch (``trained_epochs`` is ``[]``: the experiment is already at
        ``max_epochs``) says so in one line of the run's logs, on the console too, e.g.
        ``experiment 'nightly' is already at epoch 20 of max_epochs=20: nothing to train
        (resume="latest"); raise max_epochs, or pass resume="extend" to train max_epochs more``.

    Raises
    ------
    TrainingInterrupted
        After a signal stopped training (the flow run is then Cancelled); ``.record`` is the
        record above with ``interrupted``: ``{"signal": ..., "epoch": ...}``.

    Examples
    --------
    >>> import tempfile
    >>> from prefect import flow
    >>> from prefect_torch import NeuralNetClassifier
    >>> from prefect_torch.examples import MyModule, make_data
    >>> @flow
    ... def train(dirname: str) -> dict:
    ...     net = NeuralNetClassifier(MyModule, max_epochs=3, verbose=0,
    ...                               callbacks=[Checkpoint(monitor=None, dirname=dirname)])
    ...     return fit_in_flow(net, *make_data(100), experiment="demo", artifacts=False)
    >>> record = train(tempfile.mkdtemp())     # doctest: +SKIP
    >>> record["trained_epochs"], record["current"]["epoch"]     # doctest: +SKIP
    ([1, 3], 3)
    """
    check_resume(resume)  # the arguments first, before anything touches the net
    check_epochs_per_task(epochs_per_task)
    attempt = Attempt.current()
    if not (net.warm_start and getattr(net, "initialized_", False)):
        net.initialize()  # what net.fit does first: routed parameters (callbacks__x__dirname) take effect
    run = plan_run(net, attempt, experiment=experiment, resume=resume, checkpoint=checkpoint,
                   epochs_per_task=epochs_per_task, task_retries=task_retries,
                   retry_delay_seconds=retry_delay_seconds, max_resumes=max_resumes, artifacts=artifacts,
                   data_source=data_source, data_params=data_params, X=X)
    driver = TaskDriver(run)
    try:
        with resume_callbacks(net, run), driver.interrupts, driving_epochs(driver):
            net.partial_fit(X, y, **fit_params)  # net.fit without a second initialize
    except StopRequested as stop:
        run.store.release()  # a clean stop: the next run need not wait for this one
        raise interrupted(run, {**training_record(run, net, driver.records, driver.close_seconds),
                                "interrupted": {"signal": stop.signal, "epoch": len(net.history)}}) from None
    except CheckpointConflictError as error:
        newer = newer_attempt(run.store.read_manifest(), run.label)
        if newer is None:
            raise
        # Prefect runs this flow run twice; the newer attempt owns it, its state included: stop
        # without reporting one (what the engine does when the server aborts an attempt)
        raise Abort(f"attempt {attempt.run_count} of flow run {attempt.flow_run_name!r} stops: attempt "
                    f"{newer} of the same run took over experiment {run.experiment!r}; nothing more is "
                    "committed by this attempt, and the run's state is the newer attempt's") from error
    run.store.release()
    record = training_record(run, net, driver.records, driver.close_seconds)
    if not record["trained_epochs"]:
        get_run_logger().info(nothing_to_train(run, net, train_more_hint))
    return record


def nothing_to_train(run: TrainingRun, net: NeuralNet, hint: str | None = None) -> str:
    """The line a run of ``net`` that trained no epoch logs: the experiment, its epoch, why, and
    how to train more (``hint``, or the arguments of :func:`fit_in_flow` that do).

    >>> import tempfile
    >>> from prefect_torch import NeuralNetClassifier
    >>> from prefect_torch.examples import MyModule
    >>> cp = Checkpoint(monitor=None, dirname=tempfile.mkdtemp())
    >>> net = NeuralNetClassifier(MyModule, max_epochs=0, callbacks=[cp]).initialize()
    >>> run = TrainingRun("nightly", "nightly", cp, cp.store(), Attempt("3f2a", "gentle-fox", 1), "latest")
    >>> print(nothing_to_train(run, net))
    experiment 'nightly' is already at epoch 0 of max_epochs=0: nothing to train (resume="latest"); raise max_epochs, or pass resume="extend" to train max_epochs more
    """
    epoch, max_epochs = len(net.history), net.max_epochs
    if run.resume == "extend":  # only max_epochs=0 trains nothing more
        return (f"experiment {run.experiment!r} is at epoch {epoch}: nothing to train (resume=\"extend\" with "
                f"max_epochs={max_epochs}); {hint or 'raise max_epochs'}")
    if epoch < max_epochs and run.stop_at is not None:  # a later attempt stops where the first one aimed
        return (f"experiment {run.experiment!r} is already at epoch {epoch}, where an earlier attempt of flow "
                f"run {run.attempt.flow_run_name!r} was training to: nothing to train in attempt "
                f"{run.attempt.run_count}")
    if epoch < max_epochs:
        return (f"experiment {run.experiment!r} is at epoch {epoch} of max_epochs={max_epochs}: nothing to "
                "train (a callback's epoch_limit ends training here)")
    own_loader = run.resume is None and any(isinstance(cb, LoadInitState) and cb.checkpoint is run.checkpoint
                                            for _, cb in net.callbacks_)
    why = "" if own_loader else f' (resume="{run.resume or "latest"}")'
    hint = hint or 'raise max_epochs, or pass resume="extend" to train max_epochs more'
    return f"experiment {run.experiment!r} is already at epoch {epoch} of max_epochs={max_epochs}: " \
           f"nothing to train{why}; {hint}"


def training_record(run: TrainingRun, net: NeuralNet, tasks: list[dict[str, Any]], close_seconds: float = 0.0
                    ) -> dict[str, Any]:
    """What :func:`fit_in_flow` returns (see there), from the store's manifest and the task records."""
    manifest = run.store.read_manifest()
    trained = [r["epochs"] for r in tasks if r["epochs"][1] >= r["epochs"][0]]
    return {
        "experiment": run.experiment,
        "checkpoint_dir": run.store.url,
        "epoch": len(net.history),
        "trained_epochs": [trained[0][0], trained[-1][1]] if trained else [],
        "current": checkpoint_record(run.store, manifest),
        "best": checkpoint_record(run.store, manifest, "best"),
        "flow_run_id": run.attempt.flow_run_id,
        "attempt": run.attempt.run_count,
        "tasks": len(tasks),
        "timings": {"task_seconds": [r["task_seconds"] for r in tasks], "close_seconds": round(close_seconds, 6)},
    }


def interrupted(run: TrainingRun, record: dict[str, Any]) -> TrainingInterrupted:
    """End the flow run Cancelled, saying why and where training stopped; the error to raise."""
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    current, stop = record["current"], record["interrupted"]
    where = (f"after the commit of epoch {current['epoch']} (version {current['version']}), which a re-run "
             "resumes from" if current else "before any commit; a re-run starts from the beginning")
    message = (f"experiment {run.experiment!r}: interrupted by {stop['signal']} at epoch {stop['epoch']}; "
               f"training stopped {where}")
    error = TrainingInterrupted(message, record)
    try:
        with get_client(sync_client=True) as client:
            result: Any = client.set_flow_run_state(UUID(run.attempt.flow_run_id), Cancelled(message=message),
                                                    force=True)
        error.state = result.state  # type: ignore[attr-defined]  # what the engine then reports as final
    except Exception as failure:  # the server is gone: the engine reports the run as it can
        log.warning("could not mark flow run %s Cancelled: %s: %s", run.attempt.flow_run_name,
                    type(failure).__name__, failure)
    return error


@contextmanager
def resume_callbacks(net: NeuralNet, run: TrainingRun) -> Iterator[None]:
    """For the duration of the call, the initialized net's callbacks load ``run.checkpoint`` as
    ``run.resume`` says (see :func:`fit_in_flow`): a :class:`LoadInitState` is added, or the net's
    own one for that checkpoint left out, in ``net.callbacks_`` only; afterwards ``callbacks_``
    is the list it was, and ``net.callbacks`` (its parameter) is never touched."""
    original = list(net.callbacks_)
    theirs = [entry for entry in original
              if isinstance(entry[1], LoadInitState) and entry[1].checkpoint is run.checkpoint]
    if run.resume is None and theirs:
        yield
        return
    during = [entry for entry in original if not any(entry is other for other in theirs)]
    if run.resume != "never":
        names = {name for name, _ in original}
        name = next(n for n in ("resume", "fit_in_flow_resume", "fit_in_flow_resume_") if n not in names)
        loader = LoadInitState(run.checkpoint, until_max_epochs=run.resume != "extend").initialize()
        during.insert(0, (name, loader))  # first, as LoadInitState's call_order puts it
    net.callbacks_ = during
    try:
        yield
    finally:
        net.callbacks_ = original
