"""Epochs as Prefect task runs: the driver that ``fit_in_flow`` installs in the net's fit loop.

Each task run trains one epoch (``epoch-7``) or a few (``epochs-7-9``); the Checkpoint callback
commits inside it, and it returns a small record: the epochs, their last metrics and the current
checkpoint (version, uri, sha256), never the net. Epoch tasks use no Prefect cache: the default
policy would hash (cloudpickle) the net on every call, and a cached epoch would skip training.

A task that fails after training began left half-updated weights in memory; its retry first puts
the net back to the last commit (or, before any, to the state the run started from), so retries
end exactly where an undisturbed run would.
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Any, Callable

from prefect import task
from prefect.cache_policies import NO_CACHE

from .. import train_state
from ..callbacks.checkpoint import load_checkpoint
from ..checkpoint import CheckpointConflictError, CheckpointStore, Manifest
from ..exceptions import StopTraining
from ..history import epoch_metrics
from .artifacts import ArtifactPublisher
from .experiment_history import HistorySnapshots, loaded_from
from .fencing import ResumeLimitError, claim_check, mark_taken_over
from .logs import print_log_to_run_logs
from .records import checkpoint_record
from .run import TrainingRun
from .signals import InterruptRequests, StopRequested

AUTO_OVERHEAD = 0.05  # with epochs_per_task="auto", Prefect's share of the time to aim for
TASK_COST = 0.05  # seconds a task run costs at least beyond its epochs: ~10 ms here, ~35 ms of server
# CPU recording it afterwards, which competes with training on a small machine (bench/orchestration_overhead.py)
MAX_TASK_SECONDS = 60.0  # the longest a task may run, so the UI keeps moving


def worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed epoch task, unless it failed because another run took the checkpoints over
    (or an experiment is stuck): that does not get better by retrying."""
    error = state.data if isinstance(state.data, BaseException) else None
    return not isinstance(error, (CheckpointConflictError, ResumeLimitError))


@task(cache_policy=NO_CACHE, persist_result=False, task_run_name="{name}", retry_condition_fn=worth_retrying)
def train_epochs(name: str, run: "EpochRun", last: int) -> dict[str, Any]:
    """Train ``run``'s net through epoch ``last`` (a Prefect task; see the module docstring)."""
    return run.train_through(last)


class EpochRun:
    """The state of one fit driven as tasks: what a retry restores, what records report."""

    def __init__(self, net: Any, one_epoch: Callable[[], None], checkpoint: Any, store: CheckpointStore,
                 start: dict | None, stop_requested: Callable[[], bool] = lambda: False):
        self.net, self.one_epoch, self.checkpoint, self.store = net, one_epoch, checkpoint, store
        self.stop_requested = stop_requested  # a signal asked to stop: no new epoch begins
        self.start = start  # snapshot to restore before anything of this run is committed
        self.interrupted = False  # the last task ended with an exception
        self.manifest: Manifest | None = None  # as the last task left it

    def train_through(self, last: int) -> dict[str, Any]:
        net, entered = self.net, time.perf_counter()
        if self.interrupted:
            self.restore()
        self.interrupted = True
        first, began, stopped = len(net.history) + 1, time.perf_counter(), False
        try:
            while len(net.history) < last and not self.stop_requested():
                self.one_epoch()
        except StopTraining:  # EarlyStopping: training ends, the net is kept
            stopped = True
        self.interrupted = False
        seconds = time.perf_counter() - began
        self.manifest = manifest = self.store.read_manifest()
        newest = manifest.version(manifest.current) if manifest else None
        if newest is not None and newest.writer.get("session") == self.store.writer.get("session"):
            self.start = None  # this run's own commit is the restore point from now on
        return {"epochs": [first, len(net.history)], "seconds": round(seconds, 6), "stopped": stopped,
                "metrics": epoch_metrics(net.history[-1]) if len(net.history) else {},
                "checkpoint": checkpoint_record(self.store, manifest),
                "task_seconds": round(time.perf_counter() - entered, 6)}

    def restore(self) -> None:
        """Undo a failed task: back to the last commit, or to the start before there is one."""
        self.checkpoint.wait()
        if self.start is not None:
            train_state.restore_snapshot(self.net, self.start)
            return
        state = load_checkpoint(self.net, self.checkpoint)
        if state:
            train_state.restore(self.net, state)


class TaskDriver:
    """Drives a fit's epochs as :func:`train_epochs` task runs (an ``epochs.EpochDriver``)."""

    def __init__(self, run: TrainingRun):
        self.run = run
        self.task = train_epochs.with_options(retries=run.task_retries, retry_delay_seconds=run.retry_delay_seconds)
        self.records: list[dict[str, Any]] = []
        self.close_seconds = 0.0  # the artifacts' final flush, when training ended
        self.interrupts = InterruptRequests()  # fit_in_flow installs them around the fit
        self.snapshots = HistorySnapshots(run.checkpoint.event_name)  # for the artifacts, taken after each task

    def __call__(self, net: Any, epochs: int, one_epoch: Callable[[], None]) -> None:
        run, store = self.run, self.run.store
        start_epoch = len(net.history)
        target = start_epoch + epochs if run.stop_at is None else min(start_epoch + epochs, run.stop_at)
        # "start", "from": the epoch this run trains from and who wrote it, for the history (see experiment_history)
        loaded_manifest = store.read_manifest()
        source = loaded_from(loaded_manifest, start_epoch) if loaded_manifest else None
        before = store.claim({**run.label, "target": target, "start": start_epoch, "from": source},
                             claim_check(run.label, run.max_resumes))
        mark_taken_over(before, run.label)
        loaded = before.version(before.current)
        start = None if loaded is not None and loaded.epoch == start_epoch else train_state.snapshot(net)
        epochs_run = EpochRun(net, one_epoch, run.checkpoint, store, start,
                              stop_requested=lambda: self.interrupts.requested is not None)
        publisher = ArtifactPublisher(run.experiment, run.key, store, guide=run.guide) if run.artifacts else None
        if publisher is not None:
            publisher.start(before if before.versions else None, start_epoch, target, self.snapshot(net))
        try:
            with print_log_to_run_logs(net):  # the callbacks exist now: fit initialized them
                self._run_tasks(epochs_run, target, publisher)
        finally:
            if publisher is not None:
                run.checkpoint.wait()
                closing = time.perf_counter()
                publisher.close(store.read_manifest(), len(net.history), target, self.snapshot(net))
                self.close_seconds = time.perf_counter() - closing

    def snapshot(self, net: Any) -> list[dict[str, Any]]:
        """What the history artifact and the curves need of the net's history (cheap, no batches)."""
        return self.snapshots.take(net.history)

    def _run_tasks(self, run: EpochRun, target: int, publisher: ArtifactPublisher | None) -> None:
        """One task run per chunk of epochs up to ``target``; EarlyStopping ends them early."""
        net = run.net  # (its history is replaced when a retry restores a checkpoint: never keep it)
        per_task = self.run.epochs_per_task
        size = per_task if isinstance(per_task, int) else 1
        overheads: list[float] = []
        while len(net.history) < target:
            if self.interrupts.requested:
                run.checkpoint.wait()  # the last epoch's commit ends before training stops
                self.interrupts.acted_on()
                raise StopRequested(self.interrupts.requested)
            first = len(net.history) + 1
            last = min(target, first + size - 1)
            began = time.perf_counter()
            record = self.task(f"epoch-{first}" if first == last else f"epochs-{first}-{last}", run, last)
            self.records.append(record)
            if publisher is not None:
                publisher.update(run.manifest, len(net.history), target, self.snapshot(net))
            if record["stopped"]:
                raise StopTraining  # the net's fit ends training as it does for EarlyStopping
            if per_task == "auto":
                overheads.append(time.perf_counter() - began - record["seconds"])
                size = auto_size(self.records, overheads)


def auto_size(records: list[dict[str, Any]], overheads: list[float]) -> int:
    """Epochs per task so that Prefect's part stays near AUTO_OVERHEAD of the time: from the
    median epoch time of the task ``records`` so far and the median of the ``overheads`` seen
    around them (wall time minus training), never less than TASK_COST."""
    per_epoch = max(statistics.median(r["seconds"] / max(1, r["epochs"][1] - r["epochs"][0] + 1) for r in records),
                    1e-6)
    overhead = max(statistics.median(overheads), TASK_COST)
    wanted = math.ceil(round(overhead / (AUTO_OVERHEAD * per_epoch), 6))
    return max(1, min(wanted, int(MAX_TASK_SECONDS / per_epoch) or 1))
