"""skorch's extension points: more routed parts (prefixes_), extra optimizers, trimming, simulate."""
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from helpers import fit, make_net
from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import LRScheduler


class TwoOptimizerNet(NeuralNetClassifier):
    """A net with a second optimizer for the last layer, configured as ``head_optimizer__*``."""

    prefixes_ = NeuralNetClassifier.prefixes_ + ["head_optimizer"]

    def __init__(self, *args, head_optimizer=torch.optim.SGD, **kwargs):
        super().__init__(*args, **kwargs)
        self.head_optimizer = head_optimizer

    def initialize_optimizer(self, reason=None):
        body = [(n, p) for n, p in self.module_.named_parameters() if not n.startswith("4.")]
        head = [(n, p) for n, p in self.module_.named_parameters() if n.startswith("4.")]
        args, kwargs = self.get_params_for_optimizer("optimizer", body)
        self.optimizer_ = self.optimizer(*args, **kwargs)
        args, kwargs = self.get_params_for_optimizer("head_optimizer", head)
        self.head_optimizer_ = self.head_optimizer(*args, **kwargs)
        return self


def test_subclass_routes_its_own_prefix_to_a_second_optimizer():
    net = TwoOptimizerNet(nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                                        nn.Linear(8, 2), nn.Softmax(dim=-1)),
                          lr=0.1, head_optimizer__lr=0.5, head_optimizer__momentum=0.9).initialize()
    assert net.get_params()["head_optimizer__momentum"] == 0.9
    assert [g["lr"] for g in net.optimizer_.param_groups] == [0.1]
    assert net.head_optimizer_.param_groups[0]["lr"] == 0.5
    assert net.head_optimizer_.param_groups[0]["momentum"] == 0.9
    head_params = {id(p) for p in net.module_[4].parameters()}
    assert {id(p) for p in net.head_optimizer_.param_groups[0]["params"]} == head_params
    assert not head_params & {id(p) for p in net.optimizer_.param_groups[0]["params"]}
    typo = NeuralNetClassifier(nn.Linear(10, 2), head_optimizr__lr=1)  # checked when initialized
    with pytest.raises(ValueError, match="head_optimizr__lr.*did you mean"):
        typo.initialize()


def test_param_groups_by_glob_pattern():
    net = make_net(optimizer__param_groups=[("0.*", {"lr": 0.05})], lr=0.2).initialize()
    args, kwargs = net.get_params_for_optimizer("optimizer", net.module_.named_parameters())
    groups = args[0]
    assert [g.get("lr") for g in groups] == [0.05, None] and kwargs["lr"] == 0.2
    first_layer = {id(p) for p in net.module_[0].parameters()}
    assert {id(p) for p in groups[0]["params"]} == first_layer
    assert len(groups[1]["params"]) == 4  # the two other Linear layers' weights and biases


def test_trim_for_prediction_keeps_predictions_and_refuses_training(data):
    X, y = data
    net = fit(make_net(max_epochs=2), X, y)
    proba = net.predict_proba(X)
    size = len(pickle.dumps(net))
    net.trim_for_prediction()
    assert net.optimizer_ is None and net.criterion_ is None and net.callbacks_ == []
    np.testing.assert_array_equal(net.predict_proba(X), proba)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(net)).predict(X), proba.argmax(1))
    assert len(pickle.dumps(net)) < size
    with pytest.raises(RuntimeError, match="trimmed for prediction"):
        net.fit(X, y)
    with pytest.raises(RuntimeError, match="trimmed for prediction"):
        net.partial_fit(X, y)


def test_trim_keeps_the_softmax_of_a_cross_entropy_classifier(data):
    X, y = data
    logits = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 2))
    net = fit(make_net(module=logits, criterion=nn.CrossEntropyLoss), X, y)
    proba = net.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-6)
    np.testing.assert_array_equal(net.trim_for_prediction().predict_proba(X), proba)


@pytest.mark.parametrize("policy, kwargs, step_args", [
    ("StepLR", {"step_size": 2, "gamma": 0.5}, None),
    ("CosineAnnealingLR", {"T_max": 5}, None),
    ("ReduceLROnPlateau", {"patience": 1}, [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]),
])
def test_lr_scheduler_simulate_matches_skorch(policy, kwargs, step_args):
    skorch_callbacks = pytest.importorskip("skorch.callbacks")
    ours = LRScheduler(policy, **kwargs).simulate(6, 0.1, step_args)
    args = None if step_args is None else np.asarray(step_args)
    theirs = skorch_callbacks.LRScheduler(policy, **kwargs).simulate(6, 0.1, args)
    np.testing.assert_allclose(ours, theirs)
    assert ours[0] == 0.1 and len(ours) == 6


def test_compile_arguments_are_routed_and_unused_without_compile():
    net = make_net(compile__mode="reduce-overhead").initialize()
    assert net.get_params_for("compile") == {"mode": "reduce-overhead"}
    assert net.torch_compile(net.module_) is net.module_


def test_repr_shows_state_and_only_the_changed_parameters():
    from prefect_torch import NeuralNetClassifier, ValidSplit
    from prefect_torch.examples import MyModule

    net = NeuralNetClassifier(MyModule, lr=0.5, module__num_units=5,
                              train_split=ValidSplit(5, stratified=True))
    assert repr(net) == "NeuralNetClassifier[uninitialized](module=MyModule, lr=0.5, module__num_units=5)"
    changed = NeuralNetClassifier(MyModule, train_split=ValidSplit(3))
    assert "train_split=ValidSplit(cv=3, stratified=False, random_state=None)" in repr(changed)
    assert repr(net.initialize()).splitlines()[1] == "  module_=MyModule("
