"""``train_flow``: a ready-made, deployable training flow (see ``deploy/prefect.yaml``)."""
from __future__ import annotations

import importlib
from typing import Any, Callable

from prefect import flow

from ..callbacks import Checkpoint
from .fit import fit_in_flow
from .storage import resolve_storage, storage_options_from

__all__ = ["load_object", "prepare_net", "resolve_storage", "storage_options_from", "train_flow"]


def load_object(path: str) -> Callable[..., Any]:
    """The object at import path ``path`` (``'package.module:name'``), with a clear error
    naming what could not be imported.

    >>> load_object("prefect_torch.examples:make_data").__name__
    'make_data'
    """
    module_name, sep, name = path.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"{path!r} is not an import path; write it as 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import {module_name!r} (from {path!r}): {error}. Is it installed, or on "
                         "PYTHONPATH where the flow runs?") from error
    try:
        return getattr(module, name)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no {name!r} (from {path!r})") from None


@flow(name="train-net", persist_result=True, result_serializer="json")
def train_flow(net_factory: str, data: str, checkpoint_dir: str, experiment: str | None = None,
               max_epochs: int | None = None, resume: str = "latest", epochs_per_task: int | str = 1,
               task_retries: int = 2, max_resumes: int = 3, net_params: dict[str, Any] | None = None,
               data_params: dict[str, Any] | None = None, storage_block: str | None = None) -> dict[str, Any]:
    """Build a net with ``net_factory(**net_params)``, load ``(X, y) = data(**data_params)``
    and train it with :func:`~prefect_torch.orchestration.fit_in_flow`, checkpointing every
    epoch into ``checkpoint_dir``. The factory and the data loader are import paths, so the flow
    can be deployed and scheduled (see ``deploy/prefect.yaml``).

    Parameters
    ----------
    net_factory : str
        ``'package.module:function'`` returning the net. A net without a
        :class:`~prefect_torch.callbacks.Checkpoint` gets ``Checkpoint(monitor=None)``; the one
        it has is pointed at ``checkpoint_dir`` (whatever ``dirname`` the factory gave it).
    data : str
        ``'package.module:function'`` returning ``(X, y)``.
    checkpoint_dir : str
        Where the checkpoints go: a path or an fsspec URL (``s3://bucket/run``); with an
        ``s3-bucket/...`` ``storage_block``, a path relative to the bucket's folder.
    experiment : str or None, default=None
        The experiment's name (default: ``checkpoint_dir``'s last part).
    max_epochs : int or None, default=None
        Overrides the factory's ``max_epochs``.
    resume : {"latest", "extend", "never"}, default="latest"
        As for :func:`~prefect_torch.orchestration.fit_in_flow`.
    epochs_per_task : int or "auto", default=1
        Epochs per task run.
    task_retries : int, default=2
        Retries of a failed epoch task.
    max_resumes : int, default=3
        Failed attempts in a row from the same checkpoint before the experiment is stuck.
    net_params, data_params : dict or None, default=None
        Keyword arguments of the factory and of the data loader.
    storage_block : str or None, default=None
        The Prefect block with the credentials of ``checkpoint_dir``: a ``Secret`` of fsspec
        storage options (its name), or prefect-aws's ``"aws-credentials/NAME"``,
        ``"minio-credentials/NAME"`` or ``"s3-bucket/NAME"`` (the ``aws`` extra); see
        :mod:`~prefect_torch.orchestration.storage`. Without one, fsspec reads the environment.

    Returns
    -------
    dict
        :func:`~prefect_torch.orchestration.fit_in_flow`'s record.

    Examples
    --------
    >>> train_flow.name                     # what deployments and the UI call it
    'train-net'
    >>> record = train_flow("prefect_torch.examples:make_net", "prefect_torch.examples:make_data",
    ...                     "checkpoints/demo", max_epochs=3)      # doctest: +SKIP
    >>> record["trained_epochs"], record["current"]["epoch"]       # doctest: +SKIP
    ([1, 3], 3)
    """
    checkpoint_dir, storage_options = resolve_storage(storage_block, checkpoint_dir)
    net = prepare_net(net_factory, net_params or {}, checkpoint_dir, max_epochs, storage_options)
    X, y = load_object(data)(**(data_params or {}))
    return fit_in_flow(net, X, y, experiment=experiment, resume=resume, epochs_per_task=epochs_per_task,
                       task_retries=task_retries, max_resumes=max_resumes, data_source=data, data_params=data_params)


def prepare_net(net_factory: str, net_params: dict[str, Any], checkpoint_dir: str, max_epochs: int | None = None,
                storage_options: dict[str, Any] | None = None) -> Any:
    """``net_factory(**net_params)`` checkpointing into ``checkpoint_dir``.

    Parameters
    ----------
    net_factory : str
        ``'package.module:function'`` returning the net.
    net_params : dict
        Its keyword arguments.
    checkpoint_dir : str
        Where its :class:`~prefect_torch.callbacks.Checkpoint` callbacks write (routed as
        ``callbacks__<name>__dirname``); one with ``monitor=None`` is added if it has none.
    max_epochs : int or None, default=None
        Overrides the factory's.
    storage_options : dict or None, default=None
        fsspec options for ``checkpoint_dir``, routed the same way.

    >>> net = prepare_net("prefect_torch.examples:make_net", {"lr": 0.05}, "runs/a", max_epochs=3)
    >>> net.lr, net.max_epochs, [cb.dirname for _, cb in net.callbacks]
    (0.05, 3, ['runs/a'])
    """
    net = load_object(net_factory)(**net_params)
    if max_epochs is not None:
        net.set_params(max_epochs=max_epochs)
    named = [name for name, cb in net.initialize_callbacks().callbacks_ if isinstance(cb, Checkpoint)]
    where: dict[str, Any] = {"dirname": checkpoint_dir, **({"storage_options": storage_options} if storage_options else {})}
    if named:
        net.set_params(**{f"callbacks__{name}__{k}": v for name in named for k, v in where.items()})
    else:
        net.set_params(callbacks=[*(net.callbacks or []), ("checkpoint", Checkpoint(monitor=None, **where))])
    return net
