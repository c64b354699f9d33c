"""save_params / load_params and pickling in depth: targets, parts, round trips, errors, compatibility."""
import io
import json
import pathlib
import pickle
import uuid

import fsspec
import joblib
import numpy as np
import pytest
import torch
from torch import nn

from helpers import make_net
from prefect_torch import History, NeuralNet, NeuralNetClassifier, NotInitializedError
from prefect_torch.callbacks import EpochScoring
from prefect_torch.examples import MyModule


# -- helpers ----------------------------------------------------------------------------------------
def state_of(part):
    return {k: v.detach().clone() for k, v in part.state_dict().items()}


def assert_same_state(a, b):
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def differs(a, b):
    return any(not torch.equal(a[k], b[k]) for k in a)


def assert_same_optimizer_state(opt_a, opt_b):
    a, b = opt_a.state_dict(), opt_b.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert sorted(a["state"]) == sorted(b["state"])
    for index in a["state"]:
        assert sorted(a["state"][index]) == sorted(b["state"][index])
        for key, value in a["state"][index].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][index][key])), (index, key)


def fitted(data, seed=0, **kwargs):
    torch.manual_seed(seed)
    return make_net(**kwargs).fit(*data)


def fresh(**kwargs):
    """A new initialized net with other random weights than ``fitted``'s."""
    torch.manual_seed(123)
    return make_net(**kwargs).initialize()


def files_in(folder):
    return sorted(p.name for p in pathlib.Path(folder).iterdir())


class SmallModule(nn.Sequential):
    """Another architecture: one linear layer to 2 classes."""

    def __init__(self):
        super().__init__(nn.Linear(10, 2), nn.Softmax(dim=-1))


class WrappedStateDict(dict):
    """A state dict in a class of its own: torch.load(weights_only=True) must refuse to build it."""


SIDE_EFFECTS = []


def record_side_effect(tag):
    SIDE_EFFECTS.append(tag)
    return {}


class Payload:
    """Unpickling this calls record_side_effect: a stand-in for code a malicious file would run."""

    def __reduce__(self):
        return record_side_effect, ("payload ran",)


def zero_score(net, X, y):
    return 0.0


class TwoModuleNet(NeuralNetClassifier):
    """A net with a second, custom module ``module2_`` (skorch: saved with ``f_module2``)."""

    def initialize_module(self):
        super().initialize_module()
        self.module2_ = nn.Linear(3, 4)
        return self


# -- targets ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("as_path", [str, pathlib.Path], ids=["str", "pathlib"])
def test_save_load_all_parts_to_paths(data, tmp_path, as_path):
    net = fitted(data, optimizer=torch.optim.Adam, lr=0.01)
    paths = {key: as_path(tmp_path / name) for key, name in [
        ("f_params", "params.pt"), ("f_optimizer", "optimizer.pt"),
        ("f_criterion", "criterion.pt"), ("f_history", "history.json")]}
    net.save_params(**paths)
    assert files_in(tmp_path) == ["criterion.pt", "history.json", "optimizer.pt", "params.pt"]

    new = fresh(optimizer=torch.optim.Adam, lr=0.01)
    assert differs(state_of(new.module_), state_of(net.module_))
    new.load_params(**paths)
    assert_same_state(state_of(new.module_), state_of(net.module_))
    assert_same_optimizer_state(new.optimizer_, net.optimizer_)
    assert new.history == net.history
    np.testing.assert_array_equal(new.predict_proba(data[0]), net.predict_proba(data[0]))


def test_save_replaces_existing_file_atomically(data, tmp_path):
    net = fitted(data)
    target = tmp_path / "params.pt"
    target.write_bytes(b"old content")
    net.save_params(f_params=target)
    assert files_in(tmp_path) == ["params.pt"]  # no temporary file left behind
    assert_same_state(torch.load(target, weights_only=True), state_of(net.module_))


def test_failed_write_keeps_the_old_file(data, tmp_path, monkeypatch):
    net = fitted(data)
    target = tmp_path / "params.pt"
    net.save_params(f_params=target)
    good = target.read_bytes()
    real_save = torch.save

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        net.save_params(f_params=target)
    monkeypatch.setattr(torch, "save", real_save)
    assert target.read_bytes() == good
    assert files_in(tmp_path) == ["params.pt"]


def test_file_objects(data):
    net = fitted(data, optimizer=torch.optim.Adam, lr=0.01)
    f_params, f_optimizer, f_criterion, f_history = io.BytesIO(), io.BytesIO(), io.BytesIO(), io.StringIO()
    net.save_params(f_params=f_params, f_optimizer=f_optimizer, f_criterion=f_criterion, f_history=f_history)
    assert json.loads(f_history.getvalue()) == list(net.history)
    assert not f_params.closed  # a caller's file object stays open
    for f in (f_params, f_optimizer, f_criterion, f_history):
        f.seek(0)

    new = fresh(optimizer=torch.optim.Adam, lr=0.01)
    new.load_params(f_params=f_params, f_optimizer=f_optimizer, f_criterion=f_criterion, f_history=f_history)
    assert_same_state(state_of(new.module_), state_of(net.module_))
    assert_same_optimizer_state(new.optimizer_, net.optimizer_)
    assert new.history == net.history


def test_history_loads_from_a_binary_file(data):
    net = fitted(data)
    new = fresh()
    new.load_params(f_history=io.BytesIO(json.dumps(list(net.history)).encode()))
    assert new.history == net.history


def test_history_saves_to_a_binary_file(data):
    net = fitted(data)
    buffer = io.BytesIO()
    net.save_params(f_history=buffer)
    assert json.loads(buffer.getvalue().decode()) == list(net.history)


def test_fsspec_memory_urls(data):
    net = fitted(data, optimizer=torch.optim.Adam, lr=0.01)
    fs = fsspec.filesystem("memory")
    root = f"memory://prefect-torch-test-{uuid.uuid4().hex}"
    try:
        urls = {"f_params": f"{root}/run/params.pt", "f_optimizer": f"{root}/run/optimizer.pt",
                "f_criterion": f"{root}/run/criterion.pt", "f_history": f"{root}/run/history.json"}
        net.save_params(**urls)
        names = sorted(path.rsplit("/", 1)[-1] for path in fs.ls(f"{root}/run", detail=False))
        assert names == ["criterion.pt", "history.json", "optimizer.pt", "params.pt"]
        assert json.loads(fs.cat(urls["f_history"])) == list(net.history)
        saved = torch.load(io.BytesIO(fs.cat(urls["f_params"])), weights_only=True)
        assert_same_state(saved, state_of(net.module_))

        new = fresh(optimizer=torch.optim.Adam, lr=0.01)
        new.load_params(**urls)
        assert_same_state(state_of(new.module_), state_of(net.module_))
        assert_same_optimizer_state(new.optimizer_, net.optimizer_)
        assert new.history == net.history
    finally:
        if fs.exists(root):
            fs.rm(root, recursive=True)


# -- parts ------------------------------------------------------------------------------------------------
def test_custom_module_with_f_module2(data, tmp_path):
    net = TwoModuleNet(MyModule, max_epochs=1, verbose=0).fit(*data)
    with torch.no_grad():
        net.module2_.weight.normal_()
    net.save_params(f_params=tmp_path / "params.pt", f_module2=tmp_path / "module2.pt")
    assert files_in(tmp_path) == ["module2.pt", "params.pt"]
    assert list(torch.load(tmp_path / "module2.pt", weights_only=True)) == ["weight", "bias"]

    torch.manual_seed(7)
    new = TwoModuleNet(MyModule, verbose=0).initialize()
    assert differs(state_of(new.module2_), state_of(net.module2_))
    untouched = state_of(new.module2_)
    new.load_params(f_params=tmp_path / "params.pt")  # without f_module2: module2_ stays as it is
    assert_same_state(state_of(new.module2_), untouched)
    new.load_params(f_module2=tmp_path / "module2.pt")
    assert_same_state(state_of(new.module2_), state_of(net.module2_))
    assert_same_state(state_of(new.module_), state_of(net.module_))


def test_f_module_is_another_name_for_f_params(data, tmp_path):
    net = fitted(data)
    net.save_params(f_module=tmp_path / "module.pt")
    assert_same_state(torch.load(tmp_path / "module.pt", weights_only=True), state_of(net.module_))
    new = fresh()
    new.load_params(f_module=tmp_path / "module.pt")
    assert_same_state(state_of(new.module_), state_of(net.module_))


def test_adam_state_round_trip(data, tmp_path):
    net = fitted(data, optimizer=torch.optim.Adam, lr=0.01, optimizer__betas=(0.8, 0.99))
    state = net.optimizer_.state_dict()["state"]
    assert state and all({"step", "exp_avg", "exp_avg_sq"} <= set(s) for s in state.values())
    net.save_params(f_optimizer=tmp_path / "optimizer.pt")

    new = fresh(optimizer=torch.optim.Adam, lr=0.01, optimizer__betas=(0.8, 0.99))
    assert new.optimizer_.state_dict()["state"] == {}
    new.load_params(f_optimizer=tmp_path / "optimizer.pt")
    assert_same_optimizer_state(new.optimizer_, net.optimizer_)
    # the loaded state belongs to the new net's own parameters
    params = list(new.module_.parameters())
    assert set(id(p) for p in new.optimizer_.state) == set(id(p) for p in params)


def test_criterion_buffer_round_trip(data, tmp_path):
    kwargs = dict(module=nn.Linear, module__in_features=10, module__out_features=2,
                  criterion=nn.CrossEntropyLoss, verbose=0, max_epochs=1)
    net = NeuralNet(criterion__weight=torch.tensor([1.0, 3.0]), **kwargs).fit(*data)
    assert list(net.criterion_.state_dict()) == ["weight"]  # a weighted loss keeps its weight as a buffer
    net.save_params(f_criterion=tmp_path / "criterion.pt")

    new = NeuralNet(criterion__weight=torch.tensor([1.0, 1.0]), **kwargs).initialize()
    new.load_params(f_criterion=tmp_path / "criterion.pt")
    assert torch.equal(new.criterion_.weight, torch.tensor([1.0, 3.0]))


def test_history_round_trip(data, tmp_path):
    net = fitted(data)
    net.history.record("note", {"text": "é", "values": [1, 2.5, None, True]})
    net.save_params(f_history=tmp_path / "history.json")
    new = fresh()
    new.load_params(f_history=tmp_path / "history.json")
    assert isinstance(new.history, History)
    assert new.history == net.history
    assert new.history[:, "epoch"] == [1, 2]
    assert new.history[-1, "batches", -1, "valid_loss"] == net.history[-1, "batches", -1, "valid_loss"]
    assert new.history[-1, "note"] == {"text": "é", "values": [1, 2.5, None, True]}


def test_continue_training_after_load_equals_uninterrupted(data, tmp_path):
    """The guide's "continue training": save at epoch 2 with optimizer and history, load into a new net,
    train 2 more epochs (partial_fit) -- the same as training one net for 4 epochs."""
    kwargs = dict(optimizer=torch.optim.Adam, lr=0.01)
    files = dict(f_params=tmp_path / "model.pkl", f_optimizer=tmp_path / "opt.pkl",
                 f_history=tmp_path / "history.json")
    net = fitted(data, **kwargs)
    net.save_params(**files)
    rng = torch.get_rng_state()

    def resumed(keys):
        new = fresh(**kwargs)
        new.load_params(**{k: files[k] for k in keys})
        torch.set_rng_state(rng)  # the random numbers the first net would draw next
        return new.partial_fit(*data, epochs=2)

    new = resumed(["f_params", "f_optimizer", "f_history"])
    without_optimizer = resumed(["f_params", "f_history"])
    torch.set_rng_state(rng)
    net.partial_fit(*data, epochs=2)

    assert new.history[:, "epoch"] == net.history[:, "epoch"] == [1, 2, 3, 4]
    for key in ("train_loss", "valid_loss", "valid_acc"):
        assert new.history[:, key] == net.history[:, key]
    assert_same_state(state_of(new.module_), state_of(net.module_))
    assert_same_optimizer_state(new.optimizer_, net.optimizer_)
    # the optimizer state matters: without it, Adam starts over and training takes another path
    assert without_optimizer.history[2:, "train_loss"] != net.history[2:, "train_loss"]


# -- errors ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["save_params", "load_params"])
def test_uninitialized_net_raises(tmp_path, method):
    net = make_net()
    with pytest.raises(NotInitializedError, match=r"uninitialized NeuralNetClassifier.*initialize\(\)"):
        getattr(net, method)(f_params=tmp_path / "params.pt")
    assert files_in(tmp_path) == []


def test_load_other_num_units_names_mis_shaped_keys(data, tmp_path):
    net = fitted(data)
    net.save_params(f_params=tmp_path / "params.pt")
    other = fresh(module__num_units=20)
    before = state_of(other.module_)
    with pytest.raises(ValueError) as info:
        other.load_params(f_params=tmp_path / "params.pt")
    message = str(info.value)
    assert "different architecture" in message and "params.pt" in message
    assert "0.weight (10, 10) vs (20, 10)" in message
    assert "0.bias (10,) vs (20,)" in message and "3.weight (10, 10) vs (10, 20)" in message
    assert "missing" not in message and "unexpected" not in message
    assert_same_state(state_of(other.module_), before)  # nothing was half-loaded


def test_load_other_module_class_names_missing_and_unexpected_keys(data, tmp_path):
    net = fitted(data)
    net.save_params(f_params=tmp_path / "my.pt")
    small = fresh(module=SmallModule)
    small.save_params(f_params=tmp_path / "small.pt")

    with pytest.raises(ValueError, match=r"unexpected keys: 3\.weight, 3\.bias, 4\.weight, 4\.bias"):
        fresh(module=SmallModule).load_params(f_params=tmp_path / "my.pt")
    with pytest.raises(ValueError) as info:
        fresh().load_params(f_params=tmp_path / "small.pt")
    message = str(info.value)
    assert "missing keys: 3.weight, 3.bias, 4.weight, 4.bias" in message
    assert "0.weight (2, 10) vs (10, 10)" in message


def test_non_json_history_names_key_and_epoch_and_keeps_old_file(data, tmp_path):
    net = fitted(data)
    target = tmp_path / "history.json"
    net.save_params(f_history=target)
    good = target.read_bytes()
    net.history.record("f1", np.float32(0.5))
    with pytest.raises(TypeError, match=r"key 'f1' of epoch 2 is a numpy\.float32"):
        net.save_params(f_history=target)
    assert target.read_bytes() == good
    assert files_in(tmp_path) == ["history.json"]


def test_non_json_batch_value_names_key_and_epoch(data, tmp_path):
    net = fitted(data)
    net.history[0]["batches"][0]["grad_norm"] = torch.tensor(1.0)
    with pytest.raises(TypeError, match=r"key 'grad_norm' of batch \d+ of epoch 1 is a torch\.Tensor"):
        net.save_params(f_history=tmp_path / "history.json")
    assert files_in(tmp_path) == []


def test_non_json_history_writes_no_file_at_all(data, tmp_path):
    net = fitted(data)
    net.history.record("f1", np.float32(0.5))
    with pytest.raises(TypeError, match="key 'f1' of epoch 2"):
        net.save_params(f_params=tmp_path / "params.pt", f_history=tmp_path / "history.json")
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("method", ["save_params", "load_params"])
def test_unknown_part_lists_the_parts(data, tmp_path, method):
    net = fitted(data)
    with pytest.raises(AttributeError, match=r"f_foo=.*no module, criterion or optimizer named 'foo_'.*"
                                             r"it has: criterion_, module_, optimizer_"):
        getattr(net, method)(f_foo=tmp_path / "foo.pt")
    assert files_in(tmp_path) == []


def test_unknown_part_writes_no_file_at_all(data, tmp_path):
    net = fitted(data)
    with pytest.raises(AttributeError, match="'foo_'"):
        net.save_params(f_params=tmp_path / "params.pt", f_foo=tmp_path / "foo.pt")
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("method", ["save_params", "load_params"])
def test_non_f_argument_raises_type_error(data, tmp_path, method):
    net = fitted(data)
    with pytest.raises(TypeError, match=r"unexpected argument 'params'.*named f_<part>, e\.g\. 'f_params'"):
        getattr(net, method)(params=tmp_path / "params.pt")
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("method", ["save_params", "load_params"])
def test_f_params_with_f_module_raises(data, tmp_path, method):
    net = fitted(data)
    with pytest.raises(TypeError, match="both f_params and f_module"):
        getattr(net, method)(f_params=tmp_path / "a.pt", f_module=tmp_path / "b.pt")
    assert files_in(tmp_path) == []


def test_weights_only_refuses_other_pickles(data, tmp_path):
    net = fitted(data)
    wrapped = tmp_path / "wrapped.pt"
    torch.save(WrappedStateDict(net.module_.state_dict()), wrapped)
    new = fresh()
    before = state_of(new.module_)
    with pytest.raises(pickle.UnpicklingError, match="(?i)weights.only"):
        new.load_params(f_params=wrapped)
    assert_same_state(state_of(new.module_), before)

    new.torch_load_kwargs = {"weights_only": False}  # a file one trusts
    new.load_params(f_params=wrapped)
    assert_same_state(state_of(new.module_), state_of(net.module_))


def test_weights_only_runs_no_code_from_the_file(data, tmp_path):
    net = fitted(data)
    path = tmp_path / "payload.pt"
    torch.save(Payload(), path)
    SIDE_EFFECTS.clear()
    with pytest.raises(pickle.UnpicklingError):
        net.load_params(f_params=path)
    assert SIDE_EFFECTS == []
    # the same file with weights_only=False does run it (so the default is what protects)
    net.torch_load_kwargs = {"weights_only": False}
    with pytest.raises(ValueError, match="cannot load"):
        net.load_params(f_params=path)
    assert SIDE_EFFECTS == ["payload ran"]


def test_torch_load_kwargs_as_constructor_argument(data, tmp_path):
    net = fitted(data)
    torch.save(WrappedStateDict(net.module_.state_dict()), tmp_path / "wrapped.pt")
    torch.manual_seed(5)
    new = make_net(torch_load_kwargs={"weights_only": False}).initialize()
    new.load_params(f_params=tmp_path / "wrapped.pt")
    assert_same_state(state_of(new.module_), state_of(net.module_))


# -- pickling ------------------------------------------------------------------------------------------
def test_fitted_classifier_pickles_and_joblib_dumps(data, tmp_path):
    net = fitted(data)
    np.testing.assert_array_equal(net.classes_, [0, 1])
    unpickled = pickle.loads(pickle.dumps(net))
    joblib.dump(net, tmp_path / "net.joblib")
    from_joblib = joblib.load(tmp_path / "net.joblib")
    for copy in (unpickled, from_joblib):
        np.testing.assert_array_equal(copy.classes_, net.classes_)
        np.testing.assert_array_equal(copy.predict_proba(data[0]), net.predict_proba(data[0]))
        assert copy.history == net.history
        assert_same_optimizer_state(copy.optimizer_, net.optimizer_)
        assert copy.module_ is not net.module_
    # the optimizer of the copy drives the copy's own parameters: training it leaves the original alone
    original = state_of(net.module_)
    unpickled.partial_fit(*data, epochs=1)
    assert len(unpickled.history) == 3
    assert differs(state_of(unpickled.module_), original)
    assert_same_state(state_of(net.module_), original)


def test_lambda_predict_nonlinearity_refuses_to_pickle(data):
    net = fitted(data, predict_nonlinearity=lambda x: x)
    with pytest.raises(pickle.PicklingError, match=r"predict_nonlinearity is '\S*<lambda>'.*save_params"):
        pickle.dumps(net)
    unfitted = make_net(predict_nonlinearity=lambda x: x)
    with pytest.raises(pickle.PicklingError, match="save_params"):
        pickle.dumps(unfitted)


def test_local_function_in_callback_refuses_to_pickle(data):
    def local_score(net, X, y):
        return 0.0

    net = fitted(data, callbacks=[EpochScoring(lambda net, X, y: 0.0, name="zero")])
    with pytest.raises(pickle.PicklingError, match=r"callback 'EpochScoring': scoring.*<lambda>.*save_params"):
        pickle.dumps(net)
    with pytest.raises(pickle.PicklingError, match=r"local_score.*save_params"):
        joblib.dump(fitted(data, callbacks=[EpochScoring(local_score, name="zero")]), io.BytesIO())
    # a module-level function pickles fine
    ok = fitted(data, callbacks=[EpochScoring(zero_score, name="zero")])
    assert pickle.loads(pickle.dumps(ok)).history[:, "zero"] == [0.0, 0.0]


def test_lambda_in_callbacks_argument_of_unfitted_net(data):
    net = make_net(callbacks=[EpochScoring(lambda net, X, y: 0.0, name="zero")])
    with pytest.raises(pickle.PicklingError, match=r"EpochScoring.*save_params"):
        pickle.dumps(net)


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a machine without CUDA")
def test_net_pickled_with_cuda_device_unpickles_on_cpu(data):
    net = fitted(data)
    expected = net.predict_proba(data[0])
    net.device = "cuda"  # as if it had been trained on a GPU
    blob = pickle.dumps(net)
    with pytest.warns(UserWarning, match=r"pickled with device='cuda'.*loaded onto 'cpu'"):
        unpickled = pickle.loads(blob)
    assert unpickled.device == "cpu"
    assert all(p.device.type == "cpu" for p in unpickled.module_.parameters())
    np.testing.assert_array_equal(unpickled.predict_proba(data[0]), expected)
    unpickled.partial_fit(*data, epochs=1)  # and it trains on the CPU
    assert len(unpickled.history) == 3


# -- compatibility with skorch's files --------------------------------------------------------------------
def test_saved_files_are_plain_state_dict_and_json_list(data, tmp_path):
    net = fitted(data)
    net.save_params(f_params=tmp_path / "params.pt", f_optimizer=tmp_path / "optimizer.pt",
                    f_history=tmp_path / "history.json")
    params = torch.load(tmp_path / "params.pt", weights_only=True)
    assert isinstance(params, dict)
    assert list(params) == list(net.module_.state_dict())
    assert all(isinstance(v, torch.Tensor) for v in params.values())
    optimizer = torch.load(tmp_path / "optimizer.pt", weights_only=True)
    assert set(optimizer) == {"state", "param_groups"}
    history = json.loads((tmp_path / "history.json").read_text(encoding="utf-8"))
    assert isinstance(history, list) and [row["epoch"] for row in history] == [1, 2]
    assert all(isinstance(row["batches"], list) for row in history)


def test_files_interchange_with_skorch(data, tmp_path):
    skorch = pytest.importorskip("skorch")
    net = fitted(data)
    ours = {k: str(tmp_path / f"ours_{k}") for k in ("f_params", "f_optimizer", "f_history")}
    net.save_params(**ours)
    theirs = skorch.NeuralNetClassifier(MyModule, lr=0.5, verbose=0).initialize()
    theirs.load_params(**ours)
    for name, tensor in net.module_.state_dict().items():  # the very same weights...
        assert torch.equal(theirs.module_.state_dict()[name], tensor), name
    assert theirs.optimizer_.state_dict()["param_groups"] == net.optimizer_.state_dict()["param_groups"]
    # ...predict the same; not bit for bit: skorch collates each batch into a fresh tensor, whose
    # alignment can pick another CPU kernel than a slice of the whole array (seen: 3e-8 apart)
    np.testing.assert_allclose(theirs.predict_proba(data[0]), net.predict_proba(data[0]), rtol=1e-6, atol=1e-7)
    assert theirs.history[:, "valid_loss"] == net.history[:, "valid_loss"]

    torch.manual_seed(3)
    skorch_net = skorch.NeuralNetClassifier(MyModule, lr=0.5, max_epochs=2, verbose=0).fit(*data)
    files = {k: str(tmp_path / f"skorch_{k}") for k in ("f_params", "f_optimizer", "f_history")}
    skorch_net.save_params(**files)
    new = fresh()
    new.load_params(**files)
    for name, tensor in skorch_net.module_.state_dict().items():
        assert torch.equal(new.module_.state_dict()[name], tensor), name
    np.testing.assert_allclose(new.predict_proba(data[0]), skorch_net.predict_proba(data[0]), rtol=1e-6, atol=1e-7)
    assert new.history[:, "valid_loss"] == skorch_net.history[:, "valid_loss"]
    assert_same_optimizer_state(new.optimizer_, skorch_net.optimizer_)


def test_nothing_to_save_or_load(data, capsys):
    net = fitted(data, verbose=1)
    capsys.readouterr()
    net.save_params()
    net.load_params()
    assert capsys.readouterr().out.splitlines() == ["Nothing to save", "Nothing to load"]
