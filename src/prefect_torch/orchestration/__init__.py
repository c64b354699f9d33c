"""Training as Prefect flows: epochs as task runs, checkpoints in the flow's result and the UI,
and runs that resume by themselves after a failure, a retry or a crash.

>>> from prefect import flow
>>> from prefect_torch import NeuralNetClassifier
>>> from prefect_torch.callbacks import Checkpoint
>>> from prefect_torch.examples import MyModule, make_data
>>> from prefect_torch.orchestration import fit_in_flow
>>> @flow(retries=1)
... def nightly() -> dict:
...     net = NeuralNetClassifier(MyModule, max_epochs=20,
...                               callbacks=[Checkpoint(monitor=None, dirname="checkpoints/nightly")])
...     return fit_in_flow(net, *make_data(), experiment="nightly", task_retries=2)
>>> nightly()["epoch"]    # doctest: +SKIP
20

The ready-made, deployable flows are :func:`train_flow` (see ``deploy/prefect.yaml``) and
:func:`sweep_flow` (a hyperparameter sweep, trials in parallel on Dask). This is the
only part of prefect-torch that imports Prefect.
"""
from .fencing import ResumeLimitError
from .fit import fit_in_flow
from .flows import train_flow
from .links import artifact_key_url, flow_run_url, ui_url
from .run import Attempt, TrainingRun, plan_run
from .signals import TrainingInterrupted
from .sweep import sweep_flow

__all__ = ["fit_in_flow", "train_flow", "sweep_flow", "ResumeLimitError", "TrainingInterrupted", "TrainingRun",
           "Attempt", "plan_run", "ui_url", "flow_run_url", "artifact_key_url"]
