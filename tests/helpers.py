"""Constants and helpers shared by several test modules (fixtures live in conftest.py)."""
from __future__ import annotations

import os
import pathlib
import re
import signal
import sys
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score

from prefect_torch import NeuralNetClassifier
from prefect_torch.examples import MyModule

REPO = pathlib.Path(__file__).resolve().parents[1]

# the classifier's printed table, as in the "Saving and Loading" guide (without its cp column)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
HEADER = "  epoch    train_loss    valid_acc    valid_loss     dur"
SEPARATOR = "-------  ------------  -----------  ------------  ------"
ROW = re.compile(r"^ {0,6}(\d+) {2,}(\d\.\d{4}) {2,}(\d\.\d{4}) {2,}(\d\.\d{4}) {2,}(\d+\.\d{4})$")


def shared_file(relative: str) -> pathlib.Path:
    """A file of the project's shared/ folder: $PREFECT_TORCH_SHARED, beside or above the repo."""
    roots = [os.environ.get("PREFECT_TORCH_SHARED"), REPO / "shared", REPO.parent / "shared",
             "/work/shared"]
    for root in filter(None, roots):
        path = pathlib.Path(root) / relative
        if path.exists():
            return path
    return pathlib.Path(roots[-1]) / relative


class PairDataset(torch.utils.data.Dataset):
    """A plain torch Dataset yielding ``(x, y)`` tensors, with its targets as ``y``."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return torch.as_tensor(self.X[i]), torch.as_tensor(self.y[i])


def assert_last_validation_matches(net, X_valid, y_valid):
    """The last epoch's valid_loss/valid_acc equal a fresh prediction on the validation data."""
    eps = torch.finfo(torch.float32).eps
    proba = torch.as_tensor(net.predict_proba(X_valid))
    loss = F.nll_loss(torch.log(proba + eps), torch.as_tensor(y_valid)).item()
    assert net.history[-1, "valid_loss"] == pytest.approx(loss, rel=1e-6)
    assert net.history[-1, "valid_acc"] == accuracy_score(y_valid, net.predict(X_valid))


def make_net(cls=NeuralNetClassifier, module=MyModule, **kwargs):
    """A quiet, quick net: lr 0.5, 2 epochs, batches of 64 unless given."""
    kwargs.setdefault("lr", 0.5)
    kwargs.setdefault("max_epochs", 2)
    kwargs.setdefault("batch_size", 64)
    kwargs.setdefault("verbose", 0)
    return cls(module, **kwargs)


def fit(net, X, y=None, seed=0, **fit_params):
    """``net.fit`` from a fixed torch seed."""
    torch.manual_seed(seed)
    return net.fit(X, y, **fit_params)


def assert_same_state(a, b, path="state"):
    """Equal nested state (dicts/lists of tensors and plain values), tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), path
        assert a.dtype == b.dtype and torch.equal(a, b), f"{path} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys {a.keys()} != {b.keys()}"
        for key in a:
            assert_same_state(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, z) in enumerate(zip(a, b)):
            assert_same_state(x, z, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def parent_death_signal() -> Callable[[], None] | None:
    """Linux only: a ``preexec_fn`` that has the kernel SIGKILL a server subprocess when the thread
    that started it ends (the test process killed or crashed without running its teardown).

    ``prctl`` is looked up here, in the parent: the child between fork and exec only calls it
    (no import there, whose lock another thread may have held at the fork).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_pdeathsig() -> None:  # pragma: no cover - runs in the child
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return set_pdeathsig
