"""Checkpoint directories and save_params files are shared with skorch, both ways."""
from __future__ import annotations

import copy

import pytest
import torch

from helpers import assert_same_state
from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Callback, Checkpoint, LoadInitState
from prefect_torch.examples import MyModule

skorch = pytest.importorskip("skorch")
from skorch import callbacks as sc  # noqa: E402

EPOCHS = 5  # with lr 0.2 the valid loss is best at epoch 3: the last checkpoint is not the last epoch


def net_kwargs(**kwargs):
    kwargs.setdefault("optimizer", torch.optim.Adam)
    kwargs.setdefault("lr", 0.2)
    kwargs.setdefault("max_epochs", EPOCHS)
    kwargs.setdefault("batch_size", 64)
    kwargs.setdefault("verbose", 0)
    return kwargs


def ours(**kwargs):
    return NeuralNetClassifier(MyModule, **net_kwargs(**kwargs))


def theirs(**kwargs):
    return skorch.NeuralNetClassifier(MyModule, **net_kwargs(**kwargs))


def fit(net, X, y, seed=0):
    torch.manual_seed(seed)
    return net.fit(X, y)


def load(path):
    return torch.load(path, weights_only=True)


def last_cp_epoch(history, event="event_cp"):
    return max(i + 1 for i, row in enumerate(history) if row.get(event))


def rows(history, drop=("dur",)):
    return [{k: v for k, v in row.items() if k not in drop} for row in history]


class FirstEpochWeights:
    """Records the module's weights when the first epoch of a fit begins (just after a load)."""

    def initialize(self):
        self.weights_ = None
        self.optimizer_ = None
        return self

    def on_epoch_begin(self, net, **kwargs):
        if self.weights_ is None:
            self.weights_ = copy.deepcopy(net.module_.state_dict())
            self.optimizer_ = copy.deepcopy(net.optimizer_.state_dict())


class OurFirstEpochWeights(FirstEpochWeights, Callback):
    pass


class TheirFirstEpochWeights(FirstEpochWeights, sc.Callback):
    pass


# -- (a) skorch reads what we wrote ----------------------------------------------------------
def test_skorch_load_params_from_our_checkpoint_dir(tmp_path, data):
    X, y = data
    cp = Checkpoint(dirname=str(tmp_path))  # default monitor: valid_loss_best
    net = fit(ours(callbacks=[cp]), X, y)
    epoch = last_cp_epoch(net.history)
    assert epoch < EPOCHS, "precondition: the last checkpoint is older than the last epoch"
    version = cp.store().latest_verified()
    assert version.epoch == epoch
    saved = load(cp.store().source(version, "params.pt"))

    other = theirs().initialize()
    other.load_params(checkpoint=sc.Checkpoint(dirname=str(tmp_path)))
    assert_same_state(other.module_.state_dict(), saved, "module")
    assert_same_state(other.optimizer_.state_dict(), load(cp.store().source(version, "optimizer.pt")),
                      "optimizer")
    assert len(other.history) == epoch
    assert rows(other.history) == rows(net.history[:epoch])

    # predictions equal those of our net loading the same checkpoint
    ours_loaded = ours().initialize()
    ours_loaded.load_params(checkpoint=cp)
    assert (other.predict_proba(X) == ours_loaded.predict_proba(X)).all()


def test_skorch_predictions_equal_ours_after_loading_every_epoch_checkpoint(tmp_path, data):
    X, y = data
    cp = Checkpoint(monitor=None, dirname=str(tmp_path))
    net = fit(ours(callbacks=[cp]), X, y)
    other = theirs().initialize()
    other.load_params(checkpoint=sc.Checkpoint(monitor=None, dirname=str(tmp_path)))
    assert_same_state(other.module_.state_dict(), net.module_.state_dict(), "module")
    assert_same_state(other.optimizer_.state_dict(), net.optimizer_.state_dict(), "optimizer")
    assert (other.predict_proba(X) == net.predict_proba(X)).all()
    assert (other.predict(X) == net.predict(X)).all()


def test_skorch_load_init_state_resumes_from_our_dir(tmp_path, data):
    X, y = data
    k = 3
    cp = Checkpoint(monitor=None, dirname=str(tmp_path))
    net = fit(ours(max_epochs=k, callbacks=[cp]), X, y)
    snapshot = TheirFirstEpochWeights()
    other = fit(theirs(max_epochs=2, callbacks=[
        sc.LoadInitState(sc.Checkpoint(monitor=None, dirname=str(tmp_path))), snapshot]), X, y)
    assert other.history[:, "epoch"] == [1, 2, 3, 4, 5]  # resumed at epoch k + 1
    assert rows(other.history[:k]) == rows(net.history)
    assert_same_state(snapshot.weights_, net.module_.state_dict(), "module at resume")
    assert_same_state(snapshot.optimizer_, net.optimizer_.state_dict(), "optimizer at resume")


def test_format_string_names_ours_to_skorch(tmp_path, data):
    X, y = data
    name = "params_{last_epoch[epoch]}.pt"
    cp = Checkpoint(dirname=str(tmp_path), f_params=name)
    net = fit(ours(callbacks=[cp]), X, y)
    epoch = last_cp_epoch(net.history)
    assert epoch < EPOCHS
    version = cp.store().latest_verified()
    assert version.name_of("f_params") == f"params_{epoch}.pt"
    assert (tmp_path / f"params_{epoch}.pt").exists()

    other = theirs().initialize()
    other.load_params(checkpoint=sc.Checkpoint(dirname=str(tmp_path), f_params=name))
    assert_same_state(other.module_.state_dict(), load(tmp_path / version.folder / f"params_{epoch}.pt"))
    assert len(other.history) == epoch


def test_format_string_names_skorch_to_ours(tmp_path, data):
    X, y = data
    name = "params_{last_epoch[epoch]}.pt"
    other = fit(theirs(callbacks=[sc.Checkpoint(dirname=str(tmp_path), f_params=name)]), X, y)
    epoch = last_cp_epoch(other.history)
    assert epoch < EPOCHS
    assert (tmp_path / f"params_{epoch}.pt").exists()

    cp = Checkpoint(dirname=str(tmp_path), f_params=name)
    net = ours().initialize()
    net.load_params(checkpoint=cp)
    assert_same_state(net.module_.state_dict(), load(tmp_path / f"params_{epoch}.pt"), "module")
    assert len(net.history) == epoch

    snapshot = OurFirstEpochWeights()
    resumed = fit(ours(max_epochs=1, callbacks=[LoadInitState(cp), snapshot]), X, y)
    assert dict(resumed.callbacks_)["LoadInitState"].loaded_epoch_ == epoch
    assert resumed.history[:, "epoch"] == list(range(1, epoch + 2))
    assert_same_state(snapshot.weights_, load(tmp_path / f"params_{epoch}.pt"), "module at resume")


# -- (b) we read what skorch wrote -----------------------------------------------------------
def test_we_resume_from_a_skorch_checkpoint_dir(tmp_path, data):
    X, y = data
    other = fit(theirs(callbacks=[sc.Checkpoint(dirname=str(tmp_path))]), X, y)
    epoch = last_cp_epoch(other.history)
    assert epoch < EPOCHS
    assert not (tmp_path / "manifest.json").exists()
    skorch_params, skorch_optimizer = load(tmp_path / "params.pt"), load(tmp_path / "optimizer.pt")

    cp = Checkpoint(monitor=None, dirname=str(tmp_path))
    snapshot = OurFirstEpochWeights()
    net = fit(ours(max_epochs=2, callbacks=[LoadInitState(cp), snapshot, cp]), X, y)
    load_state = dict(net.callbacks_)["LoadInitState"]
    assert load_state.loaded_epoch_ == epoch
    assert net.history[:, "epoch"] == list(range(1, epoch + 3))  # skorch semantics: 2 more epochs
    assert rows(net.history[:epoch], drop=("dur", "event_cp")) == rows(other.history[:epoch],
                                                                      drop=("dur", "event_cp"))
    assert_same_state(snapshot.weights_, skorch_params, "module at resume")
    assert_same_state(snapshot.optimizer_, skorch_optimizer, "optimizer at resume")
    # from here on the directory holds our versioned checkpoints
    assert cp.store().latest_verified().epoch == epoch + 2
    assert_same_state(load(tmp_path / "params.pt"), net.module_.state_dict(), "root params")


def test_until_max_epochs_counts_skorch_epochs(tmp_path, data):
    X, y = data
    fit(theirs(callbacks=[sc.Checkpoint(monitor=None, dirname=str(tmp_path))]), X, y)
    cp = Checkpoint(monitor=None, dirname=str(tmp_path))
    net = fit(ours(max_epochs=EPOCHS + 1, callbacks=[LoadInitState(cp, until_max_epochs=True), cp]), X, y)
    assert dict(net.callbacks_)["LoadInitState"].loaded_epoch_ == EPOCHS
    assert net.history[:, "epoch"] == list(range(1, EPOCHS + 2))


def test_load_params_of_skorch_save_params_files(tmp_path, data):
    X, y = data
    other = fit(theirs(), X, y)
    files = {"f_params": tmp_path / "p.pt", "f_optimizer": tmp_path / "o.pt",
             "f_history": tmp_path / "h.json"}
    other.save_params(**{k: str(v) for k, v in files.items()})
    net = ours().initialize()
    net.load_params(**files)
    assert_same_state(net.module_.state_dict(), other.module_.state_dict(), "module")
    assert_same_state(net.optimizer_.state_dict(), other.optimizer_.state_dict(), "optimizer")
    assert rows(net.history, drop=()) == rows(other.history, drop=())
    assert (net.predict_proba(X) == other.predict_proba(X)).all()


def test_skorch_load_params_of_our_save_params_files(tmp_path, data):
    X, y = data
    net = fit(ours(), X, y)
    files = {"f_params": str(tmp_path / "p.pt"), "f_optimizer": str(tmp_path / "o.pt"),
             "f_history": str(tmp_path / "h.json")}
    net.save_params(**files)
    other = theirs().initialize()
    other.load_params(**files)
    assert_same_state(other.module_.state_dict(), net.module_.state_dict(), "module")
    assert_same_state(other.optimizer_.state_dict(), net.optimizer_.state_dict(), "optimizer")
    assert rows(other.history, drop=()) == rows(net.history, drop=())
    assert (other.predict_proba(X) == net.predict_proba(X)).all()
    # seeded runs of both libraries train identically, so skorch's own run matches too
    assert_same_state(fit(theirs(), X, y).module_.state_dict(), net.module_.state_dict(), "seeded skorch")


def test_skorch_saving_into_our_dir_leaves_our_versions_intact(tmp_path, data):
    X, y = data
    cp = Checkpoint(monitor=None, dirname=str(tmp_path), keep_last=1)
    fit(ours(max_epochs=2, callbacks=[cp]), X, y)
    version = cp.store().latest_verified()
    # skorch's usual resume idiom: the same Checkpoint loads and saves
    skorch_cp = sc.Checkpoint(monitor=None, dirname=str(tmp_path))
    other = fit(theirs(max_epochs=1, callbacks=[sc.LoadInitState(skorch_cp), skorch_cp]), X, y)
    assert other.history[:, "epoch"] == [1, 2, 3]
    assert_same_state(load(tmp_path / "params.pt"), other.module_.state_dict(), "skorch's root params")
    assert cp.store().problems(version) == []
    assert cp.store().latest_verified().epoch == 2


# -- (c) a torch Dataset trains like skorch, bit for bit -----------------------------------
@pytest.mark.parametrize("dataset_kind", ["tensor_dataset", "ours"])
def test_dataset_input_trains_like_skorch_bit_for_bit(data, dataset_kind):
    """Batched fetching (one gather per batch) leaves weights, history and predictions exactly as
    skorch's sample-by-sample DataLoader leaves them: same split, same batches, same draws."""
    from torch.utils.data import TensorDataset

    from prefect_torch import Dataset, ValidSplit
    from prefect_torch.fetch import BatchedView

    X, y = data

    def dataset():
        if dataset_kind == "ours":
            return Dataset(X, y)
        return TensorDataset(torch.from_numpy(X), torch.from_numpy(y))

    kwargs = {"optimizer": torch.optim.SGD, "lr": 0.3, "optimizer__momentum": 0.9,
              "iterator_train__shuffle": True, "iterator_train__drop_last": True, "batch_size": 48,
              # a loader option: our own Dataset goes through the DataLoader too, not the tensor path
              "iterator_train__num_workers": 0, "iterator_valid__num_workers": 0}
    net = fit(ours(train_split=ValidSplit(4), **kwargs), dataset(), None)
    other = fit(theirs(train_split=skorch.dataset.ValidSplit(4), **kwargs), dataset(), None)
    assert isinstance(net.get_iterator(dataset(), training=True).dataset, BatchedView)
    assert_same_state(net.module_.state_dict(), other.module_.state_dict(), "module")
    assert_same_state(net.optimizer_.state_dict(), other.optimizer_.state_dict(), "optimizer")
    assert rows(net.history) == rows(other.history)
    assert len(net.history) == EPOCHS and "valid_acc" in net.history[-1]
    assert (net.predict_proba(dataset()) == other.predict_proba(dataset())).all()
