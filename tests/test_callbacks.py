"""Callbacks: hook order and arguments, naming and parameters, scoring, early stopping, LR schedules."""
import copy
import functools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    make_scorer,
)
from sklearn.model_selection import StratifiedKFold
from torch.optim.lr_scheduler import OneCycleLR, ReduceLROnPlateau, StepLR

from prefect_torch import History, NeuralNetClassifier, ValidSplit
from prefect_torch.callbacks import (
    BatchScoring,
    Callback,
    EarlyStopping,
    EpochScoring,
    EpochTimer,
    LRScheduler,
    PassthroughScoring,
    PrintLog,
    WarmRestartLR,
)
from prefect_torch.examples import MyModule, make_data
from prefect_torch.exceptions import StopTraining

N = 200  # 160 training and 40 validation samples with the default 5-fold split


def make_net(cls=NeuralNetClassifier, **kwargs):
    kwargs.setdefault("lr", 0.5)
    kwargs.setdefault("max_epochs", 3)
    kwargs.setdefault("verbose", 0)
    return cls(MyModule, **kwargs)


def fit(net, data, seed=0, **fit_params):
    torch.manual_seed(seed)
    return net.fit(*data, **fit_params)


def valid_fold(X, y):
    """The classifier's validation fold: the first fold of an unshuffled StratifiedKFold(5)."""
    train_idx, valid_idx = next(StratifiedKFold(5).split(X, y))
    return train_idx, valid_idx


def names_of(net):
    return [name for name, _ in net.callbacks_]


# -- hooks ------------------------------------------------------------------------------------
class Recorder(Callback):
    """Records every hook call with its keyword arguments (and a snapshot of what it can see)."""

    def initialize(self):
        self.calls = []
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.calls.append(("on_train_begin", dict(net=net, X=X, y=y, **kwargs)))

    def on_train_end(self, net, X=None, y=None, **kwargs):
        self.calls.append(("on_train_end", dict(net=net, X=X, y=y, **kwargs)))

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        self.calls.append(("on_epoch_begin", dict(
            net=net, dataset_train=dataset_train, dataset_valid=dataset_valid,
            history_len=len(net.history), epoch=net.history[-1, "epoch"], **kwargs)))

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        self.calls.append(("on_epoch_end", dict(
            net=net, dataset_train=dataset_train, dataset_valid=dataset_valid,
            keys=set(net.history[-1]), **kwargs)))

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        self.calls.append(("on_batch_begin", dict(
            net=net, batch=batch, training=training,
            n_batches=len(net.history[-1]["batches"]), **kwargs)))

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        self.calls.append(("on_batch_end", dict(
            net=net, batch=batch, training=training,
            batch_row=dict(net.history[-1]["batches"][-1]), **kwargs)))

    def on_grad_computed(self, net, named_parameters, X=None, y=None, training=None, **kwargs):
        first = list(named_parameters)
        second = list(named_parameters)  # must be re-iterable
        self.calls.append(("on_grad_computed", dict(
            net=net, first=first, second=second, training=training,
            grads=[(n, None if p.grad is None else p.grad.clone()) for n, p in first], **kwargs)))


def test_hooks_called_in_order_with_kwargs(data):
    X, y = data
    recorder = Recorder()
    # 160 training samples in batches of 100 -> 2 train batches; 40 validation -> 1 batch
    net = fit(make_net(max_epochs=2, batch_size=100, callbacks=[recorder]), data)
    names = [name for name, _ in recorder.calls]

    per_epoch = (["on_epoch_begin"]
                 + ["on_batch_begin", "on_grad_computed", "on_batch_end"] * 2
                 + ["on_batch_begin", "on_batch_end"]
                 + ["on_epoch_end"])
    assert names == ["on_train_begin"] + per_epoch * 2 + ["on_train_end"]

    for _, kwargs in recorder.calls:
        assert kwargs["net"] is net

    begin, end = recorder.calls[0][1], recorder.calls[-1][1]
    assert begin["X"] is X and begin["y"] is y
    assert end["X"] is X and end["y"] is y

    epoch_begins = [kw for name, kw in recorder.calls if name == "on_epoch_begin"]
    # the net's own hook ran first: the history already has this epoch's row
    assert [kw["epoch"] for kw in epoch_begins] == [1, 2]
    assert [kw["history_len"] for kw in epoch_begins] == [1, 2]
    for name, kw in recorder.calls:
        if name in ("on_epoch_begin", "on_epoch_end"):
            assert len(kw["dataset_train"]) == 160
            assert len(kw["dataset_valid"]) == 40

    # default callbacks run before user callbacks: the epoch's scores are there at on_epoch_end
    epoch_end = [kw for name, kw in recorder.calls if name == "on_epoch_end"][0]
    assert {"train_loss", "valid_loss", "valid_acc", "dur"} <= epoch_end["keys"]

    batch_begins = [kw for name, kw in recorder.calls if name == "on_batch_begin"]
    batch_ends = [kw for name, kw in recorder.calls if name == "on_batch_end"]
    assert [kw["training"] for kw in batch_begins] == [True, True, False] * 2
    assert [kw["training"] for kw in batch_ends] == [True, True, False] * 2
    # the net's on_batch_begin added the batch row before the callbacks saw it
    assert [kw["n_batches"] for kw in batch_begins] == [1, 2, 3] * 2
    sizes = [100, 60, 40] * 2
    for kw, size in zip(batch_ends, sizes):
        Xb, yb = kw["batch"]
        assert len(Xb) == len(yb) == size
        assert kw["y_pred"].shape == (size, 2)
        assert isinstance(kw["loss"], torch.Tensor) and kw["loss"].ndim == 0
        prefix = "train" if kw["training"] else "valid"
        assert kw["batch_row"][f"{prefix}_loss"] == kw["loss"].item()
        assert kw["batch_row"][f"{prefix}_batch_size"] == size
    for begin, end in zip(batch_begins, batch_ends):
        assert begin["batch"] is end["batch"]


def test_on_grad_computed_gets_parameters_with_gradients(data):
    recorder = Recorder()
    net = fit(make_net(max_epochs=1, batch_size=100, callbacks=[recorder]), data)
    grads = [kw for name, kw in recorder.calls if name == "on_grad_computed"]
    assert len(grads) == 2  # one per training batch
    expected_names = [name for name, _ in net.module_.named_parameters()]
    for kw in grads:
        assert kw["training"] is True
        assert [n for n, _ in kw["first"]] == expected_names
        assert [n for n, _ in kw["second"]] == expected_names
        for (_, p1), (_, p2) in zip(kw["first"], kw["second"]):
            assert p1 is p2
            assert isinstance(p1, torch.nn.Parameter)
        for name, grad in kw["grads"]:
            assert grad is not None, name
        assert any(grad.abs().sum() > 0 for _, grad in kw["grads"])
        Xb, yb = kw["batch"]
        assert len(Xb) in (100, 60)
    # gradients differ between the two batches
    assert not torch.equal(grads[0]["grads"][0][1], grads[1]["grads"][0][1])


def test_on_grad_computed_can_clip_gradients(data):
    class ClipToZero(Callback):
        def on_grad_computed(self, net, named_parameters, **kwargs):
            for _, p in named_parameters:
                p.grad.zero_()

    net = make_net(max_epochs=2, callbacks=[ClipToZero()])
    torch.manual_seed(0)
    net.initialize()
    before = copy.deepcopy(net.module_.state_dict())
    net.warm_start = True
    torch.manual_seed(0)
    net.fit(*data)
    after = net.module_.state_dict()
    for key in before:
        assert torch.equal(before[key], after[key]), key


def test_on_train_end_runs_after_early_stopping(data):
    recorder = Recorder()
    net = fit(make_net(max_epochs=10, callbacks=[
        recorder, EarlyStopping(patience=1, threshold=0.9, sink=lambda *a: None)]), data)
    names = [name for name, _ in recorder.calls]
    assert names[-1] == "on_train_end"
    assert names.count("on_epoch_end") == len(net.history) == 2


# -- parameters and naming --------------------------------------------------------------------
def test_callback_get_params_set_params():
    es = EarlyStopping(patience=3, monitor="valid_acc")
    params = es.get_params()
    assert params["patience"] == 3
    assert params["monitor"] == "valid_acc"
    assert set(params) == {"monitor", "patience", "threshold", "threshold_mode",
                           "lower_is_better", "sink", "load_best"}
    assert es.set_params(patience=7, threshold=0.5) is es
    assert es.patience == 7 and es.threshold == 0.5
    with pytest.raises(ValueError, match="patience"):
        es.set_params(patiense=1)  # the hint names the close match

    scoring = EpochScoring("f1", lower_is_better=False)
    assert scoring.get_params()["scoring"] == "f1"
    assert scoring.get_params()["lower_is_better"] is False
    log = PrintLog(keys_ignored="dur")
    assert log.get_params()["keys_ignored"] == "dur"


def test_lr_scheduler_params_include_scheduler_kwargs():
    sched = LRScheduler(StepLR, step_size=2, gamma=0.5)
    params = sched.get_params()
    assert params["policy"] is StepLR
    assert params["step_size"] == 2 and params["gamma"] == 0.5
    sched.set_params(gamma=0.1, step_every="batch")
    assert sched.get_params()["gamma"] == 0.1
    assert sched.step_every == "batch"


def test_callbacks_params_routed_by_net(data):
    net = make_net(
        callbacks=[("es", EarlyStopping(threshold=0.9, sink=lambda *a: None))],
        callbacks__es__patience=1,
        callbacks__print_log__keys_ignored=["dur"],
        callbacks__valid_acc__name="my_acc",
        max_epochs=8,
    )
    fit(net, data)
    callbacks = dict(net.callbacks_)
    assert callbacks["es"].patience == 1
    assert callbacks["print_log"].keys_ignored == ["dur"]
    # the routed parameters act: patience 1 stops after 2 epochs, the score has the new name
    assert len(net.history) == 2
    assert "my_acc" in net.history[-1] and "valid_acc" not in net.history[-1]
    params = net.get_params()
    assert params["callbacks__es__patience"] == 1
    assert params["callbacks__es__threshold"] == 0.9

    net.set_params(callbacks__es__patience=3)
    assert dict(net.callbacks_)["es"].patience == 3
    fit(net, data)
    assert len(net.history) == 4


def test_routed_params_for_uninitialized_callback_class(data):
    net = make_net(callbacks=[("es", EarlyStopping)], callbacks__es__patience=2).initialize()
    es = dict(net.callbacks_)["es"]
    assert isinstance(es, EarlyStopping)
    assert es.patience == 2


def test_routing_to_unknown_callback_raises():
    with pytest.raises(ValueError, match="nope"):
        make_net(callbacks__nope__patience=1).initialize()
    with pytest.raises(ValueError):
        make_net(callbacks__print_log__no_such_param=1).initialize()


def test_callback_names_from_list(data):
    net = make_net(callbacks=[
        EpochScoring("f1", lower_is_better=False),
        EarlyStopping(),
        EpochScoring("recall", lower_is_better=False),
        EpochTimer,
    ]).initialize()
    names = names_of(net)
    assert names[:3] == ["epoch_timer", "train_loss", "valid_loss"]
    assert {"valid_acc", "print_log", "EpochScoring_1", "EpochScoring_2", "EarlyStopping",
            "EpochTimer"} == set(names[3:])
    assert len(names) == len(set(names))
    callbacks = dict(net.callbacks_)
    assert callbacks["EpochScoring_1"].scoring == "f1"
    assert callbacks["EpochScoring_2"].scoring == "recall"
    assert isinstance(callbacks["EpochTimer"], EpochTimer)  # a class is instantiated


def test_callback_names_match_skorch():
    skorch = pytest.importorskip("skorch")
    from skorch import callbacks as sc

    ours = make_net(callbacks=[EpochScoring("f1"), EpochScoring("recall"), ("stop", EarlyStopping())])
    theirs = make_net(skorch.NeuralNetClassifier,
                      callbacks=[sc.EpochScoring("f1"), sc.EpochScoring("recall"), ("stop", sc.EarlyStopping())])
    assert sorted(names_of(ours.initialize())) == sorted(names_of(theirs.initialize()))


def test_callback_names_from_pairs():
    f1, recall = EpochScoring("f1"), EpochScoring("recall")
    net = make_net(callbacks=[("f1", f1), ("recall", recall)]).initialize()
    callbacks = dict(net.callbacks_)
    assert callbacks["f1"] is f1 and callbacks["recall"] is recall


def test_duplicate_explicit_names_raise():
    with pytest.raises(ValueError, match="f1"):
        make_net(callbacks=[("f1", EpochScoring("f1")), ("f1", EpochScoring("recall"))]).initialize()
    with pytest.raises(ValueError, match="valid_loss"):  # clashes with a default callback
        make_net(callbacks=[("valid_loss", PassthroughScoring("valid_loss"))]).initialize()


def test_automatic_rename_clashing_with_explicit_name_raises():
    net = make_net(callbacks=[EpochScoring("f1"), EpochScoring("recall"),
                              ("EpochScoring_1", EpochScoring("precision"))])
    with pytest.raises(ValueError, match="EpochScoring_1"):
        net.initialize()


def test_none_callback_with_params_raises():
    with pytest.raises(ValueError, match="print_log"):
        make_net(callbacks__print_log=None, callbacks__print_log__sink=print).initialize()


def test_none_disables_a_default_callback(data, capsys):
    net = make_net(verbose=1, max_epochs=2, callbacks__print_log=None)
    fit(net, data)
    assert "print_log" not in names_of(net)
    assert capsys.readouterr().out == ""

    net = make_net(callbacks__valid_acc=None)
    fit(net, data)
    assert "valid_acc" not in names_of(net)
    assert "valid_acc" not in net.history[-1]
    assert "valid_loss" in net.history[-1]


def test_a_default_callback_can_be_replaced(data):
    net = make_net(callbacks__valid_acc=EpochScoring("f1", lower_is_better=False, name="valid_f1"))
    fit(net, data)
    assert isinstance(dict(net.callbacks_)["valid_acc"], EpochScoring)
    assert "valid_f1" in net.history[-1] and "valid_acc" not in net.history[-1]


def test_callbacks_disable(data, capsys):
    net = make_net(verbose=1, max_epochs=2, callbacks="disable")
    fit(net, data)
    assert net.callbacks_ == []
    assert capsys.readouterr().out == ""
    row = net.history[-1]
    for key in ("train_loss", "valid_loss", "valid_acc", "dur"):
        assert key not in row
    # the batch losses are still recorded by the net itself
    assert len(net.history[-1, "batches", :, "train_loss"]) == 2
    assert len(net.history[:, "epoch"]) == 2


def test_epoch_timer_records_dur(data):
    net = fit(make_net(max_epochs=3), data)
    durs = net.history[:, "dur"]
    assert len(durs) == 3
    assert all(isinstance(d, float) and d > 0 for d in durs)

    net = fit(make_net(max_epochs=2, callbacks__epoch_timer=None), data)
    with pytest.raises(KeyError):
        net.history[:, "dur"]


# -- PassthroughScoring -------------------------------------------------------------------------
def expected_best(values, lower_is_better=True):
    flags, best = [], None
    for v in values:
        is_best = best is None or (v < best if lower_is_better else v > best)
        flags.append(is_best)
        if is_best:
            best = v
    return flags


def test_passthrough_losses_are_weighted_batch_means(data):
    # 160 train samples in batches of 48 -> 48, 48, 48, 16; 40 valid -> 40 (one batch of 48)
    net = fit(make_net(max_epochs=4, batch_size=48, lr=0.3), data)
    for row in net.history:
        for prefix in ("train", "valid"):
            losses = [b[f"{prefix}_loss"] for b in row["batches"] if f"{prefix}_loss" in b]
            sizes = [b[f"{prefix}_batch_size"] for b in row["batches"] if f"{prefix}_loss" in b]
            expected = sum(l * s for l, s in zip(losses, sizes)) / sum(sizes)
            assert row[f"{prefix}_loss"] == pytest.approx(expected, rel=1e-12)
        assert [b["train_batch_size"] for b in row["batches"] if "train_batch_size" in b] == [48, 48, 48, 16]
        # an unweighted mean would differ (the last batch is smaller)
        train_losses = [b["train_loss"] for b in row["batches"] if "train_loss" in b]
        assert row["train_loss"] != pytest.approx(np.mean(train_losses), rel=1e-9)
        assert row["train_batch_count"] == 4 and row["valid_batch_count"] == 1
    for prefix in ("train", "valid"):
        assert net.history[:, f"{prefix}_loss_best"] == expected_best(net.history[:, f"{prefix}_loss"])
    assert net.history[0, "train_loss_best"] is True


def test_passthrough_best_flags_on_fake_history():
    cb = PassthroughScoring("loss").initialize()
    net = SimpleNamespace(history=History())
    flags = []
    for value in [3.0, 2.0, 2.0, 2.5, 1.0, 1.0]:
        net.history.new_epoch()
        net.history.new_batch()
        net.history.record_batch("loss", value)
        net.history.record_batch("valid_batch_size", 10)
        cb.on_epoch_end(net)
        assert net.history[-1, "loss"] == value
        flags.append(net.history[-1, "loss_best"])
    assert flags == [True, True, False, False, True, False]

    cb = PassthroughScoring("score", lower_is_better=False, on_train=True).initialize()
    net = SimpleNamespace(history=History())
    for value in [0.5, 0.7, 0.7, 0.6, 0.9]:
        net.history.new_epoch()
        net.history.new_batch()
        net.history.record_batch("score", value)
        net.history.record_batch("train_batch_size", 10)
        cb.on_epoch_end(net)
    assert net.history[:, "score_best"] == [True, True, False, False, True]


# -- EpochScoring -------------------------------------------------------------------------------
def test_valid_split_is_the_stratified_first_fold(data):
    X, y = data
    train_ds, valid_ds = ValidSplit(5, stratified=True)(make_net().get_dataset(X, y), y)
    train_idx, valid_idx = valid_fold(X, y)
    np.testing.assert_array_equal(valid_ds.X, X[valid_idx])
    np.testing.assert_array_equal(train_ds.y, y[train_idx])


def test_valid_acc_is_accuracy_of_module_on_valid_fold(data):
    X, y = data
    _, valid_idx = valid_fold(X, y)
    net = fit(make_net(max_epochs=3), data)
    assert isinstance(net.train_split, ValidSplit) and net.train_split.stratified
    expected = accuracy_score(y[valid_idx], net.predict(X[valid_idx]))
    assert net.history[-1, "valid_acc"] == expected
    # computed independently of the net's predict: argmax of the module in eval mode
    net.module_.eval()
    with torch.no_grad():
        probs = net.module_(torch.as_tensor(X[valid_idx]))
    assert net.history[-1, "valid_acc"] == accuracy_score(y[valid_idx], probs.argmax(1).numpy())
    assert net.history[:, "valid_acc_best"] == expected_best(net.history[:, "valid_acc"], lower_is_better=False)


def my_accuracy(net, X, y):
    return accuracy_score(y, net.predict(X))


@pytest.mark.parametrize("scoring, name, metric", [
    ("f1", "f1", f1_score),
    ("balanced_accuracy", "balanced_accuracy", balanced_accuracy_score),
    (my_accuracy, "my_accuracy", accuracy_score),
    (make_scorer(balanced_accuracy_score), "balanced_accuracy_score", balanced_accuracy_score),
])
@pytest.mark.parametrize("use_caching", [True, False])
def test_epoch_scoring_scorers(data, scoring, name, metric, use_caching):
    X, y = data
    _, valid_idx = valid_fold(X, y)
    cb = EpochScoring(scoring, lower_is_better=False, use_caching=use_caching)
    net = fit(make_net(max_epochs=3, callbacks=[cb]), data)
    assert name in net.history[-1]
    assert net.history[-1, name] == pytest.approx(metric(y[valid_idx], net.predict(X[valid_idx])), abs=1e-12)
    assert net.history[:, f"{name}_best"] == expected_best(net.history[:, name], lower_is_better=False)


def test_epoch_scoring_accepts_sklearn_metric_function(data):
    X, y = data
    _, valid_idx = valid_fold(X, y)
    net = fit(make_net(max_epochs=2, callbacks=[EpochScoring(f1_score, lower_is_better=False)]), data)
    assert net.history[-1, "f1_score"] == pytest.approx(f1_score(y[valid_idx], net.predict(X[valid_idx])))


def test_epoch_scoring_name_of_partial(data):
    def threshold_accuracy(net, X, y, threshold=0.5):
        return accuracy_score(y, net.predict_proba(X)[:, 1] > threshold)

    net = fit(make_net(max_epochs=1, callbacks=[
        EpochScoring(functools.partial(threshold_accuracy, threshold=0.4), lower_is_better=False)]), data)
    assert "threshold_accuracy" in net.history[-1]


def test_epoch_scoring_explicit_name_and_lower_is_better(data):
    def error_rate(net, X, y):
        return 1 - accuracy_score(y, net.predict(X))

    net = fit(make_net(max_epochs=4, callbacks=[
        EpochScoring(error_rate, name="err"),  # lower is better by default
        EpochScoring("accuracy", name="acc", lower_is_better=False),
    ]), data)
    errs, accs = net.history[:, "err"], net.history[:, "acc"]
    np.testing.assert_allclose(errs, 1 - np.array(accs), atol=1e-12)
    assert net.history[:, "err_best"] == expected_best(errs)
    assert net.history[:, "acc_best"] == expected_best(accs, lower_is_better=False)
    assert net.history[:, "acc_best"] == net.history[:, "err_best"]


def test_epoch_scoring_best_flags_lower_is_better_false_on_fake_net():
    """Feed a scripted sequence of scores through the callback."""
    scores = iter([0.5, 0.4, 0.5, 0.6, 0.6, 0.55, 0.7])
    cb = EpochScoring(lambda net, X, y: next(scores), lower_is_better=False, name="s",
                      use_caching=False).initialize()
    net = SimpleNamespace(history=History(), use_caching="auto")
    for _ in range(7):
        net.history.new_epoch()
        cb.on_epoch_end(net, dataset_train=None, dataset_valid=object())
    assert net.history[:, "s"] == [0.5, 0.4, 0.5, 0.6, 0.6, 0.55, 0.7]
    assert net.history[:, "s_best"] == [True, False, False, True, False, False, True]


def test_epoch_scoring_on_train(data):
    X, y = data
    train_idx, _ = valid_fold(X, y)
    # without caching, the training data is scored after the epoch with the net's predict
    net = fit(make_net(max_epochs=3, callbacks=[
        EpochScoring("accuracy", on_train=True, name="train_acc", lower_is_better=False,
                     use_caching=False)]), data)
    assert net.history[-1, "train_acc"] == accuracy_score(y[train_idx], net.predict(X[train_idx]))
    assert "train_acc_best" in net.history[-1]

    # with caching, the predictions made during the training steps are scored
    predictions = []

    class KeepTrainPredictions(Callback):
        def on_epoch_begin(self, net, **kwargs):
            predictions.clear()

        def on_batch_end(self, net, batch=None, training=None, y_pred=None, **kwargs):
            if training:
                predictions.append((batch[1].numpy(), y_pred.detach().argmax(1).numpy()))

    net = fit(make_net(max_epochs=2, batch_size=64, callbacks=[
        KeepTrainPredictions(),
        EpochScoring("accuracy", on_train=True, name="train_acc", lower_is_better=False)]), data)
    y_true = np.concatenate([t for t, _ in predictions])
    y_pred = np.concatenate([p for _, p in predictions])
    assert len(y_true) == 160
    assert net.history[-1, "train_acc"] == accuracy_score(y_true, y_pred)


def test_epoch_scoring_matches_skorch(data):
    skorch = pytest.importorskip("skorch")
    from skorch import callbacks as sc

    def callbacks(m):
        return [m.EpochScoring("f1", lower_is_better=False),
                m.EpochScoring("accuracy", on_train=True, name="train_acc", lower_is_better=False),
                m.EpochScoring(make_scorer(balanced_accuracy_score), lower_is_better=False)]

    import prefect_torch.callbacks as pc
    ours = fit(make_net(max_epochs=4, callbacks=callbacks(pc)), data)
    theirs = fit(make_net(skorch.NeuralNetClassifier, max_epochs=4, callbacks=callbacks(sc)), data)
    for key in ["f1", "f1_best", "train_acc", "train_acc_best", "balanced_accuracy_score",
                "valid_acc", "valid_acc_best", "train_loss", "valid_loss"]:
        assert ours.history[:, key] == theirs.history[:, key], key


class CountForwards(Callback):
    """Counts the module's forward passes per epoch, split by train/eval mode."""

    def initialize(self):
        self.counts = {}
        return self

    def on_train_begin(self, net, **kwargs):
        def hook(module, inputs, output):
            epoch = len(net.history)
            key = (epoch, "train" if module.training else "eval")
            self.counts[key] = self.counts.get(key, 0) + 1

        self.handle = net.module_.register_forward_hook(hook)

    def on_train_end(self, net, **kwargs):
        self.handle.remove()

    def eval_per_epoch(self, n_epochs):
        return [self.counts.get((e, "eval"), 0) for e in range(1, n_epochs + 1)]


def test_epoch_scoring_caching_avoids_second_forward_pass(data):
    # batch size 16: 10 train batches, 3 valid batches (16, 16, 8)
    counter = CountForwards()
    cached = fit(make_net(max_epochs=2, batch_size=16, callbacks=[counter]), data)
    assert cached.history[-1, "valid_batch_count"] == 3
    assert counter.eval_per_epoch(2) == [3, 3]
    assert [counter.counts[(e, "train")] for e in (1, 2)] == [10, 10]

    counter = CountForwards()
    uncached = fit(make_net(max_epochs=2, batch_size=16, callbacks=[counter],
                            callbacks__valid_acc__use_caching=False), data)
    assert counter.eval_per_epoch(2) == [6, 6]  # the validation loss pass + the scoring pass
    # same score; only the first epoch is comparable: the extra prediction pass draws a
    # DataLoader seed from torch's RNG (skorch does too), so later epochs shuffle differently
    assert cached.history[0, "valid_acc"] == uncached.history[0, "valid_acc"]
    assert cached.history[0, "valid_loss"] == uncached.history[0, "valid_loss"]


@pytest.mark.parametrize("use_caching", [True, False])
def test_epoch_scoring_caching_matches_skorch(data, use_caching):
    skorch = pytest.importorskip("skorch")
    kwargs = dict(max_epochs=3, batch_size=16, callbacks__valid_acc__use_caching=use_caching)
    ours = fit(make_net(**kwargs), data)
    theirs = fit(make_net(skorch.NeuralNetClassifier, **kwargs), data)
    for key in ["valid_acc", "valid_acc_best", "train_loss", "valid_loss"]:
        assert ours.history[:, key] == theirs.history[:, key], key


def test_net_use_caching_false_disables_caching(data):
    counter = CountForwards()
    fit(make_net(max_epochs=1, batch_size=16, callbacks=[counter], use_caching=False), data)
    assert counter.eval_per_epoch(1) == [6]


def test_net_use_caching_true_overrides_callback(data):
    counter = CountForwards()
    fit(make_net(max_epochs=1, batch_size=16, callbacks=[counter], use_caching=True,
                 callbacks__valid_acc__use_caching=False), data)
    assert counter.eval_per_epoch(1) == [3]


# -- BatchScoring -----------------------------------------------------------------------------
class KeepValidBatches(Callback):
    def initialize(self):
        self.batches = []
        return self

    def on_batch_end(self, net, batch=None, training=None, y_pred=None, **kwargs):
        if not training:
            self.batches.append((len(net.history), batch[1].numpy(), y_pred.argmax(1).numpy()))


def test_batch_scoring_per_batch_and_weighted_average(data):
    keep, counter = KeepValidBatches(), CountForwards()
    net = fit(make_net(max_epochs=2, batch_size=16, callbacks=[
        keep, counter, BatchScoring("accuracy", lower_is_better=False, name="bacc")]), data)
    for epoch in (1, 2):
        row = net.history[epoch - 1]
        batch_scores = [b["bacc"] for b in row["batches"] if "bacc" in b]
        expected = [accuracy_score(t, p) for e, t, p in keep.batches if e == epoch]
        assert batch_scores == pytest.approx(expected, abs=1e-12)
        assert len(batch_scores) == 3  # validation batches only
        sizes = [b["valid_batch_size"] for b in row["batches"] if "bacc" in b]
        assert sizes == [16, 16, 8]
        assert row["bacc"] == pytest.approx(np.dot(batch_scores, sizes) / 40, abs=1e-12)
        assert row["bacc"] != pytest.approx(np.mean(batch_scores), abs=1e-9) or len(set(batch_scores)) == 1
    assert net.history[:, "bacc_best"] == expected_best(net.history[:, "bacc"], lower_is_better=False)
    # cached: scoring each batch needs no extra forward pass
    assert counter.eval_per_epoch(2) == [3, 3]
    # the epoch average over the whole fold equals the fold accuracy
    assert net.history[-1, "bacc"] == pytest.approx(net.history[-1, "valid_acc"], abs=1e-12)


def test_batch_scoring_on_train(data):
    net = fit(make_net(max_epochs=2, batch_size=48, callbacks=[
        BatchScoring("accuracy", lower_is_better=False, name="tacc", on_train=True)]), data)
    row = net.history[-1]
    train_batches = [b for b in row["batches"] if "train_loss" in b]
    valid_batches = [b for b in row["batches"] if "valid_loss" in b]
    assert all("tacc" in b for b in train_batches)
    assert not any("tacc" in b for b in valid_batches)
    values = [b["tacc"] for b in train_batches]
    sizes = [b["train_batch_size"] for b in train_batches]
    assert row["tacc"] == pytest.approx(np.dot(values, sizes) / sum(sizes), abs=1e-12)


def test_batch_scoring_matches_skorch(data):
    skorch = pytest.importorskip("skorch")
    from skorch import callbacks as sc

    ours = fit(make_net(max_epochs=3, batch_size=48, callbacks=[
        BatchScoring("accuracy", lower_is_better=False, name="bacc")]), data)
    theirs = fit(make_net(skorch.NeuralNetClassifier, max_epochs=3, batch_size=48, callbacks=[
        sc.BatchScoring("accuracy", lower_is_better=False, name="bacc")]), data)
    assert ours.history[:, "bacc"] == theirs.history[:, "bacc"]
    assert ours.history[:, "bacc_best"] == theirs.history[:, "bacc_best"]
    assert ours.history[:, "batches", :, "bacc"] == theirs.history[:, "batches", :, "bacc"]


# -- EarlyStopping ----------------------------------------------------------------------------
def run_early_stopping(scores, **kwargs):
    """Feed ``scores`` to an EarlyStopping; the epoch at which it stops, or None."""
    cb = EarlyStopping(monitor="score", sink=lambda *a: None, **kwargs).initialize()
    net = SimpleNamespace(history=History(), verbose=0, module_=torch.nn.Linear(1, 1))
    cb.on_train_begin(net)
    for epoch, score in enumerate(scores, 1):
        net.history.new_epoch()
        net.history.record("epoch", epoch)
        net.history.record("score", score)
        try:
            cb.on_epoch_end(net)
        except StopTraining:
            return epoch, cb
    return None, cb


def test_early_stopping_patience_counts_epochs_without_improvement():
    assert run_early_stopping([1.0, 0.9, 0.95, 0.96], patience=2)[0] == 4
    assert run_early_stopping([1.0, 0.9, 0.95, 0.8, 0.85, 0.86], patience=2)[0] == 6
    assert run_early_stopping([1.0, 0.9, 0.8, 0.7], patience=1)[0] is None
    assert run_early_stopping([1.0, 1.0], patience=1)[0] == 2  # equal is no improvement
    stop, cb = run_early_stopping([1.0, 0.5, 0.7, 0.6], patience=5)
    assert stop is None and cb.best_epoch_ == 2 and cb.misses_ == 2


def test_early_stopping_threshold_rel_and_abs():
    scores = [1.0, 0.95, 0.89, 0.85, 0.82]
    # rel 0.1: improving means below 0.9 * best -> 1.0 (best), 0.95 miss, 0.89 best, 0.85 miss, 0.82 miss
    assert run_early_stopping(scores, patience=2, threshold=0.1)[0] == 5
    stop, cb = run_early_stopping(scores, patience=3, threshold=0.1)
    assert stop is None and cb.best_epoch_ == 3
    # abs 0.03: 1.0, 0.95, 0.89, 0.85 all improve by more than 0.03; 0.82 does not (0.85 - 0.03)
    stop, cb = run_early_stopping(scores, patience=1, threshold=0.03, threshold_mode="abs")
    assert stop == 5 and cb.best_epoch_ == 4
    # higher is better: rel 0.1 over 0.5 needs > 0.55
    up = [0.5, 0.55, 0.54, 0.7]  # 0.55 and 0.54 do not beat 0.5 * 1.1
    stop, cb = run_early_stopping(up, patience=3, threshold=0.1, lower_is_better=False)
    assert stop is None and cb.best_epoch_ == 4 and cb.misses_ == 0
    assert run_early_stopping(up, patience=2, threshold=0.1, lower_is_better=False)[0] == 3
    with pytest.raises(ValueError):
        EarlyStopping(threshold_mode="bogus").initialize()


def test_early_stopping_on_net_history_length(data):
    # a huge relative threshold: no epoch after the first improves enough
    for patience in (1, 3):
        net = fit(make_net(max_epochs=10, callbacks=[
            EarlyStopping(patience=patience, threshold=0.9, sink=lambda *a: None)]), data)
        assert len(net.history) == 1 + patience


def test_early_stopping_prints_to_sink_when_verbose(data):
    lines = []
    fit(make_net(max_epochs=10, verbose=1, callbacks__print_log__sink=lambda *a: None, callbacks=[
        EarlyStopping(patience=2, threshold=0.9, sink=lines.append)]), data)
    assert lines == ["Stopping since valid_loss has not improved in the last 2 epochs."]


def test_early_stopping_unknown_monitor_raises(data):
    with pytest.raises(ValueError, match="nope"):
        fit(make_net(max_epochs=2, callbacks=[EarlyStopping(monitor="nope")]), data)


class SaveWeights(Callback):
    def initialize(self):
        self.weights = {}
        return self

    def on_epoch_end(self, net, **kwargs):
        self.weights[net.history[-1, "epoch"]] = copy.deepcopy(net.module_.state_dict())


def assert_state_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_early_stopping_load_best_restores_best_weights():
    X, y = make_data(300)
    saver = SaveWeights()
    es = EarlyStopping(patience=2, load_best=True, threshold=0, sink=lambda *a: None)
    net = fit(make_net(max_epochs=25, callbacks=[saver, es]), (X, y))
    n = len(net.history)
    assert n < 25
    losses = net.history[:, "valid_loss"]
    best = int(np.argmin(losses)) + 1
    assert best < n  # the run ended on worse epochs, so there is something to restore
    assert es.best_epoch_ == best
    assert_state_equal(net.module_.state_dict(), saver.weights[best])
    with pytest.raises(AssertionError):
        assert_state_equal(net.module_.state_dict(), saver.weights[n])

    # without load_best the last epoch's weights stay
    saver = SaveWeights()
    net = fit(make_net(max_epochs=25, callbacks=[
        saver, EarlyStopping(patience=2, threshold=0, sink=lambda *a: None)]), (X, y))
    assert_state_equal(net.module_.state_dict(), saver.weights[len(net.history)])


def test_early_stopping_matches_skorch():
    skorch = pytest.importorskip("skorch")
    from skorch import callbacks as sc

    X, y = make_data(300)
    for kwargs in [dict(patience=2, load_best=True),
                   dict(monitor="valid_acc", lower_is_better=False, patience=2, threshold=0.01)]:
        ours = fit(make_net(max_epochs=25, callbacks=[EarlyStopping(sink=lambda *a: None, **kwargs)]), (X, y))
        theirs = fit(make_net(skorch.NeuralNetClassifier, max_epochs=25,
                              callbacks=[sc.EarlyStopping(sink=lambda *a: None, **kwargs)]), (X, y))
        assert len(ours.history) == len(theirs.history) < 25
        for key in ["train_loss", "valid_loss", "valid_acc", "valid_loss_best"]:
            assert ours.history[:, key] == theirs.history[:, key]
        assert_state_equal(ours.module_.state_dict(), theirs.module_.state_dict())


# -- LRScheduler --------------------------------------------------------------------------------
def current_lr(net):
    return net.optimizer_.param_groups[0]["lr"]


@pytest.mark.parametrize("n_epochs, step_size, gamma", [(5, 2, 0.5), (4, 3, 0.1), (3, 1, 0.5)])
def test_step_lr_per_epoch(data, n_epochs, step_size, gamma):
    net = fit(make_net(max_epochs=n_epochs, callbacks=[
        LRScheduler(StepLR, step_size=step_size, gamma=gamma)]), data)
    assert current_lr(net) == pytest.approx(0.5 * gamma ** (n_epochs // step_size))
    # event_lr is the learning rate each epoch trained with
    expected = [0.5 * gamma ** ((e - 1) // step_size) for e in range(1, n_epochs + 1)]
    assert net.history[:, "event_lr"] == pytest.approx(expected)


def test_lr_scheduler_string_policies(data):
    net = fit(make_net(max_epochs=3, callbacks=[LRScheduler("StepLR", step_size=1, gamma=0.5)]), data)
    assert net.history[:, "event_lr"] == pytest.approx([0.5, 0.25, 0.125])

    net = fit(make_net(max_epochs=4, callbacks=[
        LRScheduler("WarmRestartLR", min_lr=0.01, max_lr=0.2, base_period=2)]), data)
    lrs = net.history[:, "event_lr"]
    assert lrs[0] == pytest.approx(0.2)  # cosine starts at max_lr
    assert lrs[1] == pytest.approx(0.105)  # halfway through the first period of 2
    assert lrs[2] == pytest.approx(0.01)  # the period's end reaches min_lr (as in skorch)
    assert lrs[3] == pytest.approx(0.2)  # restart
    default = LRScheduler().initialize()
    assert default.policy_ is WarmRestartLR

    with pytest.raises(ValueError, match="NoSuchLR"):
        make_net(callbacks=[LRScheduler("NoSuchLR")]).initialize()


def test_lr_scheduler_event_name(data):
    net = fit(make_net(max_epochs=2, callbacks=[
        LRScheduler(StepLR, step_size=1, gamma=0.5, event_name="event_my_lr")]), data)
    assert net.history[:, "event_my_lr"] == pytest.approx([0.5, 0.25])
    net = fit(make_net(max_epochs=2, callbacks=[
        LRScheduler(StepLR, step_size=1, gamma=0.5, event_name=None)]), data)
    assert not any(k.startswith("event_") for k in net.history[-1])
    assert current_lr(net) == pytest.approx(0.125)


def test_reduce_lr_on_plateau_with_monitor(data):
    # threshold 0.2 (relative): no epoch improves on the first enough -> halve every epoch from 2 on
    net = fit(make_net(max_epochs=5, callbacks=[
        LRScheduler(ReduceLROnPlateau, monitor="valid_loss", patience=0, factor=0.5, threshold=0.2)]), data)
    assert net.history[:, "event_lr"] == pytest.approx([0.5, 0.5, 0.25, 0.125, 0.0625])
    assert current_lr(net) == pytest.approx(0.03125)

    # a callable monitor, constant: never better than the first value
    net = fit(make_net(max_epochs=4, callbacks=[
        LRScheduler("ReduceLROnPlateau", monitor=lambda net: 1.0, patience=1, factor=0.1)]), data)
    assert net.history[:, "event_lr"] == pytest.approx([0.5, 0.5, 0.5, 0.05])

    # the default monitor is train_loss; with patience 100 nothing changes
    net = fit(make_net(max_epochs=3, callbacks=[LRScheduler(ReduceLROnPlateau, patience=100)]), data)
    assert net.history[:, "event_lr"] == [0.5, 0.5, 0.5]


def reference_lrs(policy, n_steps, lr=0.5, **kwargs):
    """The lr in effect at each of ``n_steps`` steps of a bare torch scheduler."""
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(params, lr=lr)
    scheduler = policy(optimizer, **kwargs)
    lrs = []
    for _ in range(n_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs, optimizer.param_groups[0]["lr"]


def test_step_every_batch_one_cycle(data):
    # 160 train samples, batch size 64 -> 3 batches per epoch, 4 epochs -> 12 steps
    net = fit(make_net(max_epochs=4, batch_size=64, callbacks=[
        LRScheduler(OneCycleLR, max_lr=1.0, total_steps=12, step_every="batch")]), data)
    recorded = net.history[:, "batches", :, "event_lr"]
    assert [len(epoch) for epoch in recorded] == [3, 3, 3, 3]  # train batches only
    expected, final = reference_lrs(OneCycleLR, 12, max_lr=1.0, total_steps=12)
    assert [lr for epoch in recorded for lr in epoch] == pytest.approx(expected)
    assert current_lr(net) == pytest.approx(final)
    assert "event_lr" not in net.history[-1]  # batch-level only


def test_step_every_batch_step_lr(data):
    net = fit(make_net(max_epochs=3, batch_size=64, callbacks=[
        LRScheduler("StepLR", step_size=2, gamma=0.5, step_every="batch")]), data)
    flat = [lr for epoch in net.history[:, "batches", :, "event_lr"] for lr in epoch]
    assert flat == pytest.approx([0.5 * 0.5 ** (i // 2) for i in range(9)])
    assert current_lr(net) == pytest.approx(0.5 * 0.5 ** (9 // 2))


@pytest.mark.parametrize("step_every", ["epoch", "batch"])
def test_partial_fit_continues_schedule(data, step_every):
    def net():
        return make_net(max_epochs=2, batch_size=100, callbacks=[
            LRScheduler(StepLR, step_size=3, gamma=0.1, step_every=step_every)])

    torch.manual_seed(0)
    resumed = net().fit(*data)
    resumed.partial_fit(*data)
    torch.manual_seed(0)
    straight = net().fit(*data, epochs=4)
    assert len(resumed.history) == len(straight.history) == 4
    assert current_lr(resumed) == pytest.approx(current_lr(straight))
    assert current_lr(resumed) < 0.5
    if step_every == "epoch":
        assert resumed.history[:, "event_lr"] == pytest.approx([0.5, 0.5, 0.5, 0.05])
    else:
        assert resumed.history[:, "batches", :, "event_lr"] == straight.history[:, "batches", :, "event_lr"]
    assert resumed.history[:, "train_loss"] == straight.history[:, "train_loss"]


def test_fit_restarts_schedule(data):
    net = make_net(max_epochs=2, callbacks=[LRScheduler(StepLR, step_size=1, gamma=0.5)])
    fit(net, data)
    fit(net, data)  # not warm_start: a fresh optimizer and schedule
    assert net.history[:, "event_lr"] == pytest.approx([0.5, 0.25])


@pytest.mark.parametrize("make_callbacks", [
    lambda m: [m.LRScheduler(StepLR, step_size=2, gamma=0.5)],
    lambda m: [m.LRScheduler(ReduceLROnPlateau, monitor="valid_loss", patience=0, factor=0.5, threshold=0.2)],
    lambda m: [m.LRScheduler(OneCycleLR, max_lr=1.0, total_steps=8, step_every="batch")],
    lambda m: [m.LRScheduler(StepLR, step_size=3, gamma=0.5, step_every="batch"),
               m.EarlyStopping(patience=1, threshold=0.05, sink=lambda *a: None)],
], ids=["step", "plateau", "onecycle-batch", "step-batch+early-stopping"])
def test_lr_scheduler_matches_skorch(data, make_callbacks):
    skorch = pytest.importorskip("skorch")
    from skorch import callbacks as sc

    import prefect_torch.callbacks as pc
    ours = fit(make_net(max_epochs=4, callbacks=make_callbacks(pc)), data)
    theirs = fit(make_net(skorch.NeuralNetClassifier, max_epochs=4, callbacks=make_callbacks(sc)), data)
    assert len(ours.history) == len(theirs.history)
    for key in ["train_loss", "valid_loss", "valid_acc"]:
        assert ours.history[:, key] == theirs.history[:, key]
    if "event_lr" in theirs.history[-1]:
        assert ours.history[:, "event_lr"] == theirs.history[:, "event_lr"]
    else:
        assert ours.history[:, "batches", :, "event_lr"] == theirs.history[:, "batches", :, "event_lr"]
    assert current_lr(ours) == current_lr(theirs)
    assert_state_equal(ours.module_.state_dict(), theirs.module_.state_dict())


def test_lr_scheduler_invalid_step_every():
    with pytest.raises(ValueError, match="step_every"):
        LRScheduler(StepLR, step_size=1, step_every="minute").initialize()


# -- notification plumbing -------------------------------------------------------------------
class CountingCallback(Callback):
    def initialize(self):
        self.batches_ = 0
        return self

    def on_batch_end(self, net, **kwargs):
        self.batches_ += 1


def test_callbacks_added_to_callbacks_after_initialize_are_notified(data):
    """The per-hook dispatch table follows changes of ``callbacks_``."""
    net = make_net(max_epochs=1, verbose=0).initialize()
    net.fit(*data)
    late = CountingCallback().initialize()
    net.callbacks_.append(("late", late))
    net.partial_fit(*data, epochs=1)
    batches = net.history[-1, "train_batch_count"] + net.history[-1, "valid_batch_count"]
    assert late.batches_ == batches


def test_accuracy_scorer_matches_sklearn_for_plain_and_unusual_labels():
    from sklearn.metrics import accuracy_score

    from prefect_torch.callbacks.scoring import _as_scorer

    class FixedPredictions:
        def __init__(self, y_pred):
            self.y_pred = y_pred

        def predict(self, X):
            return self.y_pred

    scorer = _as_scorer("accuracy")
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    assert scorer(FixedPredictions(y_pred), None, y_true) == accuracy_score(y_true, y_pred)
    # string labels and 2-D multilabel indicators take sklearn's path and agree with it
    labels = np.array(["a", "b"])[y_true % 2], np.array(["a", "b"])[y_pred % 2]
    assert scorer(FixedPredictions(labels[1]), None, labels[0]) == accuracy_score(*labels)
    multi_true, multi_pred = rng.integers(0, 2, (20, 3)), rng.integers(0, 2, (20, 3))
    assert scorer(FixedPredictions(multi_pred), None, multi_true) == accuracy_score(multi_true, multi_pred)


def test_net_with_default_scoring_callback_pickles(data):
    """scoring=None scores with net.score; the initialized callback must still pickle."""
    import pickle

    net = make_net(max_epochs=2, verbose=0,
                   callbacks=[EpochScoring(None, lower_is_better=False, name="net_score")]).fit(*data)
    clone = pickle.loads(pickle.dumps(net))
    assert clone.history[:, "net_score"] == net.history[:, "net_score"]
    np.testing.assert_array_equal(clone.predict_proba(data[0]), net.predict_proba(data[0]))
