"""Callbacks that act on parameters and gradients: ParamMapper, Freezer, Unfreezer, Initializer,
GradientNormClipping, InputShapeSetter."""
from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
from torch import nn

from helpers import fit, make_net
from prefect_torch import NeuralNetClassifier, NeuralNetRegressor
from prefect_torch.callbacks import (
    Callback,
    Freezer,
    GradientNormClipping,
    Initializer,
    InputShapeSetter,
    ParamMapper,
    Unfreezer,
)
from prefect_torch.examples import make_data
from prefect_torch.utils import freeze_parameter, noop, unfreeze_parameter

X, y = make_data(200)


def wide_data(n, width):
    rng = np.random.default_rng(width)
    Xw = rng.standard_normal((n, width)).astype(np.float32)
    return Xw, (Xw.sum(axis=1) > 0).astype(np.int64)


def weights(net):
    return {name: p.detach().clone() for name, p in net.module_.named_parameters()}


# -- Freezer / Unfreezer / Initializer / ParamMapper -----------------------------------------------------
def test_frozen_parameters_keep_their_values_and_the_others_train():
    net = make_net(max_epochs=3, callbacks=[Freezer(["0.*", "4.bias"])]).initialize()
    before = weights(net)
    torch.manual_seed(0)
    net.partial_fit(X, y)
    after = weights(net)
    frozen = {"0.weight", "0.bias", "4.bias"}
    for name in before:
        assert torch.equal(before[name], after[name]) == (name in frozen), name
        assert net.module_.get_parameter(name).requires_grad == (name not in frozen), name


def test_unfreezer_trains_again_from_its_epoch():
    seen = []

    class Grads(Callback):  # which parameters got a gradient, per epoch
        def on_epoch_end(self, net, **kwargs):
            seen.append(net.module_[0].weight.requires_grad)

    net = make_net(max_epochs=4, callbacks=[Freezer("0.weight"), Unfreezer("0.weight", at=3), Grads()])
    net.initialize()
    first = net.module_[0].weight.detach().clone()
    torch.manual_seed(0)
    net.partial_fit(X, y, epochs=2)
    assert torch.equal(net.module_[0].weight, first)  # frozen during epochs 1 and 2
    net.partial_fit(X, y, epochs=1)  # epoch 3: unfrozen at its start
    assert not torch.equal(net.module_[0].weight, first)
    assert seen == [False, False, True]


def test_initializer_sets_values_at_the_first_epoch_only():
    values = []

    class Record(Callback):
        def on_epoch_begin(self, net, **kwargs):
            values.append(net.module_[3].bias.detach().clone())

    net = make_net(lr=0.0, max_epochs=2, callbacks=[
        Initializer("3.bias", functools.partial(nn.init.constant_, val=7.0)),
        Initializer(lambda name: name.endswith("4.weight"), fn=nn.init.zeros_),
        Record(),
    ])
    fit(net, X, y)
    assert torch.equal(values[0], torch.full((10,), 7.0))
    assert torch.equal(net.module_[4].weight, torch.zeros(2, 10))
    assert torch.equal(net.module_[3].bias, torch.full((10,), 7.0))  # lr 0: no change after


def test_param_mapper_at_callable_and_schedule():
    calls = []

    def schedule(net):
        return {1: freeze_parameter, 2: unfreeze_parameter}.get(len(net.history), noop)

    mapper = ParamMapper(["*.bias"], schedule=schedule)
    counting = ParamMapper("0.weight", fn=lambda p: calls.append(p.shape), at=lambda net: len(net.history) % 2 == 0)

    class State(Callback):
        def on_epoch_end(self, net, **kwargs):
            calls.append(net.module_[0].bias.requires_grad)

    fit(make_net(max_epochs=4, callbacks=[mapper, counting, State()]), X, y)
    assert calls == [False, torch.Size([10, 10]), True, True, torch.Size([10, 10]), True]


def test_patterns_match_like_fnmatch_and_order_is_pattern_major():
    order = []
    mapper = ParamMapper(["*.bias", "0.*"], fn=lambda p: order.append(tuple(p.shape)))
    fit(make_net(max_epochs=1, callbacks=[mapper]), X, y)
    # every bias (in module order), then the first layer's weight and bias again
    assert order == [(10,), (10,), (2,), (10, 10), (10,)]


@pytest.mark.parametrize("at", [0, -2])
def test_at_below_one_is_refused_at_initialize(at):
    net = make_net(callbacks=[Freezer("*", at=at)])
    with pytest.raises(ValueError, match=r"at=%d\): epochs are numbered from 1" % at):
        net.initialize()


def test_bad_pattern_is_named():
    with pytest.raises(TypeError, match="the pattern 3"):
        make_net(callbacks=[Freezer(["0.*", 3])]).initialize()


def test_param_mappers_clone_and_keep_their_arguments():
    from sklearn.base import clone

    net = make_net(callbacks=[Freezer("0.*"), Unfreezer("0.*", at=3)])
    net.initialize()
    cloned = clone(net)
    assert [(cb.patterns, cb.fn, cb.at) for cb in cloned.callbacks] == [
        ("0.*", freeze_parameter, 1), ("0.*", unfreeze_parameter, 3)]


def test_freezing_the_criterions_parameters():
    class Weighted(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, y_pred, y_true):
            return self.scale * nn.functional.nll_loss(torch.log(y_pred + 1e-7), y_true)

    net = make_net(criterion=Weighted, callbacks=[Freezer("scale")])
    fit(net, X, y)
    assert net.criterion_.scale.item() == 1.0 and not net.criterion_.scale.requires_grad


# -- GradientNormClipping -----------------------------------------------------------------------
class GradNorms(Callback):
    """The total gradient norm each step sees, after the callbacks before it."""

    def initialize(self):
        self.norms_ = []
        return self

    def on_grad_computed(self, net, named_parameters, **kwargs):
        grads = [p.grad for _, p in named_parameters if p.grad is not None]
        self.norms_.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())


@pytest.mark.parametrize("norm_type", [2, "inf"])
def test_gradient_norms_are_clipped(norm_type):
    before, after = GradNorms(), GradNorms()
    clip = GradientNormClipping(gradient_clip_value=0.05, gradient_clip_norm_type=norm_type)
    # named, so that they run in this order
    fit(make_net(lr=1.0, callbacks=[("before", before), ("clip", clip), ("after", after)]), X, y)
    assert len(before.norms_) == len(after.norms_) > 0
    assert max(before.norms_) > 0.05
    for raw, clipped in zip(before.norms_, after.norms_):
        if norm_type == 2:
            assert clipped == pytest.approx(min(raw, 0.05), rel=1e-4)
        else:
            assert clipped <= raw + 1e-9


def test_clipping_to_zero_leaves_the_weights_unchanged():
    net = make_net(train_split=None, callbacks=[GradientNormClipping(0)]).initialize()
    before = weights(net)
    net.partial_fit(X, y)
    assert all(torch.equal(before[k], v) for k, v in weights(net).items())


def test_clipping_value_none_changes_nothing():
    plain = fit(make_net(), X, y)
    unclipped = fit(make_net(callbacks=[GradientNormClipping()]), X, y)
    assert all(torch.equal(a, b) for a, b in zip(plain.module_.parameters(), unclipped.module_.parameters()))


# -- InputShapeSetter ----------------------------------------------------------------------------------
class Linear(nn.Module):
    def __init__(self, input_dim=3, other_dim=1):
        super().__init__()
        self.layer = nn.Linear(input_dim, 2)

    def forward(self, X):
        return torch.softmax(self.layer(X), dim=-1)


@pytest.mark.parametrize("width", [2, 10, 17])
def test_input_shape_is_set_from_the_data(width):
    Xw, yw = wide_data(100, width)
    net = NeuralNetClassifier(Linear, max_epochs=1, verbose=0, callbacks=[InputShapeSetter()])
    net.fit(Xw, yw)
    assert net.module_.layer.in_features == width
    assert net.get_params()["module__input_dim"] == width
    assert net.predict(Xw).shape == (100,)


def test_module_and_optimizer_rebuilt_only_when_the_width_changes():
    built = []

    class Counting(NeuralNetClassifier):
        def initialize_module(self, *args, **kwargs):
            built.append(self.get_params().get("module__input_dim"))
            return super().initialize_module(*args, **kwargs)

    net = Counting(Linear, max_epochs=1, verbose=0, callbacks=[InputShapeSetter()])
    net.fit(*wide_data(50, 6))
    assert built == [None, 6]
    optimizer = net.optimizer_
    net.partial_fit(*wide_data(50, 6))
    assert built == [None, 6] and net.optimizer_ is optimizer
    assert {id(p) for g in net.optimizer_.param_groups for p in g["params"]} == {
        id(p) for p in net.module_.parameters()}
    net.fit(*wide_data(50, 4))  # initialize (width 6), then the new width
    assert built == [None, 6, 6, 4]


def test_input_dim_fn_and_param_name():
    calls = []

    def width(X):
        calls.append(1)
        return X["a"].shape[1] + 1

    class Dict(nn.Module):
        def __init__(self, other_dim=1):
            super().__init__()
            self.layer = nn.Linear(other_dim, 2)

        def forward(self, a, b):
            return torch.softmax(self.layer(torch.cat([a, b], dim=1)), dim=-1)

    Xd = {"a": X[:, :4], "b": X[:, :1]}
    net = NeuralNetClassifier(Dict, max_epochs=1, verbose=0,
                              callbacks=[InputShapeSetter(param_name="other_dim", input_dim_fn=width)])
    net.fit(Xd, y)
    assert net.module_.layer.in_features == 5 and calls == [1]


def test_one_dimensional_input_is_refused_with_the_way_out():
    net = NeuralNetRegressor(Linear, max_epochs=1, verbose=0, callbacks=[InputShapeSetter()])
    with pytest.raises(ValueError, match=r"shape \(10,\).*input_dim_fn"):
        net.fit(np.zeros(10, dtype=np.float32), np.zeros((10, 1), dtype=np.float32))


def test_callbacks_survive_pickling_and_deepcopy():
    import pickle

    net = fit(make_net(callbacks=[Freezer("0.*"), GradientNormClipping(1.0), InputShapeSetter(
        param_name="n_features")]), X, y)
    for other in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert torch.equal(other.module_[0].weight, net.module_[0].weight)
        other.partial_fit(X, y)
