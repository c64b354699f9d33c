"""Bit-exact resume: a run killed after epoch k and resumed from its checkpoint ends where the
uninterrupted run ends (weights, optimizer state, history, random generators, callback state)."""
from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from helpers import assert_same_state
from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Checkpoint, EarlyStopping, EpochScoring, LoadInitState, LRScheduler
from prefect_torch.examples import MyModule, make_data

MAX_EPOCHS = 12


class NoisyModule(nn.Module):
    """MyModule (with its Dropout) whose training forward also draws from numpy's and python's
    global generators, so a resume must restore them too."""

    def __init__(self):
        super().__init__()
        self.body = MyModule()

    def forward(self, X):
        if self.training:
            X = X * (1.0 + 0.2 * float(np.random.rand())) + 0.2 * random.random()
        return self.body(X)


@pytest.fixture(autouse=True)
def _keep_global_generators():
    """These tests seed numpy's and python's global generators; give the next tests theirs back."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    yield
    np.random.set_state(numpy_state)
    random.setstate(python_state)


def seed_all(seed=0):
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def make_resumable(dirname, max_epochs, callbacks=(), module=NoisyModule, background=False,
                   until_max_epochs=True, **kwargs):
    """A net with an every-epoch Checkpoint in ``dirname`` and a LoadInitState of it."""
    cp = Checkpoint(monitor=None, dirname=str(dirname), keep_last=None, background=background)
    kwargs.setdefault("optimizer", torch.optim.Adam)
    kwargs.setdefault("lr", 0.05)
    kwargs.setdefault("iterator_train__shuffle", True)
    net = NeuralNetClassifier(
        module, max_epochs=max_epochs, batch_size=64, verbose=0,
        callbacks=[*callbacks, cp, LoadInitState(cp, until_max_epochs=until_max_epochs)], **kwargs)
    return net, cp


def fit_seeded(net, X, y):
    seed_all(0)
    return net.fit(X, y)


def full_callbacks():
    return [EpochScoring("f1", lower_is_better=False), LRScheduler("StepLR", step_size=3, gamma=0.5)]


def rows_without_dur(history):
    return [{k: v for k, v in row.items() if k != "dur"} for row in history]


def assert_same_run(resumed, straight):
    assert_same_state(resumed.module_.state_dict(), straight.module_.state_dict(), "module")
    assert_same_state(resumed.optimizer_.state_dict(), straight.optimizer_.state_dict(), "optimizer")
    assert rows_without_dur(resumed.history) == rows_without_dur(straight.history)


def interrupted_run(dirname, k, X, y, callbacks=full_callbacks, max_epochs=MAX_EPOCHS, **kwargs):
    """Train to epoch ``k``, then resume with a NEW net to ``max_epochs``; return (first, resumed, load)."""
    first, _ = make_resumable(dirname, k, callbacks(), **kwargs)
    fit_seeded(first, X, y)
    resumed, _ = make_resumable(dirname, max_epochs, callbacks(), **kwargs)
    fit_seeded(resumed, X, y)
    return first, resumed, dict(resumed.callbacks_)["LoadInitState"]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The uninterrupted 12 epochs of the full configuration (shared: it is read only)."""
    X, y = make_data(200)
    net, _ = make_resumable(tmp_path_factory.mktemp("straight"), MAX_EPOCHS, full_callbacks())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fit_seeded(net, X, y)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("k", [1, 4, 11])
def test_resume_after_epoch_k_is_bit_exact(tmp_path, data, straight_run, k):
    X, y = data
    first, resumed, load = interrupted_run(tmp_path, k, X, y)
    assert len(first.history) == k
    assert load.loaded_epoch_ == k
    assert resumed.history[:, "epoch"] == list(range(1, MAX_EPOCHS + 1))
    assert_same_run(resumed, straight_run)
    # the pieces the brief names, spelled out (all covered by assert_same_run too)
    assert resumed.history[:, "event_lr"] == straight_run.history[:, "event_lr"]
    assert straight_run.history[:, "event_lr"][:7] == [0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125]
    assert resumed.history[:, "f1_best"] == straight_run.history[:, "f1_best"]
    assert resumed.history[:, "f1"] == straight_run.history[:, "f1"]
    # Adam's step counts carried over: 3 batches (160 training samples of 64) in each of the 12 epochs
    steps = {state["step"].item() for state in resumed.optimizer_.state_dict()["state"].values()}
    assert steps == {3.0 * MAX_EPOCHS}


def test_resume_comparison_is_sensitive_to_each_generator(data, straight_run, tmp_path, monkeypatch):
    """Guards the test above: leaving any one generator (torch, numpy, python) unrestored changes
    the result, so the bit-exact comparison really checks that each of them is restored."""
    from prefect_torch import train_state

    X, y = data
    original = train_state.set_rng_state

    for broken in ("numpy", "python", "torch"):
        def partial_restore(state, broken=broken):
            saved = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                     "python": random.getstate()}
            original(state)
            if broken == "torch":
                torch.set_rng_state(saved["torch"])
            elif broken == "numpy":
                np.random.set_state(saved["numpy"])
            else:
                random.setstate(saved["python"])

        monkeypatch.setattr(train_state, "set_rng_state", partial_restore)
        _, resumed, _ = interrupted_run(tmp_path / broken, 4, X, y)
        assert not torch.equal(resumed.module_.body[0].weight, straight_run.module_.body[0].weight), broken


def test_early_stopping_counter_carries_across_resume(tmp_path, data):
    X, y = data
    callbacks = lambda: [EarlyStopping(patience=3)]  # noqa: E731
    kwargs = dict(module=MyModule, callbacks=callbacks)
    straight, _ = make_resumable(tmp_path / "straight", MAX_EPOCHS, callbacks(), module=MyModule)
    fit_seeded(straight, X, y)
    stop = len(straight.history)
    assert stop < MAX_EPOCHS, "precondition: early stopping triggers in the uninterrupted run"
    flags = straight.history[:, "valid_loss_best"]
    assert flags[-3:] == [False, False, False] and flags[-4] is True
    # resume one epoch before the stop: 2 misses are already counted and must not be forgotten
    first, resumed, load = interrupted_run(tmp_path / "cut", stop - 1, X, y, **kwargs)
    assert load.loaded_epoch_ == stop - 1
    assert len(resumed.history) == stop
    assert_same_run(resumed, straight)
    # and a resume before the first miss stops at the same epoch too
    _, resumed2, _ = interrupted_run(tmp_path / "early", stop - 4, X, y, **kwargs)
    assert len(resumed2.history) == stop
    assert_same_run(resumed2, straight)


def test_until_max_epochs_on_a_finished_run_is_a_no_op(tmp_path, data):
    X, y = data
    net, cp = make_resumable(tmp_path, 3, full_callbacks())
    fit_seeded(net, X, y)
    versions_before = [v.epoch for v in cp.store().read_manifest().versions]
    again, _ = make_resumable(tmp_path, 3, full_callbacks())
    fit_seeded(again, X, y)
    assert dict(again.callbacks_)["LoadInitState"].loaded_epoch_ == 3
    assert again.history[:, "epoch"] == [1, 2, 3]
    assert rows_without_dur(again.history) == rows_without_dur(net.history)
    assert_same_state(again.module_.state_dict(), net.module_.state_dict(), "module")
    assert_same_state(again.optimizer_.state_dict(), net.optimizer_.state_dict(), "optimizer")
    assert [v.epoch for v in cp.store().read_manifest().versions] == versions_before  # nothing committed


def test_without_until_max_epochs_resume_runs_max_epochs_more(tmp_path, data):
    X, y = data
    net, _ = make_resumable(tmp_path, 3, until_max_epochs=False)
    fit_seeded(net, X, y)
    again, _ = make_resumable(tmp_path, 3, until_max_epochs=False)
    fit_seeded(again, X, y)
    assert dict(again.callbacks_)["LoadInitState"].loaded_epoch_ == 3
    assert again.history[:, "epoch"] == [1, 2, 3, 4, 5, 6]
    # the first 3 rows are the loaded ones
    assert rows_without_dur(again.history[:3]) == rows_without_dur(net.history)


def test_resume_from_background_checkpoints_is_bit_exact(tmp_path, data, straight_run):
    X, y = data
    _, resumed, load = interrupted_run(tmp_path, 4, X, y, background=True)
    assert load.loaded_epoch_ == 4
    assert_same_run(resumed, straight_run)


def test_keep_last_keeps_two_versions_plus_best(tmp_path, data):
    X, y = data
    X_valid, y_valid = X[:40], 1 - y[:40]  # flipped labels: the valid loss gets worse as training goes on
    from prefect_torch import Dataset, predefined_split

    cp = Checkpoint(monitor=None, dirname=str(tmp_path), keep_last=2)
    net = NeuralNetClassifier(MyModule, lr=0.5, max_epochs=6, batch_size=64, verbose=0, callbacks=[cp],
                              train_split=predefined_split(Dataset(X_valid, y_valid)))
    fit_seeded(net, X[40:], y[40:])
    flags = net.history[:, "valid_loss_best"]
    best_epoch = max(i + 1 for i, flag in enumerate(flags) if flag)
    assert best_epoch <= 4, "precondition: the best epoch is older than the last two"
    manifest = cp.store().read_manifest()
    assert sorted(v.epoch for v in manifest.versions) == [best_epoch, 5, 6]
    assert manifest.version(manifest.best).epoch == best_epoch
    assert manifest.version(manifest.current).epoch == 6
    on_disk = sorted(os.listdir(tmp_path / "versions"))
    on_disk = [name for name in on_disk if not name.startswith(".")]
    assert on_disk == sorted(v.folder.split("/")[-1] for v in manifest.versions)
    for version in manifest.versions:
        info = json.loads((tmp_path / version.folder / "version.json").read_text())
        assert info["epoch"] == version.epoch
        assert cp.store().problems(version) == []


def test_resume_restores_a_data_loader_generator(tmp_path, data):
    """``iterator_train__generator`` shuffles through a DataLoader with its own generator; a
    resumed run continues that generator's sequence, not a freshly seeded one."""
    X, y = data

    def run(dirname, max_epochs):
        generator = torch.Generator().manual_seed(7)  # a new net (process) seeds it again
        net, _ = make_resumable(dirname, max_epochs, module=MyModule, iterator_train__generator=generator)
        return fit_seeded(net, X, y)

    straight = run(tmp_path / "straight", 4)
    run(tmp_path / "resumed", 2)
    resumed = run(tmp_path / "resumed", 4)
    assert resumed.history[:, "epoch"] == [1, 2, 3, 4]
    assert_same_state(resumed.module_.state_dict(), straight.module_.state_dict(), "module")
