"""scikit-learn compatibility: clone, pickle, Pipeline, GridSearchCV (across processes),
cross_val_score, check_is_fitted, estimator types."""
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import (
    GridSearchCV,
    ParameterGrid,
    StratifiedKFold,
    cross_val_score,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from torch import nn

from prefect_torch import (
    NeuralNet,
    NeuralNetClassifier,
    NeuralNetRegressor,
    NotInitializedError,
)
from prefect_torch.examples import MyModule  # importable in joblib's worker processes


def make_net(**kwargs):
    kwargs.setdefault("lr", 0.5)
    kwargs.setdefault("max_epochs", 2)
    kwargs.setdefault("batch_size", 64)
    kwargs.setdefault("verbose", 0)
    return NeuralNetClassifier(MyModule, **kwargs)


def fit(net, X, y, seed=0):
    torch.manual_seed(seed)
    return net.fit(X, y)


def same_weights(a, b):
    sa, sb = a.module_.state_dict(), b.module_.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


FITTED_ATTRS = ("module_", "criterion_", "optimizer_", "callbacks_", "history_", "initialized_",
                "classes_inferred_")


# -- clone ----------------------------------------------------------------------------------------
def test_clone_keeps_params_and_drops_fitted_state(data):
    X, y = data
    net = fit(make_net(module__num_units=7, lr=0.3, optimizer__momentum=0.9, max_epochs=2,
                       callbacks__print_log__keys_ignored=["dur"]), X, y)
    copy = clone(net)
    assert type(copy) is NeuralNetClassifier
    for attr in FITTED_ATTRS:
        assert not hasattr(copy, attr), attr
    params, copied = net.get_params(deep=False), copy.get_params(deep=False)
    assert set(params) == set(copied)
    assert copied["module__num_units"] == 7
    assert copied["optimizer__momentum"] == 0.9
    assert copied["callbacks__print_log__keys_ignored"] == ["dur"]
    assert (copied["lr"], copied["max_epochs"], copied["batch_size"]) == (0.3, 2, 64)
    assert copied["module"] is MyModule
    assert repr(copied["train_split"]) == repr(params["train_split"])
    # the clone trains exactly like the original
    fit(copy, X, y)
    assert copy.module_[0].out_features == 7
    assert same_weights(copy, net)
    assert copy.history[:, "train_loss"] == net.history[:, "train_loss"]


def test_clone_of_regressor_and_neuralnet():
    reg = NeuralNetRegressor(nn.Linear, module__in_features=3, module__out_features=1, lr=0.2)
    copy = clone(reg)
    assert type(copy) is NeuralNetRegressor and copy.criterion is nn.MSELoss
    assert copy.get_params_for("module") == {"in_features": 3, "out_features": 1}
    base = NeuralNet(nn.Linear, criterion=nn.L1Loss, module__in_features=3, module__out_features=1)
    assert clone(base).criterion is nn.L1Loss


def test_get_params_set_params_round_trip():
    net = make_net(module__num_units=7, optimizer__momentum=0.9)
    other = make_net().set_params(**net.get_params(deep=False))
    assert other.get_params_for("module") == {"num_units": 7}
    assert other.initialize().optimizer_.param_groups[0]["momentum"] == 0.9


# -- pickle ---------------------------------------------------------------------------------------
def test_pickle_round_trip_of_a_fitted_net(data):
    X, y = data
    net = fit(make_net(optimizer__momentum=0.9), X, y)
    loaded = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
    np.testing.assert_array_equal(loaded.classes_, net.classes_)
    assert loaded.history == net.history
    assert same_weights(loaded, net)
    # the optimizer state (momentum buffers) survives: both continue identically
    torch.manual_seed(1)
    net.partial_fit(X, y, epochs=1)
    torch.manual_seed(1)
    loaded.partial_fit(X, y, epochs=1)
    assert same_weights(loaded, net)
    assert loaded.history[:, "train_loss"] == net.history[:, "train_loss"]


def test_pickle_of_an_unfitted_net():
    net = make_net(module__num_units=4)
    loaded = pickle.loads(pickle.dumps(net))
    assert not hasattr(loaded, "module_")
    assert loaded.get_params_for("module") == {"num_units": 4}


# -- Pipeline -------------------------------------------------------------------------------------
def test_pipeline_with_scaler(data):
    X, y = data
    pipe = Pipeline([("scale", StandardScaler()), ("net", make_net(max_epochs=3))])
    torch.manual_seed(0)
    assert pipe.fit(X, y) is pipe
    Xs = pipe.named_steps["scale"].transform(X)
    assert Xs.dtype == np.float32
    pred = pipe.predict(X)
    assert pred.shape == (200,)
    np.testing.assert_array_equal(pred, pipe.named_steps["net"].predict(Xs))
    np.testing.assert_array_equal(pipe.predict_proba(X), pipe.named_steps["net"].predict_proba(Xs))
    assert pipe.score(X, y) == pipe.named_steps["net"].score(Xs, y)
    # the net inside the pipeline trained on the scaled data, as a net alone on Xs would
    alone = fit(make_net(max_epochs=3), Xs, y)
    assert same_weights(alone, pipe.named_steps["net"])


def test_pipeline_set_params_reaches_the_net():
    pipe = Pipeline([("scale", StandardScaler()), ("net", make_net())])
    pipe.set_params(net__module__num_units=6, net__lr=0.05)
    net = pipe.named_steps["net"].initialize()
    assert net.module_[0].out_features == 6
    assert net.optimizer_.param_groups[0]["lr"] == 0.05
    assert pipe.get_params()["net__module__num_units"] == 6


# -- model selection ------------------------------------------------------------------------------
def test_grid_search_in_two_worker_processes(data):
    X, y = data
    grid = {"lr": [0.05, 0.5], "module__num_units": [5, 10]}
    net = make_net(max_epochs=2)
    search = GridSearchCV(net, grid, cv=2, n_jobs=2, scoring="accuracy", refit=True, error_score="raise")
    search.fit(X, y)
    assert search.best_params_ in list(ParameterGrid(grid))
    assert len(search.cv_results_["params"]) == 4
    scores = search.cv_results_["mean_test_score"]
    assert np.all((scores >= 0) & (scores <= 1))
    best = search.best_estimator_
    assert best.module_[0].out_features == search.best_params_["module__num_units"]
    assert best.optimizer_.param_groups[0]["lr"] == search.best_params_["lr"]
    assert len(best.history) == 2
    np.testing.assert_array_equal(search.predict(X), best.predict(X))
    assert not hasattr(net, "module_")  # the search fits clones


def test_cross_val_score_matches_a_manual_loop(data):
    X, y = data
    net = make_net(max_epochs=2)
    torch.manual_seed(0)
    scores = cross_val_score(net, X, y, cv=2)
    assert scores.shape == (2,)
    torch.manual_seed(0)
    expected = []
    for train, test in StratifiedKFold(2).split(X, y):
        fold_net = clone(net).fit(X[train], y[train])
        expected.append(fold_net.score(X[test], y[test]))
    np.testing.assert_array_equal(scores, expected)
    assert not hasattr(net, "module_")


def test_cross_val_score_regressor_is_r2(data):
    X, _ = data
    y = (X[:, :1] - X[:, 1:2]).astype(np.float32)
    net = NeuralNetRegressor(nn.Linear, module__in_features=10, module__out_features=1, lr=0.1,
                             max_epochs=3, verbose=0)
    scores = cross_val_score(net, X, y, cv=2)
    assert scores.shape == (2,) and np.all(np.isfinite(scores)) and np.all(scores <= 1)


# -- fitted checks and estimator types ------------------------------------------------------------
def test_check_is_fitted(data):
    X, y = data
    net = make_net()
    with pytest.raises(NotFittedError):
        check_is_fitted(net)
    with pytest.raises(NotInitializedError):
        net.check_is_fitted()
    net.initialize()
    check_is_fitted(net)
    net.check_is_fitted()
    fitted = fit(make_net(max_epochs=1), X, y)
    check_is_fitted(fitted)
    with pytest.raises(NotFittedError):
        check_is_fitted(clone(fitted))


def test_estimator_types():
    assert is_classifier(make_net())
    assert not is_regressor(make_net())
    reg = NeuralNetRegressor(nn.Linear, module__in_features=2, module__out_features=1)
    assert is_regressor(reg) and not is_classifier(reg)
    base = NeuralNet(nn.Linear, criterion=nn.MSELoss)
    assert not is_classifier(base) and not is_regressor(base)
