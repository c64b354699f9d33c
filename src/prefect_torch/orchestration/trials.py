"""The trials of a hyperparameter sweep: their names and directories, their results, their table.

Plain Python (no Prefect): :mod:`.sweep` runs what is planned here.

>>> trials = plan_trials({"lr": [0.1, 0.05], "module__num_units": [10]}, "runs/sweep1")
>>> [t.name for t in trials]
['lr=0.05,module__num_units=10', 'lr=0.1,module__num_units=10']
>>> trials[0].checkpoint_dir
'runs/sweep1/lr=0.05,module__num_units=10'
>>> best_of([0.5, 0.3, 0.4], "valid_loss")
(2, 0.3)
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn.model_selection import ParameterGrid

from ..checkpoint import CheckpointStore
from ..curves import plottable_history

TRIAL_RECORD = "trial.json"  # in a trial's checkpoint directory once it finished
MAX_NAME = 80


@dataclass(frozen=True)
class Trial:
    """One setting of a sweep: ``params`` for the net factory, trained into ``checkpoint_dir``."""

    name: str
    params: dict[str, Any]
    checkpoint_dir: str
    spec: dict[str, Any] = field(default_factory=dict)  # what must match for a finished run to count

    def matches(self, record: Mapping[str, Any] | None) -> bool:
        """``record`` (a finished trial's :data:`TRIAL_RECORD`) was trained from this same spec."""
        return record is not None and record.get("spec") == self.spec


@dataclass(frozen=True)
class TrialSpec:
    """Everything a sweep's task needs to train one trial (one picklable value per task).

    Parameters
    ----------
    trial : Trial
        The setting and its checkpoint directory.
    sweep : str
        The sweep's name; the trial's experiment is ``<sweep>/<trial name>``.
    net_factory, data : str
        Import paths of the net factory and the data loader (``'package.module:function'``).
    scoring : str
        The history column that ranks trials.
    lower_is_better : bool or None
        Its direction (``None``: lower for losses).
    max_epochs : int or None
        Overrides the factory's.
    net_params, data_params : dict
        Arguments of the factory (before the trial's own) and of the data loader.
    epochs_per_task : int or "auto"
        As for ``fit_in_flow`` (validated when the sweep starts).
    task_retries : int
        Retries of a failed epoch task.
    storage_block : str or None
        The Prefect block with the credentials of the trial's directory (see ``storage.py``).
    seed : int or None
        Seed for the global generators before the net is built.
    artifacts : bool
        Whether the trial keeps its own artifacts in the UI.

    >>> (trial,) = plan_trials({"lr": [0.1]}, "runs/sweep1")
    >>> spec = TrialSpec(trial, "sweep1", "prefect_torch.examples:make_net", "prefect_torch.examples:make_data")
    >>> spec.experiment
    'sweep1/lr=0.1'
    """

    trial: Trial
    sweep: str
    net_factory: str
    data: str
    scoring: str = "valid_loss"
    lower_is_better: bool | None = None
    max_epochs: int | None = None
    net_params: dict[str, Any] = field(default_factory=dict)
    data_params: dict[str, Any] = field(default_factory=dict)
    epochs_per_task: int | str = "auto"
    task_retries: int = 1
    storage_block: str | None = None
    seed: int | None = 0
    artifacts: bool = True

    @property
    def experiment(self) -> str:
        """The trial's experiment name."""
        return f"{self.sweep}/{self.trial.name}"


def expand_grid(param_grid: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The settings of ``param_grid`` in scikit-learn's ``ParameterGrid`` vocabulary: a dict of
    lists (every combination), or a list of such dicts; a single value counts as a list of one,
    so a list of plain dicts is a list of settings. Duplicates are dropped.

    >>> expand_grid([{"lr": 0.1}, {"lr": [0.1, 0.2], "max_epochs": 3}])
    [{'lr': 0.1}, {'lr': 0.1, 'max_epochs': 3}, {'lr': 0.2, 'max_epochs': 3}]
    """
    grids = [param_grid] if isinstance(param_grid, Mapping) else list(param_grid)
    if not grids or not all(isinstance(g, Mapping) for g in grids):
        raise ValueError(f"param_grid={param_grid!r}: give a dict of lists, e.g. {{'lr': [0.1, 0.01]}}, "
                         "or a list of such dicts")
    lists = [{k: [_plain(x) for x in v] if _is_values(v) else [_plain(v)] for k, v in g.items()} for g in grids]
    settings, seen = [], set()
    for params in ParameterGrid(lists):
        key = _canonical(params)
        if key not in seen:
            seen.add(key)
            settings.append(dict(params))
    return settings


def trial_name(params: Mapping[str, Any]) -> str:
    """A readable directory name for ``params``, the same on every run of the sweep: ``k=v``
    pairs in key order; a short hash is added when characters had to be replaced or the name
    is long, so two settings never share a directory.

    >>> trial_name({"lr": 0.1, "module__num_units": 20})
    'lr=0.1,module__num_units=20'
    >>> trial_name({"optimizer": "torch.optim:SGD"})
    'optimizer=torch.optim_SGD-c57ce4e4'
    """
    raw = ",".join(f"{k}={_value_text(v)}" for k, v in sorted(params.items())) or "default"
    name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", raw)
    if name != raw or len(name) > MAX_NAME or any(_reads_as_other_value(v) for v in params.values()):
        digest = hashlib.sha1(_canonical(params).encode()).hexdigest()[:8]
        name = f"{name[:MAX_NAME - 9]}-{digest}"
    return name


def plan_trials(param_grid: Mapping[str, Any] | Sequence[Mapping[str, Any]], root: str,
                spec: Mapping[str, Any] | None = None) -> list[Trial]:
    """One :class:`Trial` per setting of ``param_grid`` (see :func:`expand_grid`), each with its
    own directory under ``root`` (a path or fsspec URL). ``spec`` is what else decides the
    result (factory, data, epochs...): a finished trial is reused only if it matches."""
    base = str(root).rstrip("/")
    return [Trial(trial_name(params), params, f"{base}/{trial_name(params)}",
                  {**(spec or {}), "params": json.loads(_canonical(params))})
            for params in sorted(expand_grid(param_grid), key=trial_name)]


def lower_is_better_for(scoring: str) -> bool:
    """Losses are minimised, every other score (accuracy, f1...) maximised."""
    return scoring.endswith("loss")


def best_of(scores: Sequence[Any], scoring: str, lower_is_better: bool | None = None) -> tuple[int | None, float | None]:
    """The best (1-based epoch, score) among ``scores`` (one per epoch; missing ones skipped)."""
    lower = lower_is_better_for(scoring) if lower_is_better is None else lower_is_better
    found = [(epoch, float(s)) for epoch, s in enumerate(scores, 1)
             if isinstance(s, (int, float)) and not math.isnan(float(s))]
    if not found:
        return None, None
    return (min if lower else max)(found, key=lambda pair: pair[1])


def trial_rows(trials: Sequence[Trial], results: Mapping[str, Mapping[str, Any]], scoring: str,
               lower_is_better: bool | None = None) -> list[dict[str, Any]]:
    """The sweep's table: a row per trial (params, state, best epoch and score, epochs trained,
    checkpoint uri), the best finished trial marked ``best``."""
    best = best_trial(results, scoring, lower_is_better)
    rows = []
    for trial in trials:
        result = results.get(trial.name, {})
        score = result.get("best_score")
        rows.append({
            "trial": trial.name,
            "best": "best" if best is not None and trial.name == best else "",
            "state": result.get("state", "Pending"),
            **{k: v if isinstance(v, (int, float, str, bool)) or v is None else _value_text(v)
               for k, v in trial.params.items()},
            "best_epoch": result.get("best_epoch"),
            scoring: round(score, 6) if isinstance(score, float) else score,
            "epochs": result.get("epoch"),
            "checkpoints": trial.checkpoint_dir,
        })
    return rows


def best_trial(results: Mapping[str, Mapping[str, Any]], scoring: str, lower_is_better: bool | None = None) -> str | None:
    """The name of the finished trial with the best score, if any."""
    lower = lower_is_better_for(scoring) if lower_is_better is None else lower_is_better
    scored = [(r["best_score"], name) for name, r in results.items()
              if r.get("finished") and isinstance(r.get("best_score"), (int, float))]
    if not scored:
        return None
    return (min if lower else max)(scored)[1]


def trial_history(trial: Trial, storage_options: Mapping[str, Any] | None = None) -> list[dict[str, float]] | None:
    """The epochs of ``trial``'s current checkpoint (its ``history.json``, checked against the
    size and sha256 its manifest committed), as numbers to plot
    (:func:`~prefect_torch.curves.plottable_history`); ``None`` when nothing was committed or
    the checkpoint keeps no history. Raises ``ValueError`` naming the file when it differs from
    what was committed or is not a history."""
    store = CheckpointStore(trial.checkpoint_dir, **(storage_options or {}))
    manifest = store.read_manifest()
    version = manifest.version(manifest.current) if manifest is not None else None
    name = version.name_of("f_history") if version is not None else None
    if version is None or name is None:
        return None
    raw = store.location.read_bytes(f"{version.folder}/{name}")
    entry = version.files[name]
    if len(raw) != entry.size or hashlib.sha256(raw).hexdigest() != entry.sha256:
        raise ValueError(f"{store.file_url(version, name)} is not the file committed as version {version.id} "
                         "(size or sha256 differs); check the directory with `prefect-torch verify`")
    try:
        return plottable_history(json.loads(raw))
    except ValueError as error:
        raise ValueError(f"{store.file_url(version, name)}: {error}") from None


def _is_values(value: Any) -> bool:
    """A list of values for a parameter (any sequence or array but a string), as ParameterGrid reads it."""
    return (isinstance(value, Sequence) and not isinstance(value, (str, bytes))) or isinstance(value, np.ndarray)


def _plain(value: Any) -> Any:
    """numpy scalars as the Python numbers they hold (JSON-able, named like them)."""
    return value.item() if isinstance(value, np.generic) else value


def _reads_as_other_value(value: Any) -> bool:
    """A string that JSON would read as a number, bool or null: ``"0.1"`` must not be named like ``0.1``."""
    if not isinstance(value, str):
        return False
    try:
        return not isinstance(json.loads(value), str)
    except ValueError:
        return False


def _canonical(params: Mapping[str, Any]) -> str:
    return json.dumps({k: params[k] for k in sorted(params)}, default=_value_text, sort_keys=True)


def _value_text(value: Any) -> str:
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return value if isinstance(value, str) else json.dumps(value, default=repr)
