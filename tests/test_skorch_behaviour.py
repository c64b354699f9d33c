"""Behaviour a skorch script relies on (issue 13): callbacks without ``call_order``, parts a
subclass creates in ``initialize_*``, late argument checks, ``compile``, sparse input, fit
parameters for ``train_split``, 1-d regression targets, ``WarmRestartLR`` per group, datasets
with ``y``, criteria that are not modules, ``ValidSplit`` targets, ``EpochScoring`` inputs."""
from unittest.mock import Mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.model_selection import GroupKFold
from torch import nn

from helpers import PairDataset, fit, make_net
from prefect_torch import Dataset, NeuralNet, NeuralNetClassifier, NeuralNetRegressor, ValidSplit
from prefect_torch.callbacks import Callback, EpochScoring, LoadInitState, WarmRestartLR
from prefect_torch.examples import MyModule


# -- callbacks ---------------------------------------------------------------------------------------
def test_mocked_and_duck_typed_callbacks_run_in_the_given_order(data):
    calls = []

    class Duck:  # no Callback base, no call_order, initialize() returns None
        def initialize(self):
            calls.append("initialize")

        def on_epoch_end(self, net, **kwargs):
            calls.append(("duck", len(net.history)))

    mock = Mock(spec=Callback)
    load = LoadInitState(Mock(files_to_load=Mock(return_value={})))
    net = fit(make_net(max_epochs=3, callbacks=[("mock", mock), ("duck", Duck()), ("load", load)]), *data)
    names = [name for name, _ in net.callbacks_]
    assert names.index("load") == 0 and names.index("mock") < names.index("duck")  # load first, rest as given
    assert dict(net.callbacks_)["mock"] is mock and mock.initialize.call_count == 1
    assert mock.on_epoch_end.call_count == 3 and mock.on_batch_end.call_count == 3 * (3 + 1)
    assert calls == ["initialize", ("duck", 1), ("duck", 2), ("duck", 3)]


# -- parts created in initialize_* -------------------------------------------------------------------
class WithHead(NeuralNetClassifier):
    """A net with a second module ``head_`` (configured as ``head__*``) and its own optimizer."""

    def __init__(self, *args, head=nn.Linear, **kwargs):
        self.head = head
        super().__init__(*args, **kwargs)

    def initialize_module(self):  # written as skorch documents it: no arguments
        super().initialize_module()
        self.head_ = self.head(**self.get_params_for("head"))
        return self

    def infer(self, x, **fit_params):
        return F.softmax(self.module_(x) + self.head_(torch.as_tensor(x)), dim=-1)


def test_a_module_made_in_initialize_module_is_routed_trained_and_rebuilt(data):
    net = make_net(WithHead, head__in_features=10, head__out_features=2).initialize()
    assert net._modules == ["module", "head"] and "head" in net.prefixes_
    assert "head" not in NeuralNetClassifier.prefixes_  # the class is left alone
    in_optimizer = {id(p) for g in net.optimizer_.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in [*net.module_.parameters(), *net.head_.parameters()]}
    before = net.head_.weight.detach().clone()
    fit(net.set_params(warm_start=True), *data)
    assert not torch.equal(before, net.head_.weight)  # the head learned
    old_head = net.head_
    net.set_params(head__bias=False)  # rebuilds modules, criterion and optimizer
    assert net.head_ is not old_head and net.head_.bias is None
    assert {id(p) for g in net.optimizer_.param_groups for p in g["params"]} == {
        id(p) for p in [*net.module_.parameters(), *net.head_.parameters()]}
    copy = clone(net)
    assert copy.get_params()["head__bias"] is False and copy.initialize().head_.bias is None
    del net.head_
    assert net._modules == ["module"] and "head" not in net.prefixes_


def test_parts_follow_train_and_eval_mode_and_a_second_optimizer_steps(data):
    modes = []

    class TwoOptimizers(WithHead):
        def initialize_optimizer(self):
            self.optimizer_ = torch.optim.SGD(self.module_.parameters(), lr=self.lr)
            self.head_optimizer_ = torch.optim.SGD(self.head_.parameters(), lr=0.1)
            return self

        def on_batch_end(self, net, training=None, **kwargs):
            modes.append((training, self.module_.training, self.head_.training))

    net = fit(make_net(TwoOptimizers, head__in_features=10, head__out_features=2, max_epochs=1), *data)
    assert net._optimizers == ["optimizer", "head_optimizer"]
    assert {(t, t, t) for t in (True, False)} == set(modes)
    head = net.head_.weight.detach().clone()
    net.partial_fit(*data)
    assert not torch.equal(head, net.head_.weight)
    net.set_params(head_optimizer__lr=0.7)  # in place: nothing rebuilt
    assert net.head_optimizer_.param_groups[0]["lr"] == 0.7 and net.head_ is not None


def test_torch_parts_set_outside_initialize_or_without_underscore_are_refused():
    class Outside(NeuralNetClassifier):
        def initialize(self):
            super().initialize()
            self.extra_optimizer = torch.optim.SGD(self.module_.parameters(), lr=1)
            return self

    class NoUnderscore(NeuralNetClassifier):
        def initialize_module(self):
            super().initialize_module()
            self.extra = nn.Linear(1, 1)
            return self

    with pytest.raises(AttributeError, match="'extra_optimizer'.*outside the initialize methods"):
        make_net(Outside).initialize()
    with pytest.raises(AttributeError, match=r"trailing underscore, e\.g\. self\.extra_ ="):
        make_net(NoUnderscore).initialize()
    net = make_net().initialize()
    net.module_ = MyModule()  # a registered part may be replaced
    assert net._modules == ["module"]


def test_compile_covers_every_module_and_criterion_and_reruns_after_set_params(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: compiled.append((module, kwargs)) or module)
    net = make_net(WithHead, head__in_features=10, head__out_features=2, compile=True,
                   compile__mode="reduce-overhead").initialize()
    assert [m for m, _ in compiled] == [net.module_, net.head_, net.criterion_]
    assert all(kwargs == {"mode": "reduce-overhead"} for _, kwargs in compiled)
    net.set_params(compile__mode="max-autotune")
    assert len(compiled) == 6 and compiled[-1] == (net.criterion_, {"mode": "max-autotune"})
    plain = make_net().initialize()
    plain.set_params(compile=True)
    assert len(compiled) == 8


# -- data ---------------------------------------------------------------------------------------------
def test_sparse_input_trains_like_its_dense_copy(data):
    scipy_sparse = pytest.importorskip("scipy.sparse")
    X, y = data
    X = np.where(np.abs(X) > 1, X, 0).astype(np.float32)  # mostly zeros
    sparse = fit(make_net(max_epochs=3), scipy_sparse.csr_matrix(X), y)
    dense = fit(make_net(max_epochs=3), X, y)
    assert sparse.history[:, "train_loss"] == dense.history[:, "train_loss"]
    np.testing.assert_array_equal(sparse.predict_proba(scipy_sparse.csr_matrix(X)), dense.predict_proba(X))


def test_fit_parameters_reach_train_split_and_groups_keep_the_module_free(data):
    X, y = data
    seen = []

    def split(dataset, y=None, **params):
        seen.append(sorted(params))
        return dataset, None

    fit(make_net(train_split=split, max_epochs=1), X, y, groups=np.arange(200) % 4)
    assert seen == [["groups"]]
    groups = (np.arange(200) >= 150).astype(int)
    net = fit(make_net(train_split=ValidSplit(GroupKFold(2)), max_epochs=1), X, y, groups=groups)
    assert sum(net.history[-1, "batches", :, "valid_batch_size"]) in (50, 150)  # one whole group


def test_a_dataset_with_y_is_split_on_it_and_train_split_false_means_none(data):
    X, y = data
    y = (np.arange(200) < 50).astype(np.int64)
    net = fit(make_net(max_epochs=1, batch_size=200), PairDataset(X, y), y)
    assert net.history[-1, "batches", -1, "valid_batch_size"] == 40
    assert list(net.classes_) == [0, 1]
    no_split = fit(make_net(max_epochs=1, train_split=False), X, y)
    assert "valid_loss" not in no_split.history[-1]


def test_fit_without_y_when_the_data_bring_their_targets(data):
    X, y = data
    tensors = torch.utils.data.TensorDataset(torch.as_tensor(X), torch.as_tensor(y))
    net = fit(make_net(max_epochs=1, train_split=ValidSplit(5, stratified=False)), tensors, None)
    assert list(net.classes_) == [0, 1]

    def loader(dataset, **kwargs):  # a custom iterator that makes the targets itself
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(
            torch.as_tensor(dataset.X), torch.as_tensor(X[: len(dataset), :1])), batch_size=64)

    net = fit(NeuralNetRegressor(nn.Linear(10, 1), criterion=nn.L1Loss, iterator_train=loader,
                                 train_split=None, max_epochs=1, verbose=0), X, None)
    assert net.history[-1, "train_batch_count"] == 4


def test_an_initialized_dataset_argument_is_used_as_is(data):
    X, y = data
    net = fit(make_net(dataset=Dataset(X, y), max_epochs=1, train_split=None), X[:10], y[:10])
    assert net.history[-1, "train_batch_count"] == 4  # 200 samples in batches of 64
    with pytest.raises(ValueError, match="already an initialized Dataset"):
        fit(make_net(dataset=Dataset(X, y), dataset__length=3), X, y)


@pytest.mark.parametrize("y", [[np.zeros(100), np.ones(100)], {"a": np.zeros(100), "b": np.ones(100)}])
def test_valid_split_takes_several_targets_unless_stratified(y):
    X = np.random.rand(100, 3)
    train, valid = ValidSplit(5)(Dataset(X, y), y)
    assert len(train) == 80 and len(valid) == 20
    with pytest.raises(ValueError, match="stratified split needs one class label per sample"):
        ValidSplit(5, stratified=True)(Dataset(X, y), y)


# -- regression, schedules, criteria ---------------------------------------------------------------
class Squeeze(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(10, 1)

    def forward(self, X):
        return self.linear(X).squeeze(-1)


def test_regressor_takes_1d_targets_for_a_1d_output_as_bagging_needs(data):
    from sklearn.ensemble import BaggingRegressor

    X, _ = data
    y = X[:, 0] * 2 + X[:, 1]
    net = fit(NeuralNetRegressor(Squeeze, max_epochs=20, lr=0.1, verbose=0), X, y)
    assert net.predict(X).shape == (200,) and net.score(X, y) > 0.9
    bagging = BaggingRegressor(NeuralNetRegressor(Squeeze, max_epochs=5, lr=0.1, verbose=0),
                               n_estimators=2, random_state=0).fit(X, y)
    assert bagging.predict(X).shape == (200,)


def test_warm_restart_lr_per_group_equals_skorch():
    theirs_module = pytest.importorskip("skorch.callbacks.lr_scheduler")

    def lrs(cls, **kwargs):
        torch.manual_seed(0)
        layer = nn.Linear(3, 3)
        optimizer = torch.optim.SGD([{"params": [layer.weight]}, {"params": [layer.bias]}], lr=0.1)
        scheduler, seen = cls(optimizer, **kwargs), []
        for _ in range(30):
            seen.append([group["lr"] for group in optimizer.param_groups])
            optimizer.step()
            scheduler.step()
        return np.array(seen)

    kwargs = {"min_lr": [1e-4, 1e-3], "max_lr": [0.1, 0.5], "base_period": 3, "period_mult": 2}
    ours = lrs(WarmRestartLR, **kwargs)
    np.testing.assert_array_equal(ours, lrs(theirs_module.WarmRestartLR, **kwargs))
    assert ours[0].tolist() == [0.1, 0.5] and ours[3].tolist() == pytest.approx([1e-4, 1e-3])
    with pytest.raises(ValueError, match=r"min_lr.*1 param group"):
        WarmRestartLR(torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1), min_lr=[0.1, 0.2, 0.3])


def test_criteria_that_are_not_torch_modules(data):
    X, y = data

    class MeanNLL:  # a plain class
        def __call__(self, y_pred, y_true):
            return F.nll_loss(torch.log(y_pred), y_true)

    def make_nll():  # a factory returning a function
        return F.nll_loss

    plain = fit(make_net(criterion=MeanNLL, max_epochs=1, train_split=None), X, y)
    module = fit(make_net(criterion=nn.NLLLoss, max_epochs=1, train_split=None), X, y)
    assert plain.history[:, "train_loss"] == pytest.approx(module.history[:, "train_loss"], rel=1e-5)
    factory = fit(make_net(criterion=make_nll, max_epochs=1), X, y)
    assert np.isfinite(factory.history[-1, "train_loss"])


# -- scoring ------------------------------------------------------------------------------------------
def test_epoch_scoring_without_caching_gets_the_users_x(data):
    X, y = data
    seen = []

    def scorer(net, X_score, y_score):
        seen.append((type(X_score), None if y_score is None else len(y_score)))
        return float(np.mean(net.predict(X_score) == y_score))

    net = fit(make_net(max_epochs=2, callbacks=[EpochScoring(scorer, use_caching=False, name="acc",
                                                             lower_is_better=None)]), X, y)
    assert seen == [(np.ndarray, 40)] * 2
    assert net.history[:, "acc"] == net.history[:, "valid_acc"] and "acc_best" not in net.history[-1]
    cb = dict(net.callbacks_)["valid_acc"]
    X_test, y_test, y_preds = cb.get_test_data(None, net.get_split_datasets(X, y)[1], use_caching=False)
    assert isinstance(X_test, np.ndarray) and len(y_test) == 40 and y_preds == []


def test_epoch_scoring_without_targets_and_with_a_dict():
    X = np.random.rand(100, 1).astype(np.float32)
    seen = []

    def mean_input(net, X_score, y_score):
        seen.append(y_score)
        return float(np.mean(X_score))

    def split(dataset, y=None):
        return dataset, Dataset(dataset.X, None)

    class IgnoresTargets(nn.Module):
        def forward(self, y_pred, y_true):
            return y_pred.pow(2).mean()

    net = fit(NeuralNet(nn.Linear(1, 1), criterion=IgnoresTargets, max_epochs=2, verbose=0, train_split=split,
                        callbacks=[EpochScoring(mean_input, use_caching=False)]), X, np.zeros((100, 1), np.float32))
    assert seen == [None, None] and net.history[:, "mean_input"] == pytest.approx([X.mean()] * 2)
    with pytest.raises(ValueError, match="dict of several scorers"):
        make_net(callbacks=[EpochScoring({"a": "accuracy", "b": "f1"})]).initialize()


def test_set_params_names_what_started_a_rebuild(capsys):
    net = make_net(verbose=1, optimizer__momentum=0.5).initialize()
    capsys.readouterr()
    net.set_params(module__num_units=12, criterion__reduction="sum", optimizer__momentum=0.9)
    assert capsys.readouterr().out.splitlines() == [
        "Re-initializing module because the following parameters were re-set: module__num_units.",
        "Re-initializing criterion.", "Re-initializing optimizer."]
    assert net.optimizer_.param_groups[0]["momentum"] == 0.9 and net.criterion_.reduction == "sum"
    net.set_params(criterion__reduction="mean")
    assert capsys.readouterr().out.splitlines() == [
        "Re-initializing criterion because the following parameters were re-set: criterion__reduction.",
        "Re-initializing optimizer."]


def test_trim_for_prediction_drops_every_criterion_and_optimizer(data):
    class TwoCriteria(NeuralNetClassifier):
        def initialize_criterion(self):
            super().initialize_criterion()
            self.aux_criterion_ = nn.MSELoss()
            return self

    net = fit(make_net(TwoCriteria, max_epochs=1), *data)
    proba = net.predict_proba(data[0])
    net.trim_for_prediction()
    assert (net.criterion_, net.aux_criterion_, net.optimizer_, net.criterion, net.optimizer) == (None,) * 5
    np.testing.assert_array_equal(net.predict_proba(data[0]), proba)


def test_shuffled_validation_batches_warn_at_initialize(recwarn):
    make_net(iterator_valid__shuffle=False).initialize()
    assert not [w for w in recwarn if "iterator_valid__shuffle" in str(w.message)]
    with pytest.warns(UserWarning, match=r"iterator_valid__shuffle=True shuffles .*predict\(\)"):
        make_net(iterator_valid__shuffle=True).initialize()
