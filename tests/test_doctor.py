"""helper.SkorchDoctor: the records equal what hooks of our own see; hooks leave with the fit."""
import sys

import numpy as np
import pytest
import torch
from torch import nn

from prefect_torch import NeuralNetClassifier
from prefect_torch.data import ValidSplit
from prefect_torch.exceptions import NotInitializedError
from prefect_torch.helper import SkorchDoctor

LR = 0.1


def make_net(module=None, **kwargs):
    module = module or nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2), nn.Softmax(dim=-1))
    params = dict(max_epochs=2, batch_size=4, lr=LR, train_split=None, verbose=0)
    return NeuralNetClassifier(module, **{**params, **kwargs})


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 5)).astype("float32"), np.arange(8) % 2


@pytest.fixture
def spied(data):
    """A doctor fitted on a net that carries hooks of our own: what they saw, and the doctor."""
    net = make_net().initialize()
    start = {k: p.detach().clone() for k, p in net.module_.named_parameters()}
    seen = {"acts": [], "grads": []}
    for name, layer in net.module_.named_children():
        layer.register_forward_hook(lambda m, a, out, name=name: seen["acts"].append((name, out.detach().clone())))
    for name, p in net.module_.named_parameters():
        p.register_hook(lambda g, name=name: seen["grads"].append((name, g.detach().clone())))
    doctor = SkorchDoctor(net).fit(*data)
    return doctor, seen, start


def test_records_equal_what_hooks_see(spied):
    doctor, seen, start = spied
    steps = 2 * 2  # 2 epochs of 2 batches
    acts = doctor.activation_recs_["module"]
    grads = doctor.gradient_recs_["module"]
    assert len(acts) == len(grads) == len(doctor.param_update_recs_["module"]) == steps
    assert doctor.activation_recs_["criterion"] == []  # NLLLoss has no layers
    assert len(seen["acts"]) == 4 * steps
    for step in range(steps):
        for name, value in seen["acts"][4 * step: 4 * step + 4]:
            np.testing.assert_array_equal(acts[step][name], value.numpy())
        for name, value in seen["grads"][4 * step: 4 * step + 4]:
            np.testing.assert_array_equal(grads[step][name], value.numpy())


def test_param_updates_are_relative_sgd_steps(spied):
    doctor, _, start = spied
    params = {k: v.clone() for k, v in start.items()}
    for grads, updates in zip(doctor.gradient_recs_["module"], doctor.param_update_recs_["module"]):
        assert set(updates) == set(params)
        for key, before in params.items():
            after = before - LR * torch.as_tensor(grads[key])
            expected = (after - before).norm() / max(before.norm(), after.norm())
            assert updates[key] == pytest.approx(expected.item(), rel=1e-4)
            params[key] = after
    for key, param in doctor.net.module_.named_parameters():
        torch.testing.assert_close(param.detach(), params[key])


def test_names(spied):
    doctor, _, _ = spied
    assert doctor.module_names_ == ["module", "criterion"]
    assert doctor.get_layer_names() == {"module": ["0", "1", "2", "3"], "criterion": []}
    assert doctor.get_param_names() == {
        "module": ["0.weight", "0.bias", "2.weight", "2.bias"], "criterion": []}


def test_validation_batches_are_not_recorded(data):
    X, y = np.concatenate([data[0]] * 3), np.concatenate([data[1]] * 3)  # 24 rows: 19 + 5 held out
    doctor = SkorchDoctor(make_net(train_split=ValidSplit(5, stratified=False), batch_size=10)).fit(X, y)
    sizes = [len(rec["0"]) for rec in doctor.activation_recs_["module"]]
    assert sizes == [10, 9, 10, 9]  # 2 epochs x 2 training batches; no batch of 5 held-out rows
    assert "valid_loss" in doctor.net.history[-1]


def test_hooks_and_callback_removed_after_fit(data):
    net = make_net().initialize()
    callbacks = [(name, cb) for name, cb in net.callbacks_]
    doctor = SkorchDoctor(net).fit(*data)
    assert [(n, id(cb)) for n, cb in net.callbacks_] == [(n, id(cb)) for n, cb in callbacks]
    for layer in net.module_.modules():
        assert not layer._forward_hooks
    for param in net.module_.parameters():
        assert not param._backward_hooks
    before = len(doctor.activation_recs_["module"])
    net.partial_fit(*data)
    assert len(doctor.activation_recs_["module"]) == before


def test_tuple_and_dict_outputs_get_indexed_names(data):
    class Split(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 2)

        def forward(self, X):
            out = self.lin(X)
            return out, {"p": out.softmax(-1)}

    class Top(nn.Module):
        def __init__(self):
            super().__init__()
            self.split = Split()

        def forward(self, X):
            _, d = self.split(X)
            return d["p"]

    doctor = SkorchDoctor(make_net(module=Top, max_epochs=1)).fit(*data)
    names = doctor.get_layer_names()["module"]
    assert names == ["split.lin", "split[0]", 'split[1]["p"]']
    rec = doctor.activation_recs_["module"][0]
    np.testing.assert_allclose(rec['split[1]["p"]'], torch.as_tensor(rec["split[0]"]).softmax(-1).numpy(),
                               rtol=1e-6)


def test_match_fn_filters_and_refuses_everything_filtered(data):
    doctor = SkorchDoctor(make_net(), match_fn=lambda name: name.startswith("2")).fit(*data)
    assert doctor.get_layer_names()["module"] == ["2"]
    assert doctor.get_param_names()["module"] == ["2.weight", "2.bias"]
    assert all(set(rec) == {"2.weight", "2.bias"} for rec in doctor.param_update_recs_["module"])
    with pytest.raises(ValueError, match="check the match_fn"):
        SkorchDoctor(make_net(), match_fn=lambda name: False).fit(*data)


def test_delegates_predictions(spied, data):
    doctor, _, _ = spied
    X, y = data
    np.testing.assert_array_equal(doctor.predict_proba(X), doctor.net.predict_proba(X))
    np.testing.assert_array_equal(doctor.predict(X), doctor.net.predict(X))
    assert doctor.score(X, y) == doctor.net.score(X, y)


# -- plots ----------------------------------------------------------------------------------------
@pytest.fixture
def plt():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("agg")
    import matplotlib.pyplot as plt
    yield plt
    plt.close("all")


def test_plot_loss_draws_the_history(plt, spied):
    doctor, _, _ = spied
    ax = doctor.plot_loss()
    (line,) = ax.get_lines()  # no validation split: the training loss only
    np.testing.assert_allclose(line.get_ydata(), doctor.net.history[:, "train_loss"])


def test_histogram_plots_one_axis_per_part_with_a_label_per_layer(plt, spied):
    doctor, _, _ = spied
    axes = doctor.plot_activations(step=1)
    assert axes.shape == (1, 1)
    assert axes[0, 0].get_legend_handles_labels()[1] == ["0", "1", "2", "3"]
    axes = doctor.plot_gradients(match_fn=lambda name: "weight" in name)
    assert axes[0, 0].get_legend_handles_labels()[1] == ["0.weight", "2.weight"]
    with pytest.raises(ValueError, match="get_layer_names"):
        doctor.plot_activations(match_fn=lambda name: False)


def test_param_update_plot_draws_log10_of_the_records(plt, spied):
    doctor, _, _ = spied
    axes = doctor.plot_param_updates()
    lines = {line.get_label(): line for line in axes[0, 0].get_lines()}
    recs = doctor.param_update_recs_["module"]
    np.testing.assert_allclose(lines["2.bias"].get_ydata(), np.log10([r["2.bias"] for r in recs]))


def test_over_time_plots_one_curve_per_step(plt, spied):
    doctor, _, _ = spied
    _, ax = plt.subplots()
    assert doctor.plot_activations_over_time("0", ax=ax) is ax
    assert len(ax.get_lines()) == 4
    ax = doctor.plot_gradient_over_time("2.weight", interpolate=True)
    assert len(ax.get_lines()) == 4
    with pytest.raises(ValueError, match="No parameter named 'nope'"):
        doctor.plot_gradient_over_time("nope")
    (line,) = doctor.plot_param_update_over_time("0.weight").get_lines()
    np.testing.assert_allclose(
        line.get_ydata(), np.log10([r["0.weight"] for r in doctor.param_update_recs_["module"]]))
    with pytest.raises(ValueError, match="No parameter named 'nope'"):
        doctor.plot_param_update_over_time("nope")


def test_plots_need_a_fit_and_name_the_install(monkeypatch, data):
    with pytest.raises(NotInitializedError, match="fit"):
        SkorchDoctor(make_net()).plot_loss()
    doctor = SkorchDoctor(make_net(max_epochs=1)).fit(*data)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(ImportError, match=r"prefect-torch\[plot\]"):
        doctor.plot_activations()
