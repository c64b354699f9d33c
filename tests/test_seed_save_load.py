"""Every code block of skorch's "Saving and Loading" guide (shared/seed/save_load.rst), run on prefect_torch.

Only the imports are changed (``skorch`` -> ``prefect_torch``); ``get_features()`` is a ``StandardScaler``
and block 3's missing comma after ``module=MyModule`` is added. The guide's code writes into the current
directory, so every test runs in its own ``tmp_path``.

The guide's printed numbers come from an unseeded run; the tests seed torch before each training script
(``FIRST_RUN_SEED`` makes the first run's best epoch an earlier one than its last, as in the guide, so
"resume from the best checkpoint" and "resume from the train-end checkpoint" start at different epochs).
The assertions are the documented behaviour: the files that appear, the ``+`` marks of the ``cp`` column,
the epoch each resumed run starts at, and that the loaded weights are the checkpointed ones.
"""
import json
import pickle
import re

import joblib
import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from helpers import ANSI
from prefect_torch import NeuralNet, NeuralNetClassifier
from prefect_torch.callbacks import LoadInitState

FIRST_RUN_SEED = 1  # exp1's first run: last improvement at epoch 6 of 10 (torch 2.x, one thread)
EXP2_SEED = 0  # exp2's first run: last improvement at epoch 7 of 10

# -- "Using callbacks": the guide's data and module --------------------------------------------
X, y = make_classification(1000, 10, n_informative=5, random_state=0)
X = X.astype(np.float32)
y = y.astype(np.int64)


class MyModule(nn.Sequential):
    def __init__(self, num_units=10):
        super().__init__(
            nn.Linear(10, num_units),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(num_units, 10),
            nn.Linear(10, 2),
            nn.Softmax(dim=-1)
        )


def get_features():
    return StandardScaler()


# -- helpers --------------------------------------------------------------------------------------
def parse_table(out):
    """The epoch table PrintLog printed: ``(headers, rows)`` with rows as ``{header: cell}`` dicts.

    Columns are cut at the dashes of the separator line, so an empty ``cp`` cell reads ``''``.
    """
    lines = [ANSI.sub("", line) for line in out.splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["epoch"])
    header, separator = lines[start], lines[start + 1]
    assert set(separator.replace(" ", "")) == {"-"}
    spans = [m.span() for m in re.finditer(r"-+", separator)]
    bounds = [(0 if i == 0 else spans[i - 1][1], end) for i, (_, end) in enumerate(spans)]
    headers = [header[a:b].strip() for a, b in bounds]
    rows = []
    for line in lines[start + 2:]:
        if not re.match(r"^ *\d+ ", line):
            break
        rows.append({name: line[a:b].strip() for name, (a, b) in zip(headers, bounds)})
    return headers, rows


def plus_epochs(rows):
    """Epochs whose ``cp`` cell holds the ``+`` mark."""
    assert {row["cp"] for row in rows} <= {"+", ""}
    return [int(row["epoch"]) for row in rows if row["cp"] == "+"]


def epochs_where(history, key):
    return [row["epoch"] for row in history if row.get(key)]


def state_of(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_state(a, b):
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_history_prefix(history, reference, n):
    """The first ``n`` epochs of ``history`` are ``reference``'s (values and batches), apart from ``dur``."""
    assert len(history) >= n
    for row, ref in zip(history[:n], reference[:n]):
        assert {k: v for k, v in row.items() if k != "dur"} == {k: v for k, v in ref.items() if k != "dur"}


def replay(n_epochs, seed, **kwargs):
    """The guide's classifier trained for ``n_epochs`` from ``seed`` without any callback: the model a
    checkpoint of epoch ``n_epochs`` must hold (the callbacks draw no random numbers)."""
    torch.manual_seed(seed)
    kwargs.setdefault("lr", 0.5)
    return NeuralNetClassifier(MyModule, max_epochs=n_epochs, verbose=0, **kwargs).fit(X, y)


@pytest.fixture
def loaded_states(monkeypatch):
    """A spy on LoadInitState: ``(loaded_epoch_, module weights)`` right after each on_train_begin."""
    seen = []
    original = LoadInitState.on_train_begin

    def spy(self, net, **kwargs):
        original(self, net, **kwargs)
        seen.append((self.loaded_epoch_, state_of(net.module_)))

    monkeypatch.setattr(LoadInitState, "on_train_begin", spy)
    return seen


# -- "General approach": block 1, pickling a Pipeline -----------------------------------------
def test_block1_pickle_pipeline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    net = NeuralNet(
        module=MyModule,
        criterion=torch.nn.NLLLoss,
    )

    model = Pipeline([
        ('my-features', get_features()),
        ('net', net),
    ])
    model.fit(X, y)

    # saving
    with open('some-file.pkl', 'wb') as f:
        pickle.dump(model, f)

    # loading
    with open('some-file.pkl', 'rb') as f:
        model = pickle.load(f)

    fitted = net  # the pipeline fitted the very net object given to it
    assert len(fitted.history) == 10
    assert model is not fitted and model.named_steps["net"] is not fitted
    loaded_net = model.named_steps["net"]
    # the whole model came back: hyperparameters, fitted scaler, weights, history; predictions are exact
    assert loaded_net.get_params()["module"] is MyModule
    assert loaded_net.criterion is torch.nn.NLLLoss
    assert_same_state(state_of(loaded_net.module_), state_of(fitted.module_))
    assert loaded_net.history == fitted.history
    scaled = model.named_steps["my-features"].transform(X)
    np.testing.assert_allclose(scaled.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_array_equal(model.predict(X), fitted.predict(scaled))
    # no need to initialize the unpickled net: it can go on training at once
    loaded_net.partial_fit(scaled, y, epochs=1)
    assert loaded_net.history[:, "epoch"] == list(range(1, 12))


def test_block1_joblib_round_trip_is_exact(tmp_path):
    model = Pipeline([
        ('my-features', get_features()),
        ('net', NeuralNet(module=MyModule, criterion=torch.nn.NLLLoss, max_epochs=2, verbose=0)),
    ])
    model.fit(X, y)
    joblib.dump(model, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.named_steps["net"].history == model.named_steps["net"].history


def test_block1_pickled_lambda_is_the_documented_disadvantage(tmp_path):
    # "some Python code (e.g. lambda functions) cannot be pickled" -- and the error says what to do
    net = NeuralNet(module=MyModule, criterion=torch.nn.NLLLoss, max_epochs=1, verbose=0,
                    predict_nonlinearity=lambda x: x)
    model = Pipeline([('my-features', get_features()), ('net', net)]).fit(X, y)
    with pytest.raises(pickle.PicklingError, match=r"predict_nonlinearity.*save_params"):
        pickle.dumps(model)
    net.save_params(f_params=tmp_path / "params.pt")  # the documented way out
    assert (tmp_path / "params.pt").stat().st_size > 0


# -- block 2: save_params / load_params --------------------------------------------------------
def test_block2_save_params_and_load_into_new_net(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    net = NeuralNet(
        module=MyModule,
        criterion=torch.nn.NLLLoss,
    )

    model = Pipeline([
        ('my-features', get_features()),
        ('net', net),
    ])
    model.fit(X, y)

    net.save_params(f_params='some-file.pkl')

    new_net = NeuralNet(
        module=MyModule,
        criterion=torch.nn.NLLLoss,
    )
    new_net.initialize()  # This is important!
    fresh = state_of(new_net.module_)
    new_net.load_params(f_params='some-file.pkl')

    # only 'some-file.pkl' was written, and it is the module's state_dict ("weights and biases")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["some-file.pkl"]
    saved = torch.load("some-file.pkl", weights_only=True)
    assert list(saved) == list(net.module_.state_dict())
    assert_same_state(saved, state_of(net.module_))
    # the new net now holds those weights (not its fresh ones) and predicts like the pipeline's net
    assert not all(torch.equal(fresh[k], saved[k]) for k in saved)
    assert_same_state(state_of(new_net.module_), saved)
    scaled = model.named_steps["my-features"].transform(X)
    np.testing.assert_array_equal(new_net.predict(scaled), model.predict(X))
    # the history was not saved (f_history not given): the new net's is empty
    assert len(new_net.history) == 0


# -- block 3: params, optimizer and history, to continue training ------------------------------
def test_block3_save_and_load_params_optimizer_history(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    net = NeuralNet(
        module=MyModule,
        criterion=torch.nn.NLLLoss,
    )

    net.fit(X, y, epochs=2) # Train for 2 epochs

    net.save_params(
        f_params='model.pkl', f_optimizer='opt.pkl', f_history='history.json')

    new_net = NeuralNet(
        module=MyModule,
        criterion=torch.nn.NLLLoss,
    )
    new_net.initialize() # This is important!
    new_net.load_params(
        f_params='model.pkl', f_optimizer='opt.pkl', f_history='history.json')

    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json", "model.pkl", "opt.pkl"]
    # the history is JSON (a list of epoch dicts) and came back equal
    assert json.loads((tmp_path / "history.json").read_text()) == list(net.history)
    assert new_net.history == net.history
    assert new_net.history[:, "epoch"] == [1, 2]
    assert_same_state(state_of(new_net.module_), state_of(net.module_))
    assert new_net.optimizer_.state_dict()["param_groups"] == net.optimizer_.state_dict()["param_groups"]

    new_net.fit(X, y, epochs=2) # Train for another 2 epochs

    # NOTE: the guide says "Train for another 2 epochs", but fit() re-initializes a net unless
    # warm_start=True -- in skorch as here (skorch issue #1032); partial_fit continues (next test).
    assert new_net.history[:, "epoch"] == [1, 2]


def test_block3_fit_after_load_matches_skorch(tmp_path):
    """What the guide's last line does is what skorch does: a fresh start (history epochs 1, 2)."""
    skorch = pytest.importorskip("skorch")
    epochs = {}
    for name, cls in [("ours", NeuralNet), ("skorch", skorch.NeuralNet)]:
        torch.manual_seed(0)
        net = cls(module=MyModule, criterion=torch.nn.NLLLoss, verbose=0)
        net.fit(X, y, epochs=2)
        net.save_params(f_params=str(tmp_path / f"{name}.pkl"), f_history=str(tmp_path / f"{name}.json"))
        new_net = cls(module=MyModule, criterion=torch.nn.NLLLoss, verbose=0)
        new_net.initialize()
        new_net.load_params(f_params=str(tmp_path / f"{name}.pkl"), f_history=str(tmp_path / f"{name}.json"))
        new_net.fit(X, y, epochs=2)
        epochs[name] = new_net.history[:, "epoch"]
    assert epochs["ours"] == epochs["skorch"] == [1, 2]


def test_block3_continue_with_partial_fit(tmp_path, monkeypatch):
    """The guide's intent, "train for another 2 epochs": partial_fit goes on at epochs 3 and 4, from
    the loaded weights, exactly as the first net would have gone on."""
    monkeypatch.chdir(tmp_path)
    net = NeuralNet(module=MyModule, criterion=torch.nn.NLLLoss, optimizer__momentum=0.9, verbose=0)
    net.fit(X, y, epochs=2)
    net.save_params(f_params='model.pkl', f_optimizer='opt.pkl', f_history='history.json')
    rng = torch.get_rng_state()

    new_net = NeuralNet(module=MyModule, criterion=torch.nn.NLLLoss, optimizer__momentum=0.9, verbose=0)
    new_net.initialize()
    new_net.load_params(f_params='model.pkl', f_optimizer='opt.pkl', f_history='history.json')
    torch.set_rng_state(rng)  # same shuffling and dropout as the first net's going on
    new_net.partial_fit(X, y, epochs=2)

    torch.set_rng_state(rng)
    net.partial_fit(X, y, epochs=2)  # uninterrupted: 4 epochs in one net
    assert new_net.history[:, "epoch"] == net.history[:, "epoch"] == [1, 2, 3, 4]
    assert new_net.history[:, "train_loss"] == net.history[:, "train_loss"]
    assert new_net.history[:, "valid_loss"] == net.history[:, "valid_loss"]
    assert_same_state(state_of(new_net.module_), state_of(net.module_))


def test_note_history_must_be_json(tmp_path):
    """"the history must only contain JSON encodable Python data structures": numpy types are refused."""
    net = NeuralNet(module=MyModule, criterion=torch.nn.NLLLoss, max_epochs=2, verbose=0).fit(X, y)
    net.history.record("score", np.float32(0.5))
    with pytest.raises(TypeError, match=r"key 'score' of epoch 2 is a numpy.float32"):
        net.save_params(f_history=tmp_path / "history.json")
    assert not (tmp_path / "history.json").exists()
    net.history.record("score", 0.5)
    net.save_params(f_history=tmp_path / "history.json")
    assert json.loads((tmp_path / "history.json").read_text())[-1]["score"] == 0.5


def test_note_save_params_does_not_store_classes(tmp_path):
    """"save_params does not store learned attributes ... classes_ ... will be missing after
    load_params. Therefore, if you need it, you should pickle.dump the whole net.\""""
    net = NeuralNetClassifier(MyModule, lr=0.5, max_epochs=2, verbose=0).fit(X, y)
    np.testing.assert_array_equal(net.classes_, [0, 1])
    net.save_params(f_params=tmp_path / "params.pt", f_history=tmp_path / "history.json")

    new_net = NeuralNetClassifier(MyModule, lr=0.5).initialize()
    new_net.load_params(f_params=tmp_path / "params.pt", f_history=tmp_path / "history.json")
    assert not hasattr(new_net, "classes_")
    with pytest.raises(AttributeError, match="no classes_ yet"):
        new_net.classes_
    np.testing.assert_array_equal(new_net.predict(X), net.predict(X))  # the weights are there

    with open(tmp_path / "net.pkl", "wb") as f:
        pickle.dump(net, f)
    with open(tmp_path / "net.pkl", "rb") as f:
        unpickled = pickle.load(f)
    np.testing.assert_array_equal(unpickled.classes_, net.classes_)
    np.testing.assert_array_equal(unpickled.predict(X), net.predict(X))


# -- "Using callbacks" -----------------------------------------------------------------------------
def test_block4_data_and_module():
    assert X.shape == (1000, 10) and X.dtype == np.float32
    assert y.dtype == np.int64 and sorted(np.unique(y)) == [0, 1]
    module = MyModule(num_units=20)
    assert module[0].weight.shape == (20, 10) and module[3].weight.shape == (10, 20)
    out = module.eval()(torch.as_tensor(X[:5]))
    assert out.shape == (5, 2)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(5))


def first_run():
    """Block 5 of the guide, from FIRST_RUN_SEED: (cp, train_end_cp, net)."""
    torch.manual_seed(FIRST_RUN_SEED)

    # First run

    from prefect_torch.callbacks import Checkpoint, TrainEndCheckpoint  # noqa: I001 (the guide's order)
    from prefect_torch import NeuralNetClassifier

    cp = Checkpoint(dirname='exp1')
    train_end_cp = TrainEndCheckpoint(dirname='exp1')
    net = NeuralNetClassifier(
        MyModule, lr=0.5, callbacks=[cp, train_end_cp]
    )

    _ = net.fit(X, y)
    return cp, train_end_cp, net


EXP1_FILES = ["params.pt", "optimizer.pt", "criterion.pt", "history.json"]


def test_block5_first_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cp, train_end_cp, net = first_run()
    headers, rows = parse_table(capsys.readouterr().out)

    assert headers == ["epoch", "train_loss", "valid_acc", "valid_loss", "cp", "dur"]
    assert [int(row["epoch"]) for row in rows] == list(range(1, 11))
    for row, hist in zip(rows, net.history):
        assert row["valid_loss"] == f"{hist['valid_loss']:.4f}"
    # "Checkpoint observes valid_loss and saves the model when the metric improves", marked '+'
    improved = epochs_where(net.history, "valid_loss_best")
    assert plus_epochs(rows) == improved == epochs_where(net.history, "event_cp")
    assert improved[0] == 1 and improved == [e for e in range(1, 11)
                                             if net.history[e - 1, "valid_loss"]
                                             == min(net.history[:e, "valid_loss"])]
    best = improved[-1]
    assert best < 10  # FIRST_RUN_SEED: the last epochs did not improve, as in the guide

    exp1 = tmp_path / "exp1"
    for name in EXP1_FILES:
        assert (exp1 / name).stat().st_size > 0
        assert (exp1 / f"train_end_{name}").stat().st_size > 0
    # the checkpoint holds the model of the last improvement: its history ends there, its weights are
    # those of a net trained for `best` epochs, and its optimizer/criterion files are state dicts
    assert [row["epoch"] for row in json.loads((exp1 / "history.json").read_text())] == list(range(1, best + 1))
    assert_same_state(torch.load(exp1 / "params.pt", weights_only=True), state_of(replay(best, FIRST_RUN_SEED).module_))
    assert torch.load(exp1 / "optimizer.pt", weights_only=True)["param_groups"][0]["lr"] == 0.5
    assert torch.load(exp1 / "criterion.pt", weights_only=True) == {}  # NLLLoss has no state
    # TrainEndCheckpoint saved the end of training (epoch 10)
    assert json.loads((exp1 / "train_end_history.json").read_text()) == json.loads(json.dumps(net.history))
    assert_same_state(torch.load(exp1 / "train_end_params.pt", weights_only=True), state_of(net.module_))
    assert cp.store().latest_verified().epoch == best
    assert train_end_cp.store().latest_verified().epoch == 10


def test_block6_resume_from_best_checkpoint(tmp_path, monkeypatch, capsys, loaded_states):
    monkeypatch.chdir(tmp_path)
    from prefect_torch.callbacks import Checkpoint  # imported by the guide's block 5
    _, _, first = first_run()
    best = epochs_where(first.history, "event_cp")[-1]
    checkpointed = torch.load("exp1/params.pt", weights_only=True)
    capsys.readouterr()

    from prefect_torch.callbacks import LoadInitState

    cp = Checkpoint(dirname='exp1')
    load_state = LoadInitState(cp)
    net = NeuralNetClassifier(
        MyModule, lr=0.1, callbacks=[cp, load_state]
    )

    _ = net.fit(X, y)

    headers, rows = parse_table(capsys.readouterr().out)
    assert "cp" in headers
    # "the previous checkpoint was created at the end of epoch <best>, so the second run resumes from <best+1>"
    assert [int(row["epoch"]) for row in rows] == list(range(best + 1, best + 11))
    assert load_state.loaded_epoch_ == best
    assert [epoch for epoch, _ in loaded_states] == [best]
    assert_same_state(loaded_states[0][1], checkpointed)  # it started from the checkpointed weights
    assert_history_prefix(net.history, first.history, best)
    assert net.history[:, "epoch"] == list(range(1, best + 11))
    # the new run's improvements are measured against the loaded run's best, and marked '+'
    assert plus_epochs(rows) == epochs_where(net.history[best:], "valid_loss_best") \
        == epochs_where(net.history[best:], "event_cp")
    # the checkpoint in exp1 moved on to this run's last improvement
    last = epochs_where(net.history, "event_cp")[-1]
    assert len(json.loads(open("exp1/history.json").read())) == last
    assert cp.store().latest_verified().epoch == last


def test_block6_resumed_run_trains_with_the_lower_learning_rate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from prefect_torch.callbacks import Checkpoint

    first_run()
    cp = Checkpoint(dirname='exp1')
    load_state = LoadInitState(cp)
    net = NeuralNetClassifier(MyModule, lr=0.1, callbacks=[cp, load_state], verbose=0)
    _ = net.fit(X, y)
    assert load_state.loaded_epoch_ is not None
    assert net.lr == 0.1
    assert [group["lr"] for group in net.optimizer_.param_groups] == [0.1]


def test_block7_resume_from_train_end_checkpoint(tmp_path, monkeypatch, capsys, loaded_states):
    monkeypatch.chdir(tmp_path)
    from prefect_torch.callbacks import Checkpoint, LoadInitState

    _, train_end_cp, first = first_run()
    # the guide's block 6 ran in between, on the exp1 checkpoint without prefix
    cp = Checkpoint(dirname='exp1')
    NeuralNetClassifier(MyModule, lr=0.1, callbacks=[cp, LoadInitState(cp)]).fit(X, y)
    before = {name: (tmp_path / "exp1" / name).read_bytes()
              for name in EXP1_FILES + [f"train_end_{n}" for n in EXP1_FILES]}
    loaded_states.clear()
    capsys.readouterr()

    cp_from_final = Checkpoint(dirname='exp1', fn_prefix='from_train_end_')
    load_state = LoadInitState(train_end_cp)
    net = NeuralNetClassifier(
        MyModule, lr=0.1, callbacks=[cp_from_final, load_state]
    )

    _ = net.fit(X, y)

    headers, rows = parse_table(capsys.readouterr().out)
    assert "cp" in headers
    # "training started at epoch 11, continuing from the end of the first run which ended at epoch 10"
    assert [int(row["epoch"]) for row in rows] == list(range(11, 21))
    assert load_state.loaded_epoch_ == 10
    assert_same_state(loaded_states[0][1], state_of(first.module_))
    assert_history_prefix(net.history, first.history, 10)
    assert plus_epochs(rows) == epochs_where(net.history[10:], "event_cp")
    # files prefixed 'from_train_end_' appeared; the other checkpoints were not overridden
    exp1 = tmp_path / "exp1"
    for name in EXP1_FILES:
        assert (exp1 / f"from_train_end_{name}").stat().st_size > 0
    assert {name: (exp1 / name).read_bytes() for name in before} == before
    last = epochs_where(net.history, "event_cp")[-1]
    saved_history = json.loads((exp1 / "from_train_end_history.json").read_text())
    assert [row["epoch"] for row in saved_history] == list(range(1, last + 1))
    assert cp_from_final.store().latest_verified().epoch == last


def exp2_run():
    """Block 8 of the guide: (cp, load_state, net)."""
    from prefect_torch.callbacks import Checkpoint, LoadInitState

    cp = Checkpoint(dirname='exp2')
    load_state = LoadInitState(cp)
    net = NeuralNetClassifier(
        MyModule, lr=0.5,
        callbacks=[cp, load_state],
        module__num_units=20,
    )

    _ = net.fit(X, y)
    return cp, load_state, net


def test_block8_new_experiment_exp2(tmp_path, monkeypatch, capsys, loaded_states):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(EXP2_SEED)
    cp, load_state, net = exp2_run()

    headers, rows = parse_table(capsys.readouterr().out)
    assert "cp" in headers
    assert [int(row["epoch"]) for row in rows] == list(range(1, 11))
    # "Since this is the first run, the LoadInitState callback does not do anything"
    assert load_state.loaded_epoch_ is None and [e for e, _ in loaded_states] == [None]
    assert plus_epochs(rows) == epochs_where(net.history, "valid_loss_best") == epochs_where(net.history, "event_cp")
    exp2 = tmp_path / "exp2"
    for name in EXP1_FILES:
        assert (exp2 / name).stat().st_size > 0
    assert not (tmp_path / "exp1").exists()
    assert torch.load(exp2 / "params.pt", weights_only=True)["0.weight"].shape == (20, 10)


def test_block8_run_again_resumes(tmp_path, monkeypatch, capsys, loaded_states):
    """"If we were to run the above script again, the LoadInitState callback will load the model from
    the checkpoint": the second run continues at the epoch after the last checkpoint, from its weights."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(EXP2_SEED)
    _, _, first = exp2_run()
    last = epochs_where(first.history, "event_cp")[-1]
    assert last < 10  # EXP2_SEED: as in the guide, the last checkpoint is an earlier epoch
    checkpointed = torch.load("exp2/params.pt", weights_only=True)
    capsys.readouterr()
    loaded_states.clear()

    torch.manual_seed(12345)  # another process: the train state restores the generators
    _, load_state, net = exp2_run()

    _, rows = parse_table(capsys.readouterr().out)
    assert [int(row["epoch"]) for row in rows] == list(range(last + 1, last + 11))
    assert load_state.loaded_epoch_ == last
    assert_same_state(loaded_states[0][1], checkpointed)
    assert_history_prefix(net.history, first.history, last)
    # the weights continue: with the same lr and restored random generators, the epochs after the
    # checkpoint repeat the first run's epochs after it exactly
    for epoch in range(last + 1, 11):
        for key in ("train_loss", "valid_loss", "valid_acc"):
            assert net.history[epoch - 1, key] == first.history[epoch - 1, key], (epoch, key)


def test_block9_predict_with_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(EXP2_SEED)
    cp, _, first = exp2_run()
    last = epochs_where(first.history, "event_cp")[-1]

    net = NeuralNetClassifier(
        MyModule, lr=0.5, module__num_units=20,
    )
    net.initialize()
    net.load_params(checkpoint=cp)

    y_pred = net.predict(X)

    # "the last checkpoint was created at epoch <last>, we can load this checkpoint to predict with it":
    # the predictions are those of the model after epoch <last> (a net trained that long from the same seed)
    at_checkpoint = replay(last, EXP2_SEED, module__num_units=20)
    np.testing.assert_array_equal(net.predict_proba(X), at_checkpoint.predict_proba(X))
    np.testing.assert_array_equal(y_pred, at_checkpoint.predict(X))
    # ... and of the checkpoint's params.pt loaded by hand into a plain torch module
    module = MyModule(num_units=20)
    module.load_state_dict(torch.load("exp2/params.pt", weights_only=True))
    with torch.no_grad():
        np.testing.assert_array_equal(y_pred, module.eval()(torch.as_tensor(X)).argmax(dim=1).numpy())
    # not those of the model at the end of training (epoch 10)
    assert not np.array_equal(net.predict_proba(X), first.predict_proba(X))
    # the checkpoint's history came along; classes_ did not (see the note on save_params)
    assert net.history[:, "epoch"] == list(range(1, last + 1))
    assert not hasattr(net, "classes_")


def test_block9_load_params_checkpoint_initializes_when_needed(tmp_path, monkeypatch):
    """"it is important to initialize the neural net" -- load_params(checkpoint=...) also does it itself
    (skorch PR #563), and says clearly when there is no checkpoint yet."""
    monkeypatch.chdir(tmp_path)
    from prefect_torch.callbacks import Checkpoint

    torch.manual_seed(EXP2_SEED)
    cp, _, first = exp2_run()
    net = NeuralNetClassifier(MyModule, lr=0.5, module__num_units=20)
    net.load_params(checkpoint=cp)
    assert net.initialized_
    assert_same_state(state_of(net.module_), torch.load("exp2/params.pt", weights_only=True))

    empty = Checkpoint(dirname='exp3')
    with pytest.raises(FileNotFoundError, match=r"no checkpoint in 'exp3'"):
        NeuralNetClassifier(MyModule, module__num_units=20).initialize().load_params(checkpoint=empty)
