"""NeuralNet, NeuralNetClassifier, NeuralNetRegressor: initialization, parameter routing, the
training loop (fit, partial_fit, warm start), the history, inference, set_params, and bitwise
equality with skorch 1.4 under the same torch seed."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, r2_score
from torch import nn

from helpers import assert_last_validation_matches, fit, make_net
from prefect_torch import (
    History,
    NeuralNet,
    NeuralNetClassifier,
    NeuralNetRegressor,
    ValidSplit,
)
from prefect_torch.callbacks import (
    Callback,
    EpochScoring,
    EpochTimer,
    PassthroughScoring,
    PrintLog,
)
from prefect_torch.data import Dataset
from prefect_torch.examples import MyModule

EPS = torch.finfo(torch.float32).eps


# -- modules (classes, so a prefect_torch net and a skorch net each build their own) ----------
class Logits(nn.Sequential):
    """Outputs unnormalized scores, for CrossEntropyLoss."""

    def __init__(self, n_features=10, num_units=8, n_classes=2):
        super().__init__(nn.Linear(n_features, num_units), nn.ReLU(), nn.Linear(num_units, n_classes))


class Softmax3(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Linear(10, 3), nn.Softmax(dim=-1))


class LinearSoftmax(nn.Sequential):
    """No dropout: the training-mode output is deterministic."""

    def __init__(self):
        super().__init__(nn.Linear(10, 2), nn.Softmax(dim=-1))


class Reg(nn.Sequential):
    def __init__(self, n_out=1):
        super().__init__(nn.Linear(10, 8), nn.Tanh(), nn.Linear(8, n_out))


# -- helpers --------------------------------------------------------------------------------------
def same_weights(a, b):
    sa, sb = a.module_.state_dict(), b.module_.state_dict()
    assert list(sa) == list(sb)
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def regression_data(X, n_out=1):
    cols = [X[:, 0] + 2 * X[:, 1], X[:, 2] - X[:, 3]][:n_out]
    return np.stack(cols, axis=1).astype(np.float32)


def valid_fold(X, y, stratified=True):
    """The validation samples the nets' default ``ValidSplit(5)`` holds out."""
    _, valid = ValidSplit(5, stratified=stratified)(Dataset(X, y))
    return valid.X, valid.y


class RecordTrainBatches(Callback):
    def initialize(self):
        self.batches_ = []
        return self

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        if training:
            self.batches_.append(batch[0].clone())


# -- initialize -----------------------------------------------------------------------------------
def test_initialize_creates_all_parts():
    net = make_net(module__num_units=7)
    for attr in ("module_", "criterion_", "optimizer_", "callbacks_", "history_", "initialized_"):
        assert not hasattr(net, attr)
    assert net.initialize() is net
    assert net.initialized_ is True
    assert isinstance(net.module_, MyModule) and net.module_[0].out_features == 7
    assert isinstance(net.criterion_, nn.NLLLoss)
    assert isinstance(net.optimizer_, torch.optim.SGD)
    optimized = [id(p) for g in net.optimizer_.param_groups for p in g["params"]]
    assert sorted(optimized) == sorted(id(p) for p in net.module_.parameters())
    assert [name for name, _ in net.callbacks_] == [
        "epoch_timer", "train_loss", "valid_loss", "valid_acc", "print_log"]
    kinds = [EpochTimer, PassthroughScoring, PassthroughScoring, EpochScoring, PrintLog]
    assert all(isinstance(cb, kind) for (_, cb), kind in zip(net.callbacks_, kinds))
    assert isinstance(net.history_, History) and len(net.history_) == 0
    assert net.history is net.history_


def test_module_class_gets_module_kwargs():
    net = make_net(module__num_units=13, module__n_features=4).initialize()
    assert net.module_[0].in_features == 4
    assert net.module_[0].out_features == 13
    assert net.module_[3].in_features == 13
    assert net.get_params_for("module") == {"num_units": 13, "n_features": 4}


def test_module_instance_is_used_as_is_without_kwargs():
    module = MyModule(num_units=5)
    net = make_net(module=module).initialize()
    assert net.module_ is module


def test_module_instance_with_kwargs_is_rebuilt_from_its_class():
    module = MyModule(num_units=5)
    net = make_net(module=module, module__num_units=3).initialize()
    assert net.module_ is not module
    assert type(net.module_) is MyModule
    assert net.module_[0].out_features == 3


def test_lr_and_optimizer_kwargs_reach_param_groups():
    net = make_net(lr=0.3, optimizer__momentum=0.9, optimizer__weight_decay=0.01).initialize()
    (group,) = net.optimizer_.param_groups
    assert group["lr"] == 0.3
    assert group["momentum"] == 0.9
    assert group["weight_decay"] == 0.01


def test_optimizer_lr_overrides_lr():
    net = make_net(lr=0.3, optimizer__lr=0.07).initialize()
    assert [g["lr"] for g in net.optimizer_.param_groups] == [0.07]


def test_optimizer_class_is_used():
    net = make_net(optimizer=torch.optim.Adam, lr=0.002, optimizer__betas=(0.8, 0.9)).initialize()
    assert isinstance(net.optimizer_, torch.optim.Adam)
    assert net.optimizer_.param_groups[0]["betas"] == (0.8, 0.9)
    assert net.optimizer_.param_groups[0]["lr"] == 0.002


def test_optimizer_param_groups_glob_patterns():
    net = make_net(
        lr=0.5, optimizer__momentum=0.9,
        optimizer__param_groups=[("0.*", {"lr": 0.1}), ("4.bias", {"lr": 0.2, "momentum": 0.0}),
                                 ("nothing*", {"lr": 9.0})],
    ).initialize()
    named = dict(net.module_.named_parameters())
    groups = net.optimizer_.param_groups
    assert len(groups) == 3  # the pattern that matches nothing makes no group

    def ids(names):
        return sorted(id(named[n]) for n in names)

    assert sorted(id(p) for p in groups[0]["params"]) == ids(["0.weight", "0.bias"])
    assert (groups[0]["lr"], groups[0]["momentum"]) == (0.1, 0.9)
    assert sorted(id(p) for p in groups[1]["params"]) == ids(["4.bias"])
    assert (groups[1]["lr"], groups[1]["momentum"]) == (0.2, 0.0)
    assert sorted(id(p) for p in groups[2]["params"]) == ids(["3.weight", "3.bias", "4.weight"])
    assert (groups[2]["lr"], groups[2]["momentum"]) == (0.5, 0.9)


def test_optimizer_param_group_with_lr_zero_freezes_its_parameters(data):
    X, y = data
    net = make_net(optimizer__param_groups=[("0.*", {"lr": 0.0})]).initialize()
    first = {k: v.clone() for k, v in net.module_.state_dict().items()}
    net.partial_fit(X, y)
    after = net.module_.state_dict()
    assert torch.equal(after["0.weight"], first["0.weight"])
    assert torch.equal(after["0.bias"], first["0.bias"])
    assert not torch.equal(after["4.weight"], first["4.weight"])


def test_criterion_kwargs_are_routed():
    weight = torch.tensor([1.0, 3.0])
    net = make_net(criterion__weight=weight, criterion__reduction="sum").initialize()
    assert torch.equal(net.criterion_.weight, weight)
    assert net.criterion_.reduction == "sum"


def test_criterion_kwargs_change_the_loss(data):
    """The recorded loss of the first batch is the weighted NLL of the initial module's output."""
    X, y = data
    weight = torch.tensor([1.0, 3.0])
    net = make_net(module=LinearSoftmax, criterion__weight=weight, train_split=None,
                   batch_size=-1, max_epochs=1)
    torch.manual_seed(0)
    net.initialize()
    with torch.no_grad():
        proba = net.module_(torch.as_tensor(X))
    expected = F.nll_loss(torch.log(proba + EPS), torch.as_tensor(y), weight=weight).item()
    unweighted = F.nll_loss(torch.log(proba + EPS), torch.as_tensor(y)).item()
    assert expected != pytest.approx(unweighted)
    net.partial_fit(X, y)
    assert net.history[-1, "batches", 0, "train_loss"] == pytest.approx(expected, rel=1e-6)
    assert net.history[-1, "train_loss"] == pytest.approx(expected, rel=1e-6)


# -- fit, partial_fit, warm start -----------------------------------------------------------------
def test_partial_fit_epochs_continues_training(data):
    X, y = data
    three = fit(make_net(max_epochs=3), X, y)
    three.partial_fit(X, y, epochs=2)
    five = fit(make_net(max_epochs=5), X, y)
    assert same_weights(three, five)
    assert three.history[:, "epoch"] == [1, 2, 3, 4, 5]
    assert three.history[:, "train_loss"] == five.history[:, "train_loss"]
    assert three.history[:, "valid_loss"] == five.history[:, "valid_loss"]


def test_partial_fit_without_epochs_runs_max_epochs_and_initializes_if_needed(data):
    X, y = data
    net = make_net(max_epochs=2)
    torch.manual_seed(0)
    net.partial_fit(X, y)
    assert net.initialized_ and net.history[:, "epoch"] == [1, 2]
    net.partial_fit(X, y)
    assert net.history[:, "epoch"] == [1, 2, 3, 4]
    assert same_weights(net, fit(make_net(max_epochs=4), X, y))


def test_fit_reinitializes_without_warm_start(data):
    X, y = data
    net = fit(make_net(max_epochs=2), X, y)
    first_weights = {k: v.clone() for k, v in net.module_.state_dict().items()}
    first_module, first_optimizer = net.module_, net.optimizer_
    first_history = [dict(row) for row in net.history]
    fit(net, X, y)
    assert net.module_ is not first_module and net.optimizer_ is not first_optimizer
    assert net.history[:, "epoch"] == [1, 2]
    # same seed, fresh start: the second fit repeats the first exactly
    assert all(torch.equal(v, first_weights[k]) for k, v in net.module_.state_dict().items())
    assert net.history[:, "train_loss"] == [row["train_loss"] for row in first_history]


def test_fit_continues_with_warm_start(data):
    X, y = data
    net = fit(make_net(max_epochs=2, warm_start=True), X, y)
    module = net.module_
    net.fit(X, y)
    assert net.module_ is module
    assert net.history[:, "epoch"] == [1, 2, 3, 4]
    assert same_weights(net, fit(make_net(max_epochs=4), X, y))


def test_max_epochs(data):
    X, y = data
    net = fit(make_net(max_epochs=4), X, y)
    assert len(net.history) == 4
    assert net.history[:, "epoch"] == [1, 2, 3, 4]


def test_train_split_none_records_no_validation(data):
    X, y = data
    net = fit(make_net(train_split=None, batch_size=64, max_epochs=2), X, y)
    for row in net.history:
        assert "train_loss" in row
        assert not {"valid_loss", "valid_acc", "valid_batch_count"} & set(row)
        assert row["train_batch_count"] == 4  # 200 samples in batches of 64
        assert [b["train_batch_size"] for b in row["batches"]] == [64, 64, 64, 8]
        assert all("valid_loss" not in b for b in row["batches"])


def test_history_keys_per_epoch_and_per_batch(data):
    X, y = data
    net = fit(make_net(max_epochs=2), X, y)  # 160 training, 40 validation samples
    row = net.history[-1]
    for key in ("epoch", "dur", "train_loss", "train_loss_best", "valid_loss", "valid_loss_best",
                "valid_acc", "valid_acc_best", "train_batch_count", "valid_batch_count", "batches"):
        assert key in row, key
    assert row["train_batch_count"] == 3 and row["valid_batch_count"] == 1
    assert net.history[-1, "batches", :, "train_batch_size"] == [64, 64, 32]
    assert net.history[-1, "batches", :, "valid_batch_size"] == [40]
    train_batches = [b for b in row["batches"] if "train_loss" in b]
    assert len(train_batches) == 3 and all(set(b) == {"train_loss", "train_batch_size"}
                                           for b in train_batches)
    # the epoch losses are the batch losses averaged with the batch sizes as weights
    losses = net.history[-1, "batches", :, "train_loss"]
    assert row["train_loss"] == pytest.approx(np.average(losses, weights=[64, 64, 32]), rel=1e-12)
    (valid_batch_loss,) = net.history[-1, "batches", :, "valid_loss"]
    assert row["valid_loss"] == pytest.approx(valid_batch_loss, rel=1e-12)


def test_history_best_flags(data):
    X, y = data
    net = fit(make_net(max_epochs=5, lr=0.3), X, y)
    for key in ("train_loss", "valid_loss"):
        values = net.history[:, key]
        expected = [v < min(values[:i], default=np.inf) for i, v in enumerate(values)]
        assert net.history[:, key + "_best"] == expected
    accs = net.history[:, "valid_acc"]
    expected = [a > max(accs[:i], default=-np.inf) for i, a in enumerate(accs)]
    assert net.history[:, "valid_acc_best"] == expected


def test_last_epoch_validation_matches_the_fitted_net(data):
    """valid_loss and valid_acc of the last epoch are computed with the final weights."""
    X, y = data
    net = fit(make_net(max_epochs=3), X, y)
    Xv, yv = valid_fold(X, y)
    assert_last_validation_matches(net, Xv, yv)


def test_history_indexing(data):
    X, y = data
    net = fit(make_net(max_epochs=3), X, y)
    h = net.history
    assert h[-1, "valid_loss"] == h[-1]["valid_loss"] == h[2]["valid_loss"]
    assert h[:, "train_loss"] == [row["train_loss"] for row in h]
    assert h[-1, "batches", 0, "train_loss"] == h[-1]["batches"][0]["train_loss"]
    assert h[-1, "batches", -1, "valid_loss"] == h[-1]["batches"][-1]["valid_loss"]
    assert h[:, "batches", :, "train_batch_size"] == [[64, 64, 32]] * 3
    assert h[1:, ("epoch", "valid_acc")] == [(row["epoch"], row["valid_acc"]) for row in h[1:]]
    with pytest.raises(KeyError):
        h[-1, "no_such_key"]


# -- inference ------------------------------------------------------------------------------------
def test_predict_and_predict_proba_softmax_classifier(data):
    X, y = data
    net = fit(make_net(), X, y)
    proba = net.predict_proba(X)
    assert isinstance(proba, np.ndarray) and proba.shape == (200, 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert (proba >= 0).all()
    pred = net.predict(X)
    assert pred.shape == (200,)
    np.testing.assert_array_equal(pred, proba.argmax(axis=1))
    # inference is in eval mode: dropout is off, so repeated predictions agree exactly
    np.testing.assert_array_equal(net.predict_proba(X), proba)


def test_predict_proba_is_the_forward_output_for_a_softmax_module(data):
    X, y = data
    net = fit(make_net(), X, y)
    np.testing.assert_array_equal(net.predict_proba(X), net.forward(X).numpy())


def test_cross_entropy_classifier_gets_softmax_in_predict_proba(data):
    X, y = data
    net = fit(make_net(module=Logits, criterion=nn.CrossEntropyLoss), X, y)
    logits = net.forward(X)
    assert (logits < 0).any()  # really logits, not probabilities
    proba = net.predict_proba(X)
    np.testing.assert_allclose(proba, torch.softmax(logits, dim=-1).numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(net.predict(X), logits.argmax(dim=1).numpy())


def test_predict_nonlinearity_none_and_callable(data):
    X, y = data
    net = fit(make_net(module=Logits, criterion=nn.CrossEntropyLoss, predict_nonlinearity=None), X, y)
    logits = net.forward(X)
    np.testing.assert_array_equal(net.predict_proba(X), logits.numpy())
    net.set_params(predict_nonlinearity=lambda t: t * 2)
    np.testing.assert_array_equal(net.predict_proba(X), (logits * 2).numpy())


def test_forward_and_infer(data):
    X, y = data
    net = fit(make_net(), X, y)
    out = net.forward(X)
    assert isinstance(out, torch.Tensor) and out.shape == (200, 2) and out.device.type == "cpu"
    net.module_.eval()
    with torch.no_grad():
        expected = net.module_(torch.as_tensor(X))
        inferred = net.infer(torch.as_tensor(X))
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(inferred, expected, rtol=1e-6, atol=1e-7)
    assert not out.requires_grad
    # training=True runs the module in training mode: dropout changes the output
    assert not torch.equal(net.forward(X, training=True), out)
    batches = list(net.forward_iter(X))
    assert [len(b) for b in batches] == [64, 64, 64, 8]
    assert torch.equal(torch.cat(batches), out)


def test_classes_inferred_from_y(data):
    X, _ = data
    y3 = (np.arange(len(X)) % 3).astype(np.int64)
    net = make_net(module=Softmax3, train_split=None, max_epochs=1)
    assert not hasattr(net, "classes_")
    fit(net, X, y3)
    np.testing.assert_array_equal(net.classes_, [0, 1, 2])
    assert net.predict_proba(X).shape == (200, 3)
    assert set(net.predict(X)) <= {0, 1, 2}


def test_classes_given(data):
    X, y = data  # y holds only 0 and 1
    net = make_net(module=Softmax3, classes=[0, 1, 2], train_split=None, max_epochs=1)
    np.testing.assert_array_equal(net.classes_, [0, 1, 2])
    fit(net, X, y)
    np.testing.assert_array_equal(net.classes_, [0, 1, 2])


def test_classifier_score_is_accuracy(data):
    X, y = data
    net = fit(make_net(max_epochs=3), X, y)
    assert net.score(X, y) == accuracy_score(y, net.predict(X))
    assert net.score(X[:50], y[:50]) == accuracy_score(y[:50], net.predict(X[:50]))


def test_regressor_with_2d_targets(data):
    X, _ = data
    y2 = regression_data(X, n_out=2)
    net = fit(make_net(NeuralNetRegressor, module=Reg, module__n_out=2, lr=0.05, max_epochs=5), X, y2)
    assert isinstance(net.criterion_, nn.MSELoss)
    pred = net.predict(X)
    assert pred.shape == (200, 2) and pred.dtype == np.float32
    np.testing.assert_array_equal(pred, net.forward(X).numpy())  # no nonlinearity for MSELoss
    assert net.score(X, y2) == pytest.approx(r2_score(y2, pred), rel=1e-6)
    losses = net.history[:, "train_loss"]
    assert losses[-1] < losses[0]
    assert "valid_loss" in net.history[-1] and "valid_acc" not in net.history[-1]


def test_neuralnet_with_mse_loss(data):
    X, _ = data
    y1 = regression_data(X)
    net = fit(make_net(NeuralNet, module=nn.Linear, criterion=nn.MSELoss, module__in_features=10,
                       module__out_features=1, lr=0.05, max_epochs=3), X, y1)
    Xv, yv = valid_fold(X, y1, stratified=False)
    pred = net.predict(Xv)
    np.testing.assert_array_equal(pred, net.forward(Xv).numpy())
    assert net.history[-1, "valid_loss"] == pytest.approx(float(np.mean((pred - yv) ** 2)), rel=1e-5)


# -- set_params -----------------------------------------------------------------------------------
def test_set_params_module_kwarg_rebuilds_module_and_optimizer():
    net = make_net(module__num_units=10).initialize()
    module, optimizer = net.module_, net.optimizer_
    assert net.set_params(module__num_units=5) is net
    assert net.module_ is not module
    assert net.module_[0].out_features == 5
    assert net.optimizer_ is not optimizer
    optimized = sorted(id(p) for g in net.optimizer_.param_groups for p in g["params"])
    assert optimized == sorted(id(p) for p in net.module_.parameters())
    assert net.get_params()["module__num_units"] == 5


def test_set_params_module_kwarg_prints_reinitialization(capsys):
    net = make_net(verbose=1).initialize()
    capsys.readouterr()
    net.set_params(module__num_units=5)
    out = capsys.readouterr().out
    assert "Re-initializing module because the following parameters were re-set: module__num_units." in out
    assert "Re-initializing optimizer" in out


def test_set_params_lr_changes_param_groups_in_place():
    net = make_net(lr=0.5, optimizer__momentum=0.9).initialize()
    module, optimizer = net.module_, net.optimizer_
    weights = {k: v.clone() for k, v in module.state_dict().items()}
    net.set_params(lr=0.123)
    assert net.optimizer_ is optimizer and net.module_ is module
    assert [g["lr"] for g in optimizer.param_groups] == [0.123]
    assert optimizer.param_groups[0]["momentum"] == 0.9
    assert all(torch.equal(v, weights[k]) for k, v in module.state_dict().items())
    assert net.lr == 0.123


def test_set_params_optimizer_kwarg_in_place():
    net = make_net(optimizer__momentum=0.5).initialize()
    optimizer = net.optimizer_
    net.set_params(optimizer__momentum=0.9)
    assert net.optimizer_ is optimizer
    assert optimizer.param_groups[0]["momentum"] == 0.9


def test_set_params_lr_then_training_uses_the_new_lr(data):
    X, y = data
    net = make_net(lr=0.5, warm_start=True)
    torch.manual_seed(0)
    net.initialize()
    net.set_params(lr=0.05)
    net.partial_fit(X, y)
    reference = fit(make_net(lr=0.05), X, y)
    assert same_weights(net, reference)


def test_set_params_callback_param(data, capsys):
    X, y = data
    net = make_net(verbose=1).initialize()
    net.set_params(callbacks__print_log__keys_ignored=["dur"])
    assert dict(net.callbacks_)["print_log"].keys_ignored == ["dur"]
    assert net.get_params()["callbacks__print_log__keys_ignored"] == ["dur"]
    capsys.readouterr()
    net.partial_fit(X, y)
    header = capsys.readouterr().out.splitlines()[0]
    assert "valid_loss" in header and "dur" not in header
    capsys.readouterr()
    net.set_params(callbacks__print_log__keys_ignored=None)
    net.partial_fit(X, y)
    assert "dur" in capsys.readouterr().out.splitlines()[0]


def test_set_params_before_initialize_only_stores():
    net = make_net()
    net.set_params(module__num_units=4, lr=0.2)
    assert not hasattr(net, "module_")
    net.initialize()
    assert net.module_[0].out_features == 4
    assert net.optimizer_.param_groups[0]["lr"] == 0.2


# -- shuffling ------------------------------------------------------------------------------------
def test_shuffle_changes_batch_order_but_is_reproducible(data):
    X, y = data
    plain = fit(make_net(callbacks=[("rec", RecordTrainBatches())]), X, y)
    shuffled = fit(make_net(iterator_train__shuffle=True, callbacks=[("rec", RecordTrainBatches())]), X, y)
    again = fit(make_net(iterator_train__shuffle=True, callbacks=[("rec", RecordTrainBatches())]), X, y)

    Xt = torch.as_tensor(ValidSplit(5, stratified=True)(Dataset(X, y))[0].X)
    plain_batches = dict(plain.callbacks_)["rec"].batches_
    shuffled_batches = dict(shuffled.callbacks_)["rec"].batches_
    # unshuffled: every epoch goes through the training fold in order
    assert torch.equal(torch.cat(plain_batches[:3]), Xt)
    assert torch.equal(torch.cat(plain_batches[3:]), Xt)
    # shuffled: each epoch sees every training sample once, in a new order
    for epoch in (shuffled_batches[:3], shuffled_batches[3:]):
        seen = torch.cat(epoch)
        assert not torch.equal(seen, Xt)
        assert torch.equal(seen[torch.argsort(seen[:, 0])], Xt[torch.argsort(Xt[:, 0])])
    assert not torch.equal(torch.cat(shuffled_batches[:3]), torch.cat(shuffled_batches[3:]))

    assert not same_weights(plain, shuffled)
    assert same_weights(shuffled, again)
    assert shuffled.history[:, "train_loss"] == again.history[:, "train_loss"]


def test_different_seeds_give_different_weights(data):
    X, y = data
    assert not same_weights(fit(make_net(), X, y, seed=0), fit(make_net(), X, y, seed=1))


# -- bitwise equality with skorch 1.4 -------------------------------------------------------------
def _classification(data):
    return data


def _regression(data):
    X, _ = data
    return X, regression_data(X)


SKORCH_CASES = {
    "classifier_default": ("NeuralNetClassifier", MyModule, {}, _classification),
    "cross_entropy_logits": ("NeuralNetClassifier", Logits,
                             {"criterion": nn.CrossEntropyLoss, "lr": 0.2}, _classification),
    "regressor": ("NeuralNetRegressor", Reg, {"lr": 0.05}, _regression),
    "shuffle": ("NeuralNetClassifier", MyModule, {"iterator_train__shuffle": True}, _classification),
    "no_train_split": ("NeuralNetClassifier", MyModule, {"train_split": None}, _classification),
    "momentum_param_groups": ("NeuralNetClassifier", MyModule, {
        "lr": 0.1, "optimizer__momentum": 0.9, "batch_size": 50,
        "optimizer__param_groups": [("0.*", {"lr": 0.02})]}, _classification),
    "adam": ("NeuralNetClassifier", Logits, {
        "criterion": nn.CrossEntropyLoss, "optimizer": torch.optim.Adam, "lr": 0.01,
        "module__num_units": 12}, _classification),
}


@pytest.mark.parametrize("case", list(SKORCH_CASES))
def test_same_weights_and_history_as_skorch(case, data):
    skorch = pytest.importorskip("skorch")
    cls_name, module, kwargs, make_xy = SKORCH_CASES[case]
    X, y = make_xy(data)
    kwargs = {"max_epochs": 3, "batch_size": 64, "lr": 0.5, "verbose": 0, **kwargs}

    torch.manual_seed(0)
    ours = getattr(__import__("prefect_torch"), cls_name)(module, **kwargs).fit(X, y)
    torch.manual_seed(0)
    theirs = getattr(skorch, cls_name)(module, **kwargs).fit(X, y)

    ours_params = dict(ours.module_.named_parameters())
    theirs_params = dict(theirs.module_.named_parameters())
    assert list(ours_params) == list(theirs_params)
    for name in ours_params:
        assert torch.equal(ours_params[name], theirs_params[name]), name

    assert len(ours.history) == len(theirs.history) == 3
    for row_ours, row_theirs in zip(ours.history, theirs.history):
        assert set(row_ours) == set(row_theirs)
        for key in set(row_ours) - {"dur", "batches"}:
            assert row_ours[key] == row_theirs[key], key
        assert row_ours["batches"] == row_theirs["batches"]
    if kwargs.get("train_split", "default") is None:
        assert "valid_loss" not in ours.history[-1]
    else:
        assert "valid_loss" in ours.history[-1]
    np.testing.assert_array_equal(ours.predict_proba(X), theirs.predict_proba(X))
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


def test_partial_fit_matches_skorch(data):
    skorch = pytest.importorskip("skorch")
    X, y = data
    kwargs = {"max_epochs": 2, "batch_size": 64, "lr": 0.5, "verbose": 0}
    torch.manual_seed(0)
    ours = NeuralNetClassifier(MyModule, **kwargs).fit(X, y)
    ours.partial_fit(X, y, epochs=1)
    torch.manual_seed(0)
    theirs = skorch.NeuralNetClassifier(MyModule, **kwargs).fit(X, y)
    theirs.partial_fit(X, y, epochs=1)
    assert ours.history[:, "epoch"] == theirs.history[:, "epoch"] == [1, 2, 3]
    assert ours.history[:, "train_loss"] == theirs.history[:, "train_loss"]
    for a, b in zip(ours.module_.parameters(), theirs.module_.parameters()):
        assert torch.equal(a, b)


def test_set_params_one_param_group_like_skorch():
    net = make_net(lr=0.5, optimizer__param_groups=[("0.*", {"lr": 0.1})]).initialize()
    optimizer = net.optimizer_
    net.set_params(optimizer__param_groups__0__lr=0.3)
    assert net.optimizer_ is optimizer
    assert [g["lr"] for g in optimizer.param_groups] == [0.3, 0.5]
