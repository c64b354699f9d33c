"""``sweep_flow``: one net per hyperparameter setting, trained as parallel task runs on Dask.

Each trial is its own experiment in its own checkpoint directory under the sweep's root, and
is trained by :func:`~prefect_torch.orchestration.fit_in_flow` inside a task run that
prefect-dask's ``DaskTaskRunner`` places on a Dask worker. A worker that dies mid-trial is
replaced by Dask, which runs the trial again elsewhere: it resumes from its last commit. A
re-run of the sweep skips the trials that finished and resumes the others.

Dask comes with the ``dask`` extra: ``pip install 'prefect-torch[dask]'``.

Example (a script: Dask starts worker processes, hence the ``__main__`` guard)::

    from prefect_torch.orchestration import sweep_flow

    if __name__ == "__main__":
        result = sweep_flow("prefect_torch.examples:make_net", "prefect_torch.examples:make_data",
                            {"lr": [0.1, 0.05], "num_units": [10, 20]}, "checkpoints/sweeps/demo",
                            max_epochs=5, net_params={"verbose": 0})
        print(result["best"]["trial"], result["best"]["best_score"])

Workers report their task runs to the flow's Prefect API (they must reach ``PREFECT_API_URL``);
for reproducible trials give each worker one thread (the ``LocalCluster`` here does). The workers
of an existing cluster (``dask_address``) must be able to import the module of the flow that
calls ``sweep_flow``, since Prefect sends the flow's context along with each trial (e.g.
``PYTHONPATH=<repo>/flows dask worker ...`` for ``flows/sweep_example.py``).
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import threading
from typing import Any, Iterator, Mapping, Sequence, cast
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactUpdate
from prefect.futures import as_completed
from prefect.settings import PREFECT_API_URL, temporary_settings

from ..checkpoint import CheckpointStore
from ..curves import curves_available, markdown_image, sweep_curves
from .fit import fit_in_flow
from .flows import load_object, prepare_net, resolve_storage, storage_options_from
from .records import markdown_location, slug
from .run import check_epochs_per_task, find_checkpoint
from .trials import (
    TRIAL_RECORD,
    Trial,
    TrialSpec,
    best_of,
    best_trial,
    plan_trials,
    trial_history,
    trial_rows,
)

DASK_ADDRESS_ENV = "PREFECT_TORCH_DASK_ADDRESS"
log = logging.getLogger("prefect_torch.orchestration")


@task(name="train-trial", task_run_name="trial-{spec.trial.name}", cache_policy=NO_CACHE, persist_result=False)
def train_trial(spec: TrialSpec) -> dict[str, Any]:
    """Train one trial to its end, resuming from its checkpoints; records the result in the
    trial's directory (:data:`~.trials.TRIAL_RECORD`) and returns it."""
    trial = spec.trial
    storage_options = storage_options_from(spec.storage_block)
    if spec.seed is not None:  # the same initial weights wherever (and however often) the trial starts
        seed_everything(spec.seed)
    net = prepare_net(spec.net_factory, {**spec.net_params, **trial.params}, trial.checkpoint_dir, spec.max_epochs,
                      storage_options)
    X, y = load_object(spec.data)(**spec.data_params)
    record = fit_in_flow(net, X, y, experiment=spec.experiment, resume="latest",
                         epochs_per_task=spec.epochs_per_task, task_retries=spec.task_retries,
                         artifacts=spec.artifacts, data_source=spec.data, data_params=spec.data_params)
    scoring = spec.scoring
    scores = [row.get(scoring) for row in net.history]
    if not any(score is not None for score in scores):
        raise ValueError(f"scoring={scoring!r} is not in the net's history (it has "
                         f"{sorted(net.history[-1].keys()) if len(net.history) else 'no epochs'}); "
                         "name a column of the printed table, e.g. 'valid_loss' or 'valid_acc'")
    best_epoch, best_score = best_of(scores, scoring, spec.lower_is_better)
    result = {"trial": trial.name, "params": trial.params, "spec": trial.spec, "state": "Completed",
              "finished": True, "best_epoch": best_epoch, "best_score": best_score, "scoring": scoring,
              **{k: record[k] for k in ("epoch", "current", "best", "flow_run_id", "attempt")}}
    # beside the checkpoints the run trained into (the net's Checkpoint's store, not re-derived)
    find_checkpoint(net).store().location.write_atomic(TRIAL_RECORD, json.dumps(result, indent=1).encode())
    return result


def seed_everything(seed: int) -> None:
    """Seed torch's, numpy's and Python's global random generators with ``seed``."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def finished_result(trial: Trial, storage_options: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a finished earlier run of ``trial`` (with the same spec) recorded, else ``None``."""
    location = CheckpointStore(trial.checkpoint_dir, **storage_options).location
    try:
        record = json.loads(location.read_bytes(TRIAL_RECORD))
    except (OSError, ValueError):
        return None
    return {**record, "state": "Completed earlier"} if trial.matches(record) else None


@contextlib.contextmanager
def api_for_workers() -> Iterator[None]:
    """Dask workers are other processes and learn the Prefect API from the settings that
    prefect-dask sends with each task. Without ``PREFECT_API_URL`` (Prefect's temporary local
    server), those settings name none and every worker would start a server of its own: point
    them at the one this flow reports to."""
    if PREFECT_API_URL.value():
        yield
        return
    with get_client(sync_client=True) as client:
        url = str(client.api_url).rstrip("/")
    with temporary_settings({PREFECT_API_URL: url}):
        yield


def dask_task_runner(address: str | None, n_workers: int) -> Any:
    """prefect-dask's runner (the ``dask`` extra: ``pip install 'prefect-torch[dask]'``) for ``address`` (or ``$PREFECT_TORCH_DASK_ADDRESS``), else a
    ``LocalCluster`` of ``n_workers`` processes with one thread each (each trial's torch then
    uses one core: Dask's nanny sets ``OMP_NUM_THREADS=1``)."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as error:
        raise ImportError(f"sweep_flow runs its trials on Dask, and prefect-dask is not installed ({error}): "
                          "pip install 'prefect-torch[dask]'") from error
    address = address or os.environ.get(DASK_ADDRESS_ENV) or None
    if address:
        refuse_other_default_client(address)
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": ":0"})


def refuse_other_default_client(address: str) -> None:
    """prefect-dask sends the tasks to this process's default Dask client when there is one,
    whatever address it was given: refuse rather than train on another cluster than asked."""
    import distributed

    try:
        default = distributed.get_client()
    except ValueError:  # no default client: the address is used
        return
    scheduler = getattr(default.scheduler, "address", None)
    wanted = address if "://" in address else f"tcp://{address}"
    if scheduler is not None and scheduler.rstrip("/") != wanted.rstrip("/"):
        raise ValueError(f"dask_address={address!r}, but this process has a default Dask client of {scheduler}, "
                         "and prefect-dask would send the trials there. Close that client, create it with "
                         "Client(..., set_as_default=False), or pass its address as dask_address.")


@flow(name="sweep-nets", persist_result=True, result_serializer="json")
def sweep_flow(net_factory: str, data: str, param_grid: dict[str, Any] | list[dict[str, Any]], root: str,
               sweep: str | None = None, scoring: str = "valid_loss", lower_is_better: bool | None = None,
               max_epochs: int | None = None, net_params: dict[str, Any] | None = None,
               data_params: dict[str, Any] | None = None, dask_address: str | None = None, n_workers: int = 2,
               epochs_per_task: int | str = "auto", task_retries: int = 1,
               storage_block: str | None = None, seed: int | None = 0, artifacts: bool = True) -> dict[str, Any]:
    """Train ``net_factory(**net_params, **setting)`` for every setting of ``param_grid``, each
    trial a task run on Dask, into ``root/<trial name>``.

    The flow's ``<sweep>-trials`` table artifact lists every trial with its state, best epoch
    and score and checkpoint location, the best one marked; its ``<sweep>-curves`` markdown
    artifact shows every finished trial's ``scoring`` curve in one image, the best trial
    highlighted (with the ``plot`` extra: matplotlib). Both are kept up to date as trials end. Trials that finished in an earlier run with the same settings are not run again;
    unfinished ones resume from their last checkpoint. Fails, after every other trial has
    ended, if one failed. Needs the ``dask`` extra (``pip install 'prefect-torch[dask]'``).

    Parameters
    ----------
    net_factory, data : str
        Import paths (``'package.module:function'``) of the net factory and the data loader.
    param_grid : dict of lists, or list of such dicts
        The settings, as scikit-learn's ``ParameterGrid`` takes them (any sequence or array is
        a list of values).
    root : str
        The sweep's directory: a path or an ``s3://`` URL; each trial writes its own folder.
    sweep : str or None, default=None
        The sweep's name (default: ``root``'s last part); trials are experiments ``<sweep>/<trial>``.
    scoring : str, default="valid_loss"
        The history column that ranks trials.
    lower_is_better : bool or None, default=None
        Its direction; ``None``: lower for losses, higher for anything else.
    max_epochs : int or None, default=None
        Overrides the factory's.
    net_params, data_params : dict or None, default=None
        Keyword arguments of the factory (before each setting's) and of the data loader.
    dask_address : str or None, default=None
        An existing scheduler (``tcp://host:8786``, or ``$PREFECT_TORCH_DASK_ADDRESS``); without
        one, a ``LocalCluster`` of ``n_workers`` processes lives as long as the flow.
    n_workers : int, default=2
        Workers of that ``LocalCluster`` (one thread each).
    epochs_per_task : int or "auto", default="auto"
        As for :func:`~prefect_torch.orchestration.fit_in_flow`, per trial (checked here, before
        any trial starts). Each task run costs the Prefect server ~30 ms of CPU; when the workers
        use every core, one task per short epoch costs a visible share of the speed-up
        (``bench/sweep_scaling.py``), so keep ``"auto"``.
    task_retries : int, default=1
        Retries of a failed epoch task, per trial.
    storage_block : str or None, default=None
        The Prefect block with the credentials of ``root``: a ``Secret`` of fsspec storage
        options (its name), or prefect-aws's ``"aws-credentials/NAME"``,
        ``"minio-credentials/NAME"`` or ``"s3-bucket/NAME"`` (relative ``root`` in its bucket);
        see :mod:`~prefect_torch.orchestration.storage`. Without it fsspec reads the
        environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``...).
    seed : int or None, default=0
        Seeds torch, numpy and ``random`` before each trial builds its net, so every trial
        starts from the same initial state whichever worker runs it; a resumed trial then
        continues bit for bit. ``None``: no seeding. Trials sharing a worker process must not
        run at once for this (one thread per worker).
    artifacts : bool, default=True
        Each trial's own artifacts (checkpoints table, summary, progress).

    Returns
    -------
    dict
        ``sweep``, ``root``, ``scoring``, ``best`` (the best trial's result) and ``trials``
        (the table's rows).

    Examples
    --------
    >>> sweep_flow.name
    'sweep-nets'
    >>> result = sweep_flow("prefect_torch.examples:make_net", "prefect_torch.examples:make_data",
    ...                     {"lr": [0.1, 0.05], "num_units": [10, 20]}, "runs/sweep1")  # doctest: +SKIP
    >>> result["best"]["trial"]                                                        # doctest: +SKIP
    'lr=0.1,num_units=20'
    """
    check_epochs_per_task(epochs_per_task)  # here, not once per trial on a Dask worker
    logger = get_run_logger()
    sweep = sweep or os.path.basename(str(root).rstrip("/")) or "sweep"
    spec = {"net_factory": net_factory, "data": data, "net_params": net_params or {},
            "data_params": data_params or {}, "max_epochs": max_epochs, "seed": seed,
            # a finished trial run again for another scoring trains nothing: it only ranks its history anew
            "scoring": scoring, "lower_is_better": lower_is_better}
    root, storage_options = resolve_storage(storage_block, root)  # an s3-bucket block places a relative root
    trials = plan_trials(param_grid, root, spec)
    results: dict[str, dict[str, Any]] = {}
    for trial in trials:
        earlier = finished_result(trial, storage_options)
        if earlier is not None:
            results[trial.name] = earlier
    todo = [t for t in trials if t.name not in results]
    logger.info("sweep %s: %d trials, %d finished earlier, %d to run", sweep, len(trials), len(results), len(todo))
    table = TrialTable(sweep, root, trials, scoring, lower_is_better)
    table.publish(results)
    curves = TrialCurves(sweep, trials, scoring, lower_is_better, storage_options)
    curves.publish(results)
    try:
        if todo:
            with api_for_workers(), dask_task_runner(dask_address, n_workers) as runner:
                futures = {runner.submit(train_trial, parameters={"spec": TrialSpec(
                    trial, sweep, net_factory, data, scoring, lower_is_better, max_epochs, net_params or {},
                    data_params or {}, epochs_per_task, task_retries, storage_block, seed, artifacts)}): trial
                    for trial in todo}
                for trial in todo:
                    results[trial.name] = {"state": "Submitted"}  # to Dask: running or queued for a worker
                table.publish(results)
                for future in as_completed(list(futures)):
                    trial = futures[future]
                    try:
                        results[trial.name] = future.result()
                    except Exception as error:
                        logger.error("trial %s failed: %s: %s", trial.name, type(error).__name__, error)
                        results[trial.name] = {"state": f"Failed: {type(error).__name__}: {error}"[:200]}
                    table.publish(results)
                    curves.publish(results)
    finally:
        curves.close()
    failed = [t.name for t in trials if not results[t.name].get("finished")]
    if failed:
        raise RuntimeError(f"sweep {sweep!r}: {len(failed)} of {len(trials)} trials failed ({', '.join(failed)}); "
                           "the others are recorded. Run the sweep again: finished trials are skipped and "
                           "these resume from their last checkpoints.")
    best = best_trial(results, scoring, lower_is_better)
    return {"sweep": sweep, "root": str(root), "scoring": scoring, "best": {"trial": best, **results[best]}
            if best else None, "trials": trial_rows(trials, results, scoring, lower_is_better)}


class TrialTable:
    """The sweep's ``<sweep>-trials`` table artifact, created once and updated in place."""

    def __init__(self, sweep: str, root: str, trials: Sequence[Trial], scoring: str, lower_is_better: bool | None):
        self.key = f"{slug(sweep)}-trials"
        self.trials, self.scoring, self.lower_is_better = trials, scoring, lower_is_better
        self.description = (f"Trials of sweep **{sweep}** under {markdown_location(str(root))}: parameters, "
                            f"state, best epoch and {scoring}; the best finished trial is marked *best*.")
        self._id: UUID | None = None

    def publish(self, results: Mapping[str, Mapping[str, Any]]) -> None:
        rows = trial_rows(self.trials, results, self.scoring, self.lower_is_better)
        if self._id is None:
            self._id = cast(UUID, create_table_artifact(rows, key=self.key, description=self.description))
            return
        from prefect.artifacts import TableArtifact

        with get_client(sync_client=True) as client:
            client.update_artifact(self._id, ArtifactUpdate(data=TableArtifact(table=rows).format(_sync=True)))  # type: ignore[call-arg]


class TrialCurves:
    """The sweep's ``<sweep>-curves`` markdown artifact: the ``scoring`` curve of every finished
    trial in one image (:func:`~prefect_torch.curves.sweep_curves`), the best trial highlighted.

    Created once, then redrawn on a helper thread whenever :meth:`publish` is given new results
    (the newest only, when several arrive during a drawing), so the flow goes on collecting
    trials meanwhile. Each finished trial's history is read once from its current checkpoint
    (:func:`~.trials.trial_history`). A failure (no matplotlib, an unreadable history, the API)
    is a warning: the curves never fail the sweep.
    """

    def __init__(self, sweep: str, trials: Sequence[Trial], scoring: str, lower_is_better: bool | None,
                 storage_options: Mapping[str, Any]):
        self.key, self.sweep = f"{slug(sweep)}-curves", sweep
        self.trials, self.scoring, self.lower_is_better = trials, scoring, lower_is_better
        self.storage_options = storage_options
        self.histories: dict[str, list[dict[str, float]]] = {}
        self._unreadable: set[str] = set()
        self._id: UUID | None = None
        self._pending: dict[str, dict[str, Any]] | None = None
        self._closing = False
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def publish(self, results: Mapping[str, Mapping[str, Any]]) -> None:
        """Show the curves of ``results``' finished trials soon (replacing any not drawn yet)."""
        with self._wake:
            self._pending = {name: dict(result) for name, result in results.items()}
            self._wake.notify()
        if self._thread is None:
            try:  # in the flow run's context, which the artifact is attached to
                self._id = cast(UUID, create_markdown_artifact(
                    self.markdown({}), key=self.key,
                    description=f"Validation curves ({self.scoring}) of the trials of sweep {self.sweep}"))
            except Exception as error:
                log.warning("could not create the curves artifact of sweep %s: %s: %s", self.sweep,
                            type(error).__name__, error)
            context = contextvars.copy_context()  # the API settings of this run
            self._thread = threading.Thread(target=context.run, args=(self._loop,), daemon=True,
                                            name=f"prefect-torch-curves-{self.key}")
            self._thread.start()

    def close(self, timeout: float = 120) -> None:
        """Draw what was published last, then stop the helper thread."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def markdown(self, results: Mapping[str, Mapping[str, Any]]) -> str:
        """The artifact's text for ``results``: the image and which trial is best."""
        lines = [f"# Sweep `{self.sweep}`: {self.scoring} of each trial", ""]
        finished = [t.name for t in self.trials if results.get(t.name, {}).get("finished")]
        best = best_trial(results, self.scoring, self.lower_is_better)
        if not curves_available():
            lines.append("Curves need matplotlib: `pip install 'prefect-torch[plot]'`.")
        elif not finished:
            lines.append("The curves appear here as trials finish.")
        else:
            png = sweep_curves({name: self._history(name) for name in finished}, metric=self.scoring, best=best,
                               lower_is_better=self.lower_is_better, title=self.sweep)
            if png is None:
                lines.append(f"No finished trial has {self.scoring} in its history.")
            else:
                lines.append(markdown_image(png, f"{self.scoring} of the trials of sweep {self.sweep}"))
        if best is not None:
            result = results[best]
            lines += ["", f"Best trial: **{best}**, {self.scoring} {result['best_score']:.4g} at epoch "
                      f"{result.get('best_epoch')}. {len(finished)} of {len(self.trials)} trials finished."]
        return "\n".join(lines)

    def _history(self, name: str) -> list[dict[str, float]]:
        """The history of finished trial ``name``, read once (``[]`` if unreadable, with a warning)."""
        if name not in self.histories and name not in self._unreadable:
            trial = next(t for t in self.trials if t.name == name)
            try:
                self.histories[name] = trial_history(trial, self.storage_options) or []
            except Exception as error:
                self._unreadable.add(name)
                log.warning("sweep %s: the curve of trial %s is left out, its history is not read: %s: %s",
                            self.sweep, name, type(error).__name__, error)
        return self.histories.get(name, [])

    def _loop(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._closing:
                    self._wake.wait()
                results, self._pending = self._pending, None
            if results is None:
                return  # closing, and everything drawn
            if self._id is None:
                continue  # the artifact was not created (warned): nothing to update
            try:
                text = self.markdown(results)
                with get_client(sync_client=True) as client:
                    client.update_artifact(self._id, ArtifactUpdate(data=text))
            except Exception as error:  # the curves must never fail the sweep
                log.warning("could not update the curves of sweep %s: %s: %s", self.sweep,
                            type(error).__name__, error)
