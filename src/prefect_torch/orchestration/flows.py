"""``train_flow``: a ready-made, deployable training flow (see ``deploy/prefect.yaml``)."""
from __future__ import annotations

import importlib
from typing import Any, Callable

from prefect import flow

from ..callbacks import Checkpoint
from .fit import fit_in_flow


def load_object(path: str) -> Callable[..., Any]:
    """The object at import path ``'package.module:name'``.

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
               data_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build a net with ``net_factory(**net_params)``, load ``(X, y) = data(**data_params)``
    and train it with :func:`~prefect_torch.orchestration.fit_in_flow`, checkpointing every
    epoch into ``checkpoint_dir`` (a path or fsspec URL). The factory and the data loader are
    import paths (``'package.module:function'``), so the flow can be deployed and scheduled.
    A net without a :class:`~prefect_torch.callbacks.Checkpoint` gets
    ``Checkpoint(monitor=None)``; the one it has is pointed at ``checkpoint_dir``.
    ``max_epochs`` overrides the factory's.

    >>> train_flow.name                     # what deployments and the UI call it
    'train-net'
    >>> record = train_flow("prefect_torch.examples:make_net", "prefect_torch.examples:make_data",
    ...                     "checkpoints/demo", max_epochs=3)      # doctest: +SKIP
    >>> record["trained_epochs"], record["current"]["epoch"]       # doctest: +SKIP
    ([1, 3], 3)
    """
    net = load_object(net_factory)(**(net_params or {}))
    X, y = load_object(data)(**(data_params or {}))
    if max_epochs is not None:
        net.set_params(max_epochs=max_epochs)
    named = [(name, cb) for name, cb in net._named_callbacks() if isinstance(cb, Checkpoint)]
    if named:
        net.set_params(**{f"callbacks__{name}__dirname": checkpoint_dir for name, _ in named})
    else:
        net.set_params(callbacks=[*(net.callbacks or []), ("checkpoint", Checkpoint(monitor=None, dirname=checkpoint_dir))])
    return fit_in_flow(net, X, y, experiment=experiment, resume=resume, epochs_per_task=epochs_per_task,
                       task_retries=task_retries, max_resumes=max_resumes)
