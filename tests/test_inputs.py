"""Input types (arrays, tensors, DataFrames, dicts, torch Datasets), validation splits, and the
two batching paths: fast tensor slicing for in-memory data, a DataLoader for everything else."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score
from torch import nn
from torch.utils.data import DataLoader, default_collate

from helpers import PairDataset, assert_last_validation_matches, fit, make_net
from prefect_torch import (
    NeuralNet,
    NeuralNetRegressor,
    ValidSplit,
    predefined_split,
)
from prefect_torch.data import Dataset, TensorBatches
from prefect_torch.examples import make_data

EPS = torch.finfo(torch.float32).eps


class OneInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(10, 2)

    def forward(self, X):
        return torch.softmax(self.lin(X), dim=-1)


class TwoInputs(OneInput):
    """The same network, fed the 10 features as two named inputs."""

    def forward(self, a, b):
        return super().forward(torch.cat([a, b], dim=1))


class MyDataset(Dataset):
    """A subclass of the in-memory Dataset, as a user-supplied ``dataset=``."""


def weights(net):
    return [p.detach().clone() for p in net.module_.parameters()]


def assert_equal_weights(a, b):
    for p, q in zip(weights(a), weights(b), strict=True):
        assert torch.equal(p, q)


def assert_close_weights(a, b):
    for p, q in zip(weights(a), weights(b), strict=True):
        assert torch.allclose(p, q, rtol=1e-6, atol=1e-7)


def index_split(split, n, y=None):
    """Run ``split`` on a dataset whose X are the row indices; return (train, valid) indices."""
    X = np.arange(n).reshape(-1, 1)
    train, valid = split(Dataset(X, y), y)
    return train.X.ravel(), valid.X.ravel()


# -- in-memory input types ------------------------------------------------------------------------
def test_numpy_tensor_and_pandas_inputs_train_identically(data):
    X, y = data
    reference = fit(make_net(), X, y)
    as_tensors = fit(make_net(), torch.as_tensor(X), torch.as_tensor(y))
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    as_pandas = fit(make_net(), df, pd.Series(y, name="target"))
    assert_equal_weights(reference, as_tensors)
    assert_close_weights(reference, as_pandas)
    np.testing.assert_allclose(as_pandas.history[:, "valid_loss"], reference.history[:, "valid_loss"],
                               rtol=1e-6)
    expected = reference.predict_proba(X)
    np.testing.assert_array_equal(as_tensors.predict_proba(torch.as_tensor(X)), expected)
    np.testing.assert_allclose(as_pandas.predict_proba(df), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(as_pandas.predict(df), reference.predict(X))
    np.testing.assert_array_equal(as_pandas.classes_, [0, 1])


def test_dataframe_trains_bitwise_like_the_same_array(data):
    X, y = data
    reference = fit(make_net(), X, y)
    as_pandas = fit(make_net(), pd.DataFrame(X), pd.Series(y))
    assert_equal_weights(reference, as_pandas)


def test_pandas_dataframe_targets_for_regressor(data):
    X, _ = data
    y = (X[:, :1] * 2).astype(np.float32)
    module_kwargs = {"module__in_features": 10, "module__out_features": 1, "lr": 0.05}
    arrays = fit(make_net(NeuralNetRegressor, module=nn.Linear, **module_kwargs), X, y)
    frames = fit(make_net(NeuralNetRegressor, module=nn.Linear, **module_kwargs),
                 pd.DataFrame(X), pd.DataFrame(y, columns=["t"]))
    assert_close_weights(arrays, frames)
    np.testing.assert_allclose(frames.predict(pd.DataFrame(X)), arrays.predict(X), rtol=1e-5, atol=1e-6)


def test_dict_input_goes_to_forward_as_keyword_arguments(data):
    X, y = data
    plain = fit(make_net(module=OneInput), X, y)
    Xd = {"a": X[:, :6], "b": X[:, 6:]}
    named = fit(make_net(module=TwoInputs), Xd, y)
    assert_equal_weights(plain, named)
    assert named.history[:, "valid_loss"] == plain.history[:, "valid_loss"]
    np.testing.assert_array_equal(named.predict_proba(Xd), plain.predict_proba(X))
    # a dict of tensors works the same
    Xt = {k: torch.as_tensor(v) for k, v in Xd.items()}
    np.testing.assert_array_equal(named.predict_proba(Xt), plain.predict_proba(X))


def test_dict_input_keys_must_match_forward(data):
    X, y = data
    net = make_net(module=TwoInputs, max_epochs=1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'c'|'c'"):
        fit(net, {"a": X[:, :6], "c": X[:, 6:]}, y)


# -- torch Datasets -------------------------------------------------------------------------------
def test_torch_dataset_without_train_split(data):
    X, y = data
    arrays = fit(make_net(train_split=None), X, y)
    dataset = fit(make_net(train_split=None), PairDataset(X, y))
    assert_close_weights(arrays, dataset)
    np.testing.assert_allclose(dataset.history[:, "train_loss"], arrays.history[:, "train_loss"], rtol=1e-6)
    assert dataset.history[-1, "batches", :, "train_batch_size"] == [64, 64, 64, 8]
    assert "valid_loss" not in dataset.history[-1]
    # inference on a Dataset uses its X (the targets it yields are ignored)
    np.testing.assert_allclose(dataset.predict_proba(PairDataset(X, y)), arrays.predict_proba(X), rtol=1e-6)


def test_torch_dataset_with_non_stratified_valid_split(data):
    X, y = data
    split = ValidSplit(5, stratified=False)
    arrays = fit(make_net(train_split=split), X, y)
    # classes= because the classes cannot be read off y (there is none) for the valid_acc scorer
    dataset = fit(make_net(train_split=split, classes=[0, 1]), PairDataset(X, y))
    assert_close_weights(arrays, dataset)
    assert dataset.history[-1, "batches", :, "valid_batch_size"] == [40]
    np.testing.assert_allclose(dataset.history[:, "valid_loss"], arrays.history[:, "valid_loss"], rtol=1e-6)
    assert dataset.history[:, "valid_acc"] == arrays.history[:, "valid_acc"]
    # KFold without shuffling holds out the first fifth of the samples
    proba = torch.as_tensor(dataset.predict_proba(X[:40]))
    loss = F.nll_loss(torch.log(proba + EPS), torch.as_tensor(y[:40])).item()
    assert dataset.history[-1, "valid_loss"] == pytest.approx(loss, rel=1e-5)


def test_classifier_on_torch_dataset_with_valid_split_infers_classes(data):
    X, y = data
    net = fit(make_net(train_split=ValidSplit(5, stratified=False), max_epochs=1), PairDataset(X, y))
    assert "valid_acc" in net.history[-1]
    np.testing.assert_array_equal(net.classes_, [0, 1])


def test_custom_dataset_class_parameter(data):
    X, y = data
    arrays = fit(make_net(), X, y)
    custom = fit(make_net(dataset=MyDataset), X, y)
    assert isinstance(custom.get_dataset(X, y), MyDataset)
    assert_close_weights(arrays, custom)


# -- validation splits ----------------------------------------------------------------------------
def test_valid_split_int_cv_holds_out_one_fold():
    train, valid = index_split(ValidSplit(5), 200)
    np.testing.assert_array_equal(valid, np.arange(40))
    np.testing.assert_array_equal(train, np.arange(40, 200))
    train, valid = index_split(ValidSplit(4), 200)
    assert len(valid) == 50 and len(train) == 150


@pytest.mark.parametrize("fraction, n_valid", [(0.2, 40), (0.25, 50), (0.1, 20)])
def test_valid_split_float_cv_is_the_held_out_fraction(fraction, n_valid):
    train, valid = index_split(ValidSplit(fraction, random_state=0), 200)
    assert len(valid) == n_valid and len(train) == 200 - n_valid
    assert sorted(np.concatenate([train, valid]).tolist()) == list(range(200))
    # a float split draws a random subset, reproducibly for a given random_state
    assert not np.array_equal(np.sort(valid), np.arange(n_valid))
    np.testing.assert_array_equal(index_split(ValidSplit(fraction, random_state=0), 200)[1], valid)
    assert not np.array_equal(index_split(ValidSplit(fraction, random_state=1), 200)[1], valid)


def test_valid_split_random_state_shuffles_int_cv():
    _, plain = index_split(ValidSplit(5), 200)
    _, shuffled = index_split(ValidSplit(5, random_state=0), 200)
    assert len(shuffled) == 40 and not np.array_equal(np.sort(shuffled), plain)


@pytest.mark.parametrize("cv", [5, 0.2])
def test_stratified_valid_split_keeps_class_proportions(cv):
    y = (np.arange(200) < 50).astype(np.int64)  # 25% ones, all at the start
    _, valid = index_split(ValidSplit(cv, stratified=True, random_state=None if cv == 5 else 0), 200, y)
    assert len(valid) == 40
    assert y[valid].sum() == 10  # 25% of 40
    _, valid = index_split(ValidSplit(cv, stratified=False, random_state=None if cv == 5 else 0), 200, y)
    if cv == 5:
        assert y[valid].sum() == 40  # unstratified: the first 40 samples, all ones


def test_classifier_default_split_is_stratified(data):
    X, _ = data
    y = (np.arange(200) < 50).astype(np.int64)
    net = fit(make_net(max_epochs=1), X, y)
    assert net.history[-1, "batches", :, "valid_batch_size"] == [40]
    _, valid = ValidSplit(5, stratified=True)(Dataset(X, y))
    assert valid.y.sum() == 10
    assert net.history[-1, "valid_acc"] == accuracy_score(valid.y, net.predict(valid.X))


def test_net_with_float_valid_split(data):
    X, y = data
    net = fit(make_net(train_split=ValidSplit(0.25, random_state=0), max_epochs=1), X, y)
    assert sum(net.history[-1, "batches", :, "train_batch_size"]) == 150
    assert sum(net.history[-1, "batches", :, "valid_batch_size"]) == 50


def test_predefined_split(data):
    X, y = data
    Xv, yv = make_data(60, random_state=1)
    net = fit(make_net(train_split=predefined_split(Dataset(Xv, yv)), max_epochs=2), X, y)
    assert net.history[-1, "batches", :, "train_batch_size"] == [64, 64, 64, 8]
    assert net.history[-1, "batches", :, "valid_batch_size"] == [60]
    assert_last_validation_matches(net, Xv, yv)


def test_predefined_split_with_a_torch_dataset(data):
    X, y = data
    Xv, yv = make_data(60, random_state=1)
    in_memory = fit(make_net(train_split=predefined_split(Dataset(Xv, yv))), X, y)
    torch_ds = fit(make_net(train_split=predefined_split(PairDataset(Xv, yv))), X, y)
    assert_close_weights(in_memory, torch_ds)
    np.testing.assert_allclose(torch_ds.history[:, "valid_loss"], in_memory.history[:, "valid_loss"],
                               rtol=1e-6)


# -- fast path vs DataLoader ----------------------------------------------------------------------
def test_in_memory_data_takes_the_fast_path(data):
    X, y = data
    net = make_net(iterator_train__shuffle=True, iterator_train__drop_last=True).initialize()
    dataset = net.get_dataset(X, y)
    train_it = net.get_iterator(dataset, training=True)
    valid_it = net.get_iterator(dataset, training=False)
    assert type(train_it) is TensorBatches and type(valid_it) is TensorBatches
    assert [len(xb) for xb, _ in train_it] == [64, 64, 64]  # drop_last
    assert [len(xb) for xb, _ in valid_it] == [64, 64, 64, 8]
    xb, yb = next(iter(valid_it))
    assert torch.equal(xb, torch.as_tensor(X[:64])) and torch.equal(yb, torch.as_tensor(y[:64]))
    # dict and DataFrame inputs are in-memory too
    assert type(net.get_iterator(net.get_dataset({"a": X}, y))) is TensorBatches
    assert type(net.get_iterator(net.get_dataset(pd.DataFrame(X), y))) is TensorBatches


@pytest.mark.parametrize("kwargs, training", [
    ({"iterator_train__num_workers": 0}, True),
    ({"iterator_train__collate_fn": default_collate}, True),
    ({"iterator_valid__num_workers": 0}, False),
    ({"iterator_valid__collate_fn": default_collate}, False),
])
def test_dataloader_kwargs_take_the_dataloader_path(data, kwargs, training):
    X, y = data
    net = make_net(**kwargs).initialize()
    dataset = net.get_dataset(X, y)
    assert type(net.get_iterator(dataset, training=training)) is DataLoader
    assert type(net.get_iterator(dataset, training=not training)) is TensorBatches


def test_torch_datasets_and_custom_iterators_take_the_dataloader_path(data):
    X, y = data
    net = make_net().initialize()
    iterator = net.get_iterator(PairDataset(X, y), training=True)
    assert type(iterator) is DataLoader and iterator.batch_size == 64

    class MyLoader(DataLoader):
        pass

    net = make_net(iterator_train=MyLoader).initialize()
    assert type(net.get_iterator(net.get_dataset(X, y), training=True)) is MyLoader
    assert type(net.get_iterator(net.get_dataset(X, y), training=False)) is TensorBatches


def test_batch_size_minus_one_is_one_batch_on_both_paths(data):
    X, y = data
    net = make_net(batch_size=-1).initialize()
    assert [len(xb) for xb, _ in net.get_iterator(net.get_dataset(X, y))] == [200]
    assert [len(xb) for xb, _ in net.get_iterator(PairDataset(X, y))] == [200]


@pytest.mark.parametrize("shuffle", [False, True])
def test_fast_path_and_dataloader_train_identically(data, shuffle):
    X, y = data
    fast = make_net(iterator_train__shuffle=shuffle, max_epochs=3)
    loader = make_net(iterator_train__shuffle=shuffle, max_epochs=3,
                      iterator_train__num_workers=0, iterator_valid__num_workers=0)
    fit(fast, X, y)
    fast_rng = torch.get_rng_state()
    fit(loader, X, y)
    loader_rng = torch.get_rng_state()
    assert type(loader.get_iterator(loader.get_dataset(X, y), training=True)) is DataLoader
    assert type(loader.get_iterator(loader.get_dataset(X, y), training=False)) is DataLoader
    assert_close_weights(fast, loader)
    np.testing.assert_allclose(loader.history[:, "train_loss"], fast.history[:, "train_loss"], rtol=1e-6)
    np.testing.assert_allclose(loader.history[:, "valid_loss"], fast.history[:, "valid_loss"], rtol=1e-6)
    # both paths drew exactly the same random numbers
    assert torch.equal(fast_rng, loader_rng)


def test_fast_path_regressor_and_neuralnet(data):
    X, _ = data
    y = (X[:, :2] @ np.array([[1.0], [-2.0]], dtype=np.float32)).astype(np.float32)
    kwargs = {"module": nn.Linear, "module__in_features": 10, "module__out_features": 1, "lr": 0.05}
    for cls, extra in ((NeuralNetRegressor, {}), (NeuralNet, {"criterion": nn.MSELoss})):
        fast = fit(make_net(cls, **kwargs, **extra), X, y)
        loader = fit(make_net(cls, iterator_train__num_workers=0, iterator_valid__num_workers=0,
                              **kwargs, **extra), X, y)
        assert_close_weights(fast, loader)
