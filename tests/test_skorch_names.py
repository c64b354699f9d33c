"""The public names a skorch user imports (helper, scoring, toy, utils, exceptions, the binary net)."""
from __future__ import annotations

import io
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from torch import nn

import prefect_torch
from prefect_torch import NeuralNetBinaryClassifier, NeuralNetClassifier, NeuralNetRegressor
from prefect_torch.data import Dataset
from prefect_torch.exceptions import (
    DeviceWarning,
    NotInitializedError,
    SkorchAttributeError,
    SkorchException,
    SkorchTrainingImpossibleError,
    SkorchWarning,
)
from prefect_torch.helper import DataFrameTransformer, SliceDataset, SliceDict, predefined_split
from prefect_torch.scoring import loss_scoring
from prefect_torch.toy import MLPModule, make_binary_classifier, make_classifier, make_regressor
from prefect_torch.utils import (
    FirstStepAccumulator,
    TeeGenerator,
    check_is_fitted,
    data_from_dataset,
    duplicate_items,
    get_map_location,
    is_dataset,
    is_skorch_dataset,
    params_for,
    to_device,
    to_numpy,
    to_tensor,
)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 2)
        self.b = nn.Linear(2, 2)

    def forward(self, a, b):
        return torch.softmax(self.a(a) + self.b(b), dim=-1)


# -- SliceDict -----------------------------------------------------------------------------------
def test_slicedict_indexes_rows_of_every_value():
    d = SliceDict(a=np.arange(12).reshape(4, 3), b=torch.arange(4))
    assert len(d) == 4 and d.shape == (4,)
    part = d[[3, 1]]
    assert isinstance(part, SliceDict) and len(part) == 2
    np.testing.assert_array_equal(part["a"], [[9, 10, 11], [3, 4, 5]])
    assert part["b"].tolist() == [3, 1]
    assert d[np.array([True, False, False, True])]["b"].tolist() == [0, 3]
    assert d[1:3] == SliceDict(a=np.arange(3, 9).reshape(2, 3), b=torch.tensor([1, 2]))
    assert d[1:3] != d[0:2]


def test_slicedict_refuses_what_would_break_its_rows():
    with pytest.raises(ValueError, match="different lengths: 2, 3"):
        SliceDict(a=np.zeros(2), b=np.zeros(3))
    d = SliceDict(a=np.zeros(4))
    with pytest.raises(ValueError, match="cannot be indexed by integers"):
        d[0]
    with pytest.raises(ValueError, match=r"shape\[0\] != 4"):
        d["b"] = np.zeros(5)
    with pytest.raises(TypeError, match="Key must be str"):
        d[1.5] = np.zeros(4)
    with pytest.raises(TypeError, match="fromkeys"):
        SliceDict.fromkeys(["a"])
    d.update({"c": np.ones(4)})
    assert sorted(d) == ["a", "c"] and d.copy() == d and d.copy() is not d
    assert repr(SliceDict(a=np.zeros(1))).startswith("SliceDict(**{'a': array([0.])")


def test_slicedict_in_grid_search_feeds_forward_by_name():
    rng = np.random.RandomState(0)
    X = SliceDict(a=rng.rand(60, 3).astype(np.float32), b=rng.rand(60, 2).astype(np.float32))
    y = (X["a"][:, 0] > 0.5).astype(np.int64)
    net = NeuralNetClassifier(TwoInputs, max_epochs=2, verbose=0, train_split=None)
    search = GridSearchCV(net, {"lr": [0.1, 0.2]}, cv=KFold(3), scoring="accuracy", refit=False)
    search.fit(X, y)
    assert search.cv_results_["mean_test_score"].shape == (2,)
    assert ((search.cv_results_["mean_test_score"] >= 0) & (search.cv_results_["mean_test_score"] <= 1)).all()


# -- SliceDataset --------------------------------------------------------------------------------
@pytest.fixture
def pairs():
    X = torch.arange(20.0).reshape(10, 2)
    y = torch.tensor([0, 1] * 5)
    return X, y, torch.utils.data.TensorDataset(X, y)


def test_slicedataset_slices_lazily_and_loads_on_int(pairs):
    X, y, ds = pairs
    calls = []

    class Counting(torch.utils.data.Dataset):
        def __len__(self):
            return len(ds)

        def __getitem__(self, i):
            calls.append(int(i))
            return ds[i]

    sl = SliceDataset(Counting())
    part = sl[2:8][np.array([0, 2, 4])]
    assert calls == [] and isinstance(part, SliceDataset) and part.shape == (3,)
    assert torch.equal(part[1], X[4]) and calls == [4]
    assert torch.equal(SliceDataset(ds, idx=1)[np.array([False] * 9 + [True])][0], y[9])
    np.testing.assert_array_equal(np.asarray(SliceDataset(ds, idx=1)), y.numpy())
    np.testing.assert_array_equal(to_numpy(SliceDataset(ds)), X.numpy())
    with pytest.raises(IndexError, match="only supports slicing with 1 dimensional arrays, got 2"):
        sl[np.zeros((2, 2), dtype=int)]
    with pytest.raises(IndexError, match="trying to access element 2 but there are only 2 elements"):
        SliceDataset(ds, idx=2)[0]


def test_slicedataset_fits_like_the_arrays_it_wraps(pairs):
    X, y, ds = pairs
    kwargs = dict(module=nn.Linear, module__in_features=2, module__out_features=2,
                  criterion=nn.CrossEntropyLoss, max_epochs=3, verbose=0, train_split=None, batch_size=4)
    torch.manual_seed(0)
    plain = NeuralNetClassifier(**kwargs).fit(X.numpy(), y.numpy())
    torch.manual_seed(0)
    sliced = NeuralNetClassifier(**kwargs).fit(SliceDataset(ds), y.numpy())
    for (name, a), (_, b) in zip(plain.module_.named_parameters(), sliced.module_.named_parameters()):
        assert torch.equal(a, b), name
    assert plain.history[:, "train_loss"] == sliced.history[:, "train_loss"]


# -- DataFrameTransformer ------------------------------------------------------------------------
def test_dataframe_transformer_splits_floats_and_categories():
    df = pd.DataFrame({"f": [0.5, 1.5, 2.5], "i": [3, 4, 3], "c": pd.Categorical(["x", "y", "x"])})
    out = DataFrameTransformer().fit_transform(df)
    assert sorted(out) == ["X", "c"]
    assert out["X"].dtype == np.float32 and out["X"].tolist() == [[0.5, 3.0], [1.5, 4.0], [2.5, 3.0]]
    assert out["c"].dtype == np.int64 and out["c"].tolist() == [0, 1, 0]
    as_cat = DataFrameTransformer(treat_int_as_categorical=True, int_dtype=np.int32).fit_transform(df)
    assert as_cat["i"].tolist() == [0, 1, 0] and as_cat["i"].dtype == np.int32
    assert as_cat["X"].tolist() == [[0.5], [1.5], [2.5]]
    assert DataFrameTransformer().describe_signature(df) == {
        "X": {"dtype": torch.float32, "input_units": 2}, "c": {"dtype": torch.int64, "input_units": 2}}


def test_dataframe_transformer_refuses_bad_columns():
    with pytest.raises(TypeError, match=r"cannot be interpreted as numerical dtypes: s \((object|str)\)"):
        DataFrameTransformer().fit(pd.DataFrame({"s": ["a", "b"], "f": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="column named 'X'"):
        DataFrameTransformer().fit(pd.DataFrame({"X": [1.0]}))


# -- scoring -------------------------------------------------------------------------------------
def test_loss_scoring_is_the_criterion_over_all_samples(data):
    X, y = data
    net = NeuralNetClassifier(nn.Linear, module__in_features=10, module__out_features=2,
                              criterion=nn.CrossEntropyLoss, max_epochs=2, verbose=0, batch_size=64).fit(X, y)
    expected = nn.CrossEntropyLoss()(net.forward(X), torch.as_tensor(y)).item()
    assert loss_scoring(net, X, y) == pytest.approx(expected, rel=1e-5)
    net.set_params(criterion__reduction="none")
    per_sample = loss_scoring(net, X, y)
    assert per_sample.shape == (len(X),) and per_sample.mean() == pytest.approx(expected, rel=1e-5)
    net.set_params(criterion__reduction="sum")
    assert loss_scoring(net, X, y) == pytest.approx(expected * len(X), rel=1e-4)
    with pytest.raises(NotImplementedError, match="sample_weight"):
        loss_scoring(net, X, y, sample_weight=np.ones(len(X)))
    with pytest.raises(NotInitializedError):
        loss_scoring(NeuralNetClassifier(nn.Linear), X, y)


# -- toy -----------------------------------------------------------------------------------------
def test_mlp_layers_and_factories():
    module = MLPModule(input_units=4, output_units=3, hidden_units=5, num_hidden=2, dropout=0.25)
    assert [type(m).__name__ for m in module.sequential] == [
        "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert module.sequential[2].p == 0.25 and module(torch.zeros(7, 4)).shape == (7, 3)
    assert isinstance(make_classifier(input_units=4)().sequential[-1], nn.Softmax)
    binary = make_binary_classifier(input_units=4, output_units=1)()
    assert binary.squeeze_output and binary(torch.zeros(7, 4)).shape == (7,)
    assert make_regressor(input_units=4)().sequential[-1].out_features == 1


def test_mlp_initial_weights_equal_skorchs():
    skorch_toy = pytest.importorskip("skorch.toy")
    torch.manual_seed(3)
    ours = MLPModule(num_hidden=2)
    torch.manual_seed(3)
    theirs = skorch_toy.MLPModule(num_hidden=2)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert all(torch.equal(ours.state_dict()[k], theirs.state_dict()[k]) for k in ours.state_dict())


# -- utils ---------------------------------------------------------------------------------------
def test_to_tensor_containers_sparse_and_packed():
    from scipy import sparse
    from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

    x, z = torch.zeros(5, 3), np.arange(15).reshape(5, 3)
    out = to_tensor({"x": x, "z": z, "pair": (x, [1, 2])}, device="cpu")
    assert torch.equal(out["z"], torch.as_tensor(z)) and out["pair"][1].tolist() == [1, 2]
    assert isinstance(to_tensor([x, torch.ones(2)], "cpu"), list)
    packed = pack_padded_sequence(x, torch.tensor([2, 2, 1]))
    assert isinstance(to_tensor(packed, "cpu"), PackedSequence)
    csr = sparse.csr_matrix(np.array([[0, 2.0], [3.0, 0]], dtype=np.float32))
    dense = to_tensor(csr, "cpu", accept_sparse=True).to_dense()
    assert dense.tolist() == [[0.0, 2.0], [3.0, 0.0]]
    with pytest.raises(TypeError, match="accept_sparse=True"):
        to_tensor(csr, "cpu")


def test_to_numpy_and_to_device_keep_containers():
    out = to_numpy({"a": torch.ones(2, requires_grad=True), "b": [torch.zeros(1), torch.ones(1)]})
    assert out["a"].tolist() == [1.0, 1.0] and isinstance(out["b"], list) and out["b"][1].tolist() == [1.0]
    moved = to_device({"a": (torch.zeros(1), [torch.ones(1)])}, "cpu")
    assert isinstance(moved["a"], tuple) and isinstance(moved["a"][1], list)
    t = torch.zeros(1)
    assert to_device(t, None) is t


def test_data_from_dataset_follows_subsets():
    ds = Dataset(np.arange(8).reshape(4, 2), np.array([1, 3, 0, 2]))
    inner = torch.utils.data.Subset(ds, [1, 3])
    X, y = data_from_dataset(torch.utils.data.Subset(inner, [1]))
    assert X.tolist() == [[6, 7]] and y.tolist() == [2]
    assert is_skorch_dataset(inner) and not is_skorch_dataset(torch.utils.data.TensorDataset(torch.zeros(2)))
    X, y = data_from_dataset(torch.utils.data.TensorDataset(torch.zeros(3, 1), torch.ones(3)))
    assert X.shape == (3, 1) and y.tolist() == [1, 1, 1]
    with pytest.raises(AttributeError, match="Could not access X and y"):
        data_from_dataset(torch.utils.data.TensorDataset(torch.zeros(3)))
    assert is_dataset(ds) and not is_dataset(np.zeros(2))


def test_small_utils():
    assert duplicate_items([1, 2], {2: "x", 3: "y"}, ("a", "a")) == {2, "a"}
    assert params_for("p__", {"p__a": 1, "q__a": 2}) == params_for("p", {"p__a": 1}) == {"a": 1}
    acc = FirstStepAccumulator()
    acc.store_step(1)
    acc.store_step(2)
    assert acc.get_step() == 1
    tee = TeeGenerator(i for i in range(3))
    assert list(tee) == list(tee) == [0, 1, 2]
    assert get_map_location(None) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.warns(DeviceWarning):
            assert get_map_location("cuda") == torch.device("cpu")
    with pytest.raises(NotInitializedError, match="This NeuralNet instance is not initialized yet"):
        check_is_fitted(prefect_torch.NeuralNet(nn.Linear, criterion=nn.MSELoss))


# -- exceptions ----------------------------------------------------------------------------------
def test_errors_are_skorch_exceptions_and_builtins():
    assert issubclass(NotInitializedError, SkorchException)
    assert issubclass(SkorchAttributeError, AttributeError) and issubclass(SkorchAttributeError, SkorchException)
    assert issubclass(DeviceWarning, SkorchWarning) and issubclass(SkorchWarning, UserWarning)
    net = NeuralNetRegressor(nn.Linear, module__in_features=2, module__out_features=1, max_epochs=1,
                             verbose=0).fit(np.zeros((8, 2), np.float32), np.zeros((8, 1), np.float32))
    net.trim_for_prediction()
    with pytest.raises(SkorchTrainingImpossibleError, match="trimmed for prediction") as info:
        net.fit(np.zeros((8, 2), np.float32), np.zeros((8, 1), np.float32))
    assert isinstance(info.value, RuntimeError)


# -- NeuralNetBinaryClassifier -------------------------------------------------------------------
def binary_net(**kwargs):
    kwargs.setdefault("max_epochs", 3)
    kwargs.setdefault("lr", 0.5)
    kwargs.setdefault("verbose", 0)
    return NeuralNetBinaryClassifier(make_binary_classifier(input_units=10, output_units=1), **kwargs)


def test_binary_classifier_probabilities_threshold_and_defaults(data):
    X, y = data
    net = binary_net().fit(X, y.astype(np.float32))
    assert isinstance(net.criterion_, nn.BCEWithLogitsLoss)
    assert {"train_loss", "valid_loss", "valid_acc"} <= set(net.history[-1])
    proba = net.predict_proba(X)
    logits = net.forward(X)
    assert logits.shape == (len(X),)
    np.testing.assert_allclose(proba[:, 1], torch.sigmoid(logits).numpy(), rtol=1e-6)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    for threshold in (0.2, 0.5, 0.8):
        net.threshold = threshold
        pred = net.predict(X)
        assert pred.dtype == np.uint8 and (pred == (proba[:, 1] > threshold)).all()
    assert net.classes_.tolist() == [0, 1]
    assert net.score(X, y) == pytest.approx(np.mean(net.predict(X) == y))
    assert clone(net).threshold == 0.8


def test_binary_classifier_accepts_integer_labels_and_refuses_bad_shapes(data):
    X, y = data
    torch.manual_seed(0)
    from_int = binary_net().fit(X, y)
    torch.manual_seed(0)
    from_float = binary_net().fit(X, y.astype(np.float32))
    assert from_int.history[:, "train_loss"] == from_float.history[:, "train_loss"]
    with pytest.raises(ValueError, match="The target data should be 1-dimensional."):
        binary_net().fit(X, y[:, None].astype(np.float32))
    two_outputs = NeuralNetBinaryClassifier(make_classifier(input_units=10, output_units=2), max_epochs=1)
    with pytest.raises(ValueError, match=r"shape \(n,\) or \(n, 1\), got \(128, 2\)"):
        two_outputs.fit(X, y.astype(np.float32))


def test_binary_classifier_with_bceloss_takes_probabilities_as_they_are(data):
    X, y = data
    net = binary_net(criterion=nn.BCELoss, module__output_nonlin=nn.Sigmoid()).fit(X, y.astype(np.float32))
    proba = net.predict_proba(X)
    np.testing.assert_allclose(proba[:, 1], net.forward(X).numpy(), rtol=1e-6)


def test_binary_classifier_matches_skorch_bit_for_bit(data):
    skorch = pytest.importorskip("skorch")
    X, y = data
    y = y.astype(np.float32)
    kwargs = dict(max_epochs=4, lr=0.5, verbose=0, batch_size=32)
    torch.manual_seed(0)
    ours = NeuralNetBinaryClassifier(make_binary_classifier(input_units=10, output_units=1), **kwargs).fit(X, y)
    torch.manual_seed(0)
    theirs = skorch.NeuralNetBinaryClassifier(
        skorch.toy.make_binary_classifier(input_units=10, output_units=1), **kwargs).fit(X, y)
    for key, value in theirs.module_.state_dict().items():
        assert torch.equal(ours.module_.state_dict()[key], value), key
    for key in ("train_loss", "valid_loss", "valid_acc"):
        assert ours.history[:, key] == theirs.history[:, key], key
    np.testing.assert_array_equal(ours.predict_proba(X), theirs.predict_proba(X))
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_binary_classifier_pickles_and_predefined_split_pickles(data):
    X, y = data
    net = binary_net(max_epochs=1).fit(X, y.astype(np.float32))
    restored = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(restored.predict_proba(X), net.predict_proba(X))
    split = pickle.loads(pickle.dumps(predefined_split(Dataset(X[:10], y[:10]))))
    train, valid = split(Dataset(X, y))
    assert len(train) == len(X) and len(valid) == 10


def test_top_level_names_like_skorchs():
    skorch = pytest.importorskip("skorch")
    missing = [name for name in skorch.__all__ if not hasattr(prefect_torch, name)]
    assert missing == []
    buffer = io.StringIO()
    print(prefect_torch.NeuralNetBinaryClassifier.__doc__, file=buffer)
    assert "threshold" in buffer.getvalue()


# -- metadata routing ----------------------------------------------------------------------------
class RecordsScale(nn.Module):
    seen: list = []

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(10, 2)

    def forward(self, X, scale=1.0):
        RecordsScale.seen.append(scale)
        return torch.softmax(self.lin(X) * scale, dim=-1)


def test_set_fit_request_routes_metadata_through_a_pipeline(data):
    import sklearn
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = data
    net = NeuralNetClassifier(RecordsScale, max_epochs=1, verbose=0, train_split=None, batch_size=100)
    with pytest.raises(RuntimeError, match="metadata routing is enabled"):
        net.set_fit_request(scale=True)
    with sklearn.config_context(enable_metadata_routing=True):
        assert net.set_fit_request(scale=True) is net
        assert net.set_partial_fit_request(scale="factor") is net
        RecordsScale.seen = []
        make_pipeline(FunctionTransformer(), net).fit(X, y, scale=3.0)
        assert RecordsScale.seen == [3.0, 3.0]  # 200 samples, batches of 100
        plain = clone(net.set_params())
        with pytest.raises(Exception, match="scale"):  # not requested by the fresh net
            make_pipeline(FunctionTransformer(), NeuralNetClassifier(RecordsScale, max_epochs=1)).fit(X, y, scale=3.0)
        RecordsScale.seen = []
        make_pipeline(FunctionTransformer(), plain).fit(X, y, scale=2.0)  # clone keeps the request
        assert RecordsScale.seen == [2.0, 2.0]


# -- history -------------------------------------------------------------------------------------
def test_distributed_history_replays_every_ranks_batches_in_the_same_order():
    from torch.distributed import HashStore

    from prefect_torch.history import DistributedHistory

    store = HashStore()
    ranks = [DistributedHistory(store=store, rank=r, world_size=2) for r in range(2)]
    for epoch in range(2):
        for h in ranks:
            h.new_epoch()
            h.record("dur", 0.1 * (h.rank + 1))  # epoch values stay local
        for batch in range(3):
            for h in ranks:
                h.new_batch()
                h.record_batch("train_loss", 10 * epoch + batch + 0.5 * h.rank)
    expected = [[0.0, 0.5, 1.0, 1.5, 2.0, 2.5], [10.0, 10.5, 11.0, 11.5, 12.0, 12.5]]
    for h in ranks:
        assert h[:, "batches", :, "train_loss"] == expected
    assert ranks[0][:, "dur"] == [0.1, 0.1] and ranks[1][:, "dur"] == [0.2, 0.2]
    restored = pickle.loads(pickle.dumps(ranks[0]))
    assert restored.store is None and restored.to_list() == ranks[0].to_list()
    with pytest.raises(NotImplementedError):
        DistributedHistory.from_file("history.json")


def test_history_indexing_like_skorch():
    from prefect_torch.history import History

    h = History()
    h.new_epoch()
    h.record("a", 1)
    h.record("b", 2)
    h.new_batch()
    h.record_batch("loss", 3)
    assert h[-1, ["a", "b"]] == [1, 2] and h[-1, ("a", "b")] == (1, 2)
    assert h[1:, "batches"] == [] and History()[:, "batches", -1] == []
    with pytest.raises(KeyError, match="Key 'zz' was not found in history."):
        h[:, "zz"]
    with pytest.raises(KeyError, match="only possible if key 'batches' is used, found key 'a'"):
        h[:, "a", 0]
    with pytest.raises(KeyError, match="Tried to index history with 5 indices but only 4"):
        h[:, "batches", :, "loss", 0]
    with pytest.raises(KeyError):  # no epoch at all: nothing has the key (only "batches" gives [])
        History()[:, "a"]
    with pytest.raises(KeyError):
        h[-1, "batches", 1:, "loss"]
