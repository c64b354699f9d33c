"""Batched fetching (prefect_torch.fetch): whole batches from datasets of tensors, the same
batches and random draws as a DataLoader that fetches sample by sample."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from prefect_torch import NeuralNetClassifier, ValidSplit
from prefect_torch.data import Dataset
from prefect_torch.examples import MyModule
from prefect_torch.fetch import BatchedView, make_loader

rng = np.random.default_rng(0)
X = rng.random((203, 4)).astype(np.float32)
Y = rng.integers(0, 3, 203)


def same(a, b):
    """Equal batches: the same containers, keys, dtypes and values, bit for bit."""
    if isinstance(a, dict):
        return type(a) is type(b) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(p, q) for p, q in zip(a, b))
    return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def batches_and_rng(make, seed=0):
    torch.manual_seed(seed)
    batches = list(make())
    return batches, torch.get_rng_state()


DATASETS = {
    "tensor_dataset": lambda: TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)),
    "tensor_dataset_3": lambda: TensorDataset(torch.from_numpy(X), torch.from_numpy(Y), torch.arange(203.0)),
    "subset": lambda: Subset(TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)),
                             list(range(150, 203)) + list(range(0, 100, 3))),
    "subset_of_subset": lambda: Subset(Subset(TensorDataset(torch.from_numpy(X)), np.arange(200)[::-1]),
                                       range(5, 120)),
    "ours_numpy": lambda: Dataset(X, Y),
    "ours_1d_float64_y": lambda: Dataset(X, Y.astype(np.float64)),
    "ours_tensors": lambda: Dataset(torch.from_numpy(X), torch.from_numpy(Y)),
    "ours_no_y": lambda: Dataset(X),
    "ours_dict": lambda: Dataset({"b": X[:, :2], "a": torch.from_numpy(X[:, 2])}, Y),
    "ours_bool_int16": lambda: Dataset(X > 0.5, Y.astype(np.int16)),
}


@pytest.mark.parametrize("name", list(DATASETS))
@pytest.mark.parametrize("kwargs", [
    {"batch_size": 32},
    {"batch_size": 32, "shuffle": True},
    {"batch_size": 50, "shuffle": True, "drop_last": True},
    {"batch_size": 1},
])
def test_batched_loader_gives_the_dataloaders_batches_and_draws(name, kwargs):
    dataset = DATASETS[name]()
    batched = make_loader(dataset, dict(kwargs))
    assert isinstance(batched.dataset, BatchedView)  # the batched path is taken
    ours, ours_rng = batches_and_rng(lambda: batched)
    theirs, theirs_rng = batches_and_rng(lambda: DataLoader(dataset, **kwargs))
    assert len(ours) == len(theirs) == len(batched)
    assert all(same(a, b) for a, b in zip(ours, theirs))
    assert torch.equal(ours_rng, theirs_rng)


def test_batched_view_fetches_once_per_batch():
    dataset = TensorDataset(torch.from_numpy(X), torch.from_numpy(Y))
    loader = make_loader(dataset, {"batch_size": 64})
    calls = []
    fetch = loader.dataset.fetch
    loader.dataset.fetch = lambda idx: calls.append(len(idx)) or fetch(idx)
    list(loader)
    assert calls == [64, 64, 64, 11]


class OwnGetItem(TensorDataset):
    def __getitem__(self, index):
        x, y = super().__getitem__(index)
        return x * 2, y


class OwnGetItems(TensorDataset):
    def __getitems__(self, indices):
        return [self[i] for i in indices]


@pytest.mark.parametrize("dataset, kwargs", [
    (OwnGetItem(torch.from_numpy(X), torch.from_numpy(Y)), {"batch_size": 8}),  # its own samples
    (OwnGetItems(torch.from_numpy(X), torch.from_numpy(Y)), {"batch_size": 8}),  # its own batching
    (Subset(OwnGetItem(torch.from_numpy(X), torch.from_numpy(Y)), [1, 2, 3]), {"batch_size": 8}),
    (TensorDataset(torch.from_numpy(X)), {"batch_size": 8, "collate_fn": lambda items: items}),
    (TensorDataset(torch.from_numpy(X)), {"batch_size": None}),  # no collation: one sample per item
    (Dataset(pd.DataFrame(X)), {"batch_size": 8}),
    (Dataset(np.array(["a", "b"], dtype=object)), {"batch_size": 8}),
    (Dataset([[1.0, 2.0], [3.0, 4.0]]), {"batch_size": 8}),
    (TensorDataset(torch.eye(3).to_sparse()), {"batch_size": 2}),
])
def test_other_datasets_and_loaders_are_built_as_asked(dataset, kwargs):
    loader = make_loader(dataset, dict(kwargs))
    assert loader.dataset is dataset
    assert loader.collate_fn is not None


def test_own_getitem_is_honoured():
    dataset = OwnGetItem(torch.from_numpy(X), torch.from_numpy(Y))
    xb, _ = next(iter(make_loader(dataset, {"batch_size": 4})))
    assert torch.equal(xb, torch.from_numpy(X[:4]) * 2)


def test_workers_get_the_same_batches():
    dataset = TensorDataset(torch.from_numpy(X), torch.from_numpy(Y))
    kwargs = {"batch_size": 40, "shuffle": True, "num_workers": 1}
    ours, ours_rng = batches_and_rng(lambda: make_loader(dataset, dict(kwargs)))
    theirs, theirs_rng = batches_and_rng(lambda: DataLoader(dataset, **kwargs))
    assert all(same(a, b) for a, b in zip(ours, theirs)) and len(ours) == len(theirs) == 6
    assert torch.equal(ours_rng, theirs_rng)


def test_net_trains_a_tensor_dataset_through_batched_fetching():
    dataset = TensorDataset(torch.from_numpy(X), torch.from_numpy(Y % 2))
    kwargs = {"module__n_features": 4, "max_epochs": 2, "verbose": 0, "batch_size": 32,
              "train_split": ValidSplit(4), "iterator_train__shuffle": True}
    net = NeuralNetClassifier(MyModule, **kwargs).initialize()
    assert isinstance(net.get_iterator(dataset, training=True).dataset, BatchedView)

    class PerSample(DataLoader):  # the per-sample path, as a DataLoader subclass leaves it
        pass

    torch.manual_seed(0)
    batched = NeuralNetClassifier(MyModule, **kwargs).fit(dataset, None)
    torch.manual_seed(0)
    per_sample = NeuralNetClassifier(MyModule, iterator_train=PerSample, iterator_valid=PerSample,
                                     **kwargs).fit(dataset, None)
    assert not isinstance(per_sample.get_iterator(dataset).dataset, BatchedView)
    for a, b in zip(batched.module_.parameters(), per_sample.module_.parameters()):
        assert torch.equal(a, b)
    assert batched.history[:, "train_loss"] == per_sample.history[:, "train_loss"]
    np.testing.assert_array_equal(batched.predict_proba(dataset), per_sample.predict_proba(dataset))
