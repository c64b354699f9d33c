"""One training run, decided once: :class:`TrainingRun` and :func:`plan_run`.

:func:`~prefect_torch.orchestration.fit_in_flow` first lets the net set itself up
(``initialize``, which applies routed parameters such as ``callbacks__checkpoint__dirname``),
then :func:`plan_run` reads everything the Prefect layer acts on from the net as it now is:
the effective :class:`~prefect_torch.callbacks.Checkpoint` and its store, the experiment, the
flow run's attempt, the resume decision and the validated ``epochs_per_task``. The driver,
fencing, artifacts, records and sweeps take them from the run and derive nothing themselves.

>>> import tempfile
>>> from prefect_torch import NeuralNetClassifier
>>> from prefect_torch.callbacks import Checkpoint
>>> from prefect_torch.examples import MyModule
>>> folder = tempfile.mkdtemp()
>>> net = NeuralNetClassifier(MyModule, callbacks=[("checkpoint", Checkpoint(monitor=None, dirname="A"))],
...                           callbacks__checkpoint__dirname=f"{folder}/B").initialize()
>>> run = plan_run(net, Attempt("3f2a", "gentle-fox", 1))
>>> run.experiment, run.store.url == f"{folder}/B", run.resume, run.epochs_per_task
('B', True, None, 1)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal, Union

from ..callbacks import Checkpoint, LoadInitState, TrainEndCheckpoint
from ..checkpoint import CheckpointStore, Manifest
from ..net import NeuralNet
from .loading import LoadGuide, load_guide
from .records import slug

RESUME_POLICIES = ("latest", "extend", "never")
ResumePolicy = Literal["latest", "extend", "never"]
EpochsPerTask = Union[int, Literal["auto"]]


@dataclass(frozen=True)
class Attempt:
    """One attempt of a Prefect flow run (Prefect may run a flow run several times).

    Parameters
    ----------
    flow_run_id : str
        The flow run's id.
    flow_run_name : str
        Its name, as the UI shows it.
    run_count : int
        Which attempt of that flow run this is (1 for the first).

    >>> Attempt("3f2a", "gentle-fox", 2).run_count
    2
    """

    flow_run_id: str
    flow_run_name: str
    run_count: int

    @classmethod
    def current(cls) -> "Attempt":
        """The attempt of the flow run this code runs in; a clear error outside a flow.

        >>> Attempt.current()
        Traceback (most recent call last):
        ...
        RuntimeError: fit_in_flow runs inside a Prefect flow: call it from a function decorated with @flow (outside flows, call net.fit)
        """
        from prefect.context import FlowRunContext

        context = FlowRunContext.get()
        if context is None or context.flow_run is None:
            raise RuntimeError("fit_in_flow runs inside a Prefect flow: call it from a function decorated "
                               "with @flow (outside flows, call net.fit)")
        run = context.flow_run
        return cls(str(run.id), run.name, run.run_count)

    def label(self, experiment: str) -> dict[str, Any]:
        """The claim this attempt records in a manifest for ``experiment`` (see
        :meth:`~prefect_torch.checkpoint.CheckpointStore.claim`).

        >>> Attempt("3f2a", "gentle-fox", 2).label("demo")["run_count"]
        2
        """
        return {"experiment": experiment, "flow_run_id": self.flow_run_id, "flow_run_name": self.flow_run_name,
                "run_count": self.run_count}


@dataclass(frozen=True)
class TrainingRun:
    """What one :func:`~prefect_torch.orchestration.fit_in_flow` call trains, where, and how:
    built once by :func:`plan_run`, read by everything else.

    Parameters
    ----------
    experiment : str
        The stable name of the training across runs and attempts.
    key : str
        ``experiment`` as a Prefect artifact key (see :func:`~.records.slug`).
    checkpoint : Checkpoint
        The net's effective checkpoint callback (its routed parameters applied).
    store : CheckpointStore
        That checkpoint's store: the instance its commits go through.
    attempt : Attempt
        The flow run and attempt that trains.
    resume : {"latest", "extend", "never"} or None
        The resume policy in effect (``None``: the net's own ``LoadInitState`` decides).
    stop_at : int or None
        The epoch an earlier attempt of the same flow run trained towards (this one stops there).
    epochs_per_task : int or "auto"
        Epochs per task run.
    task_retries : int
        Retries of a failed epoch task.
    retry_delay_seconds : float
        Seconds between those retries.
    max_resumes : int
        Failed attempts in a row from the same checkpoint before the experiment is stuck.
    artifacts : bool
        Whether the run keeps its artifacts in the Prefect UI.
    guide : LoadGuide or None
        How the summary artifact tells people to load a version (see :mod:`.loading`).

    >>> import tempfile
    >>> cp = Checkpoint(monitor=None, dirname=tempfile.mkdtemp())
    >>> run = TrainingRun("demo", "demo", cp, cp.store(), Attempt("3f2a", "gentle-fox", 1), "latest")
    >>> run.label["experiment"], run.label["run_count"]
    ('demo', 1)
    """

    experiment: str
    key: str
    checkpoint: Checkpoint
    store: CheckpointStore
    attempt: Attempt
    resume: ResumePolicy | None
    stop_at: int | None = None
    epochs_per_task: EpochsPerTask = 1
    task_retries: int = 0
    retry_delay_seconds: float = 0
    max_resumes: int = 3
    artifacts: bool = True
    guide: LoadGuide | None = None

    @property
    def label(self) -> dict[str, Any]:
        """The claim this run records in the manifest (see :meth:`Attempt.label`)."""
        return self.attempt.label(self.experiment)


def check_resume(resume: Any) -> ResumePolicy | None:
    """``resume`` if it is a policy :func:`fit_in_flow` knows, else a clear error.

    >>> check_resume("extend")
    'extend'
    >>> check_resume("sometimes")
    Traceback (most recent call last):
    ...
    ValueError: resume='sometimes': use one of 'latest', 'extend', 'never', or None
    """
    if resume is not None and resume not in RESUME_POLICIES:
        raise ValueError(f"resume={resume!r}: use one of {', '.join(map(repr, RESUME_POLICIES))}, or None")
    return resume


def check_epochs_per_task(epochs_per_task: Any) -> EpochsPerTask:
    """``epochs_per_task`` if valid (a whole number >= 1, or ``"auto"``), else a clear error.

    >>> check_epochs_per_task("auto"), check_epochs_per_task(3)
    ('auto', 3)
    >>> check_epochs_per_task(0)
    Traceback (most recent call last):
    ...
    ValueError: epochs_per_task=0: use a whole number >= 1, or 'auto' to group short epochs so Prefect's per-task cost stays small
    """
    if epochs_per_task != "auto" and not (isinstance(epochs_per_task, int) and not isinstance(epochs_per_task, bool)
                                          and epochs_per_task >= 1):
        raise ValueError(f"epochs_per_task={epochs_per_task!r}: use a whole number >= 1, or 'auto' to "
                         "group short epochs so Prefect's per-task cost stays small")
    return epochs_per_task


def plan_run(net: NeuralNet, attempt: Attempt, *, experiment: str | None = None, resume: str | None = None,
             checkpoint: Checkpoint | None = None, epochs_per_task: int | str = 1, task_retries: int = 0,
             retry_delay_seconds: float = 0, max_resumes: int = 3, artifacts: bool = True,
             data_source: str | None = None, data_params: dict[str, Any] | None = None, X: Any = None
             ) -> TrainingRun:
    """The :class:`TrainingRun` of ``net``, which must be initialized (its ``callbacks_`` are
    what training uses, routed parameters applied). The other arguments are
    :func:`~prefect_torch.orchestration.fit_in_flow`'s.

    Parameters
    ----------
    net : NeuralNet
        The initialized net.
    attempt : Attempt
        The flow run attempt that trains it.
    experiment, resume, checkpoint, epochs_per_task, task_retries, retry_delay_seconds, max_resumes, artifacts
        As for :func:`~prefect_torch.orchestration.fit_in_flow`.
    data_source, data_params, X
        How the summary's snippet gets the data (see :func:`.loading.load_guide`); ``X`` only
        names the training inputs' dtype and shape when there is no ``data_source``.

    Returns
    -------
    TrainingRun

    Example: see the module docstring.
    """
    policy = check_resume(resume)
    per_task = check_epochs_per_task(epochs_per_task)
    checkpoint = checkpoint or find_checkpoint(net)
    experiment = experiment or default_experiment(checkpoint)
    key = slug(experiment)
    store = checkpoint.store()
    manifest = store.read_manifest()
    label = attempt.label(experiment)
    guide = load_guide(net, checkpoint, data_source=data_source, data_params=data_params, X=X) if artifacts else None
    return TrainingRun(experiment, key, checkpoint, store, attempt, own_progress_policy(manifest, label, policy),
                       stop_at=earlier_attempt_target(manifest, label), epochs_per_task=per_task,
                       task_retries=task_retries, retry_delay_seconds=retry_delay_seconds, max_resumes=max_resumes,
                       artifacts=artifacts, guide=guide)


def own_progress_policy(manifest: Manifest | None, label: dict[str, Any], resume: ResumePolicy | None
                        ) -> ResumePolicy | None:
    """``resume``, except that ``"never"`` resumes what an earlier attempt of this same flow run
    committed (a retry finishes its own training; it never picks up another run's)."""
    current = manifest.version(manifest.current) if manifest else None
    own = current is not None and current.writer.get("flow_run_id") == label["flow_run_id"]
    return "latest" if resume == "never" and own else resume


def find_checkpoint(net: NeuralNet) -> Checkpoint:
    """The initialized net's :class:`Checkpoint` that writes a versioned directory (the one a
    :class:`LoadInitState` loads, if there are several)."""
    callbacks = [cb for _, cb in net.callbacks_]
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
    """The checkpoint directory's name (and ``fn_prefix``), e.g. ``'exp1'`` for ``dirname='runs/exp1'``.

    >>> default_experiment(Checkpoint(dirname="s3://bucket/runs/exp2/", fn_prefix="best_"))
    'exp2-best'
    """
    dirname = os.fspath(checkpoint.dirname or ".").rstrip("/")
    name = os.path.basename(dirname if "://" in dirname else os.path.abspath(dirname))
    return f"{name}-{checkpoint.fn_prefix.strip('_-')}" if checkpoint.fn_prefix.strip("_-") else name


def earlier_attempt_target(manifest: Manifest | None, label: dict[str, Any]) -> int | None:
    """The epoch an earlier attempt of this same flow run trained towards (it finishes that, no more)."""
    for claim in reversed(getattr(manifest, "claims", None) or []):
        if claim.get("flow_run_id") == label["flow_run_id"] and claim.get("run_count", 0) < label["run_count"]:
            return claim.get("target")
    return None
