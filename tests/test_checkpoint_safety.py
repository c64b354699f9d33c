"""What a checkpoint must never do: load a file that only a pickle-running loader could read,
show or store credentials, or make diverged weights the version every resume continues from."""
from __future__ import annotations

import datetime
import math
import pickle
import uuid
import warnings

import pytest
import torch

from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Callback, Checkpoint, LoadInitState, TrainEndCheckpoint
from prefect_torch.checkpoint import (
    CheckpointCorruptError,
    CheckpointFallbackWarning,
    CheckpointSaveWarning,
    PendingFile,
)
from prefect_torch.examples import MyModule
from prefect_torch.persistence import history_json

SECRETS = ("AKIA-TOP-LEVEL", "nested-s3cr3t", "session-t0ken", "pass-w0rd")


def options():
    """Storage options with secrets at several depths and a setting that is not secret."""
    return {"key": SECRETS[0], "anon": False,
            "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "aws_secret_access_key": SECRETS[1],
                              "extra": [{"aws_session_token": SECRETS[2]}]},
            "config_kwargs": {"proxies": {"password": SECRETS[3]}}}


def assert_no_secret(text):
    assert not [s for s in SECRETS if s in text], text


def make_net(cp, max_epochs, *callbacks, **kwargs):
    return NeuralNetClassifier(MyModule, lr=0.5, max_epochs=max_epochs, batch_size=64, verbose=0,
                               callbacks=[*callbacks, cp], **kwargs)


# -- files that pass their hash but do not load ------------------------------------------------
def commit_copy(store, epoch, replace):
    """Commit a copy of the current version as epoch ``epoch``, with files replaced by ``replace``
    (name -> write function): its hashes match, since they are taken as it is written."""
    current = store.latest_verified()
    files = []
    for name, entry in current.files.items():
        data = store.location.read_bytes(f"{current.folder}/{name}")
        files.append(PendingFile(name, entry.key, replace.get(name, lambda f, data=data: f.write(data))))
    version = store.commit(files, epoch=epoch)
    store.wait()
    return version


def params_with_a_global(store):
    """params.pt with a datetime in it: ``torch.load(weights_only=True)`` refuses that global."""
    current = store.latest_verified()
    state = torch.load(store.source(current, "params.pt"), weights_only=True)
    state["saved_at"] = datetime.datetime(2026, 1, 1)
    return lambda f: torch.save(state, f)


@pytest.fixture
def two_epochs(tmp_path, data):
    cp = Checkpoint(monitor=None, dirname=str(tmp_path))
    net = make_net(cp, 2).fit(*data)
    return cp, {k: v.clone() for k, v in net.module_.state_dict().items()}


def test_unloadable_params_fall_back_like_a_hash_mismatch(two_epochs, data):
    cp, weights = two_epochs
    store = cp.store()
    bad = commit_copy(store, 3, {"params.pt": params_with_a_global(store)})
    assert store.latest_verified().id == bad.id  # its hashes match: only loading finds it
    fresh = make_net(cp, 1).initialize()
    with pytest.warns(CheckpointFallbackWarning, match="params.pt matches its sha256"):
        fresh.load_params(checkpoint=cp)
    assert all(torch.equal(fresh.module_.state_dict()[k], v) for k, v in weights.items())
    net = make_net(cp, 1, LoadInitState(cp))
    with pytest.warns(CheckpointFallbackWarning) as record:
        net.fit(*data)
    message = " ".join(str(w.message) for w in record if issubclass(w.category, CheckpointFallbackWarning))
    assert f"version {bad.id} (epoch 3) is damaged: params.pt matches its sha256 but cannot be loaded" in message
    assert "UnpicklingError" in message and "datetime" in message
    assert "Loading version 2 (epoch 2) instead" in message
    assert "weights_only=False" not in message
    assert net.history[:, "epoch"] == [1, 2, 3]  # resumed after epoch 2


def test_unloadable_train_state_and_history_fall_back_and_all_bad_is_corrupt(two_epochs, data):
    cp, _ = two_epochs
    store = cp.store()
    v3 = commit_copy(store, 3, {"train_state.pt": lambda f: torch.save({"rng": datetime.date(2026, 1, 1)}, f)})
    v4 = commit_copy(store, 4, {"history.json": lambda f: f.write(b'{"not": "a list of epochs"}')})
    fresh = make_net(cp, 1).initialize()
    with pytest.warns(CheckpointFallbackWarning) as record:
        fresh.load_params(checkpoint=cp)
    message = str(record[0].message)
    assert f"version {v4.id} (epoch 4) is damaged: history.json matches its sha256" in message
    assert f"version {v3.id} (epoch 3) is damaged: train_state.pt matches its sha256" in message
    assert "Loading version 2 (epoch 2) instead" in message
    assert fresh.history[:, "epoch"] == [1, 2]
    # when no version loads, the error names every bad file and loads nothing
    versions = store.read_manifest().versions
    assert [v.epoch for v in versions] == [2, 3, 4]  # keep_last=3
    for version in versions:
        path = store.location.path(f"{version.folder}/params.pt")
        with open(path, "wb") as f:  # a legitimately committed file, replaced behind our back
            torch.save({"x": datetime.date(2026, 1, 1)}, f)
        manifest = store.read_manifest()
        entry = manifest.version(version.id).files["params.pt"]
        record_ = store.location.hash(f"{version.folder}/params.pt")
        entry.size, entry.sha256 = record_.size, record_.sha256
        store.location.write_atomic(store.manifest_name, manifest.to_json())
    with pytest.raises(CheckpointCorruptError) as error:
        make_net(cp, 1).initialize().load_params(checkpoint=cp)
    text = str(error.value)
    assert "no committed version is intact" in text and "weights_only=False" not in text
    assert text.count("params.pt matches its sha256 but cannot be loaded") == 3


def test_unloadable_file_on_an_fsspec_location_falls_back(data):
    url = f"memory://safety-{uuid.uuid4().hex}/run"
    cp = Checkpoint(monitor=None, dirname=url)
    make_net(cp, 2).fit(*data)
    store = cp.store()
    commit_copy(store, 3, {"params.pt": params_with_a_global(store)})
    net = make_net(cp, 1, LoadInitState(cp))
    with pytest.warns(CheckpointFallbackWarning, match="params.pt matches its sha256 but cannot be loaded"):
        net.fit(*data)
    assert net.history[:, "epoch"] == [1, 2, 3]
    store.location.remove_tree("")


# -- credentials -----------------------------------------------------------------------------
def test_secrets_are_masked_at_any_depth_in_every_repr():
    cp = Checkpoint(dirname=f"memory://safety-{uuid.uuid4().hex}/run", storage_options=options())
    end = TrainEndCheckpoint(dirname=cp.dirname, storage_options=options())
    net = make_net(("cp", cp), 1, end, LoadInitState(cp), callbacks__cp__storage_options=options())
    texts = [repr(cp), repr(end), repr(net), repr(cp.store()), repr(cp.store().location)]
    net.initialize()
    texts += [repr(net), repr(end.checkpoint()), repr(end.store())]
    for text in texts:
        assert_no_secret(text)
    assert "'endpoint_url': 'http://127.0.0.1:9000'" in texts[0] and "'aws_secret_access_key': '***'" in texts[0]
    assert "'extra': [{'aws_session_token': '***'}]" in texts[0] and "'password': '***'" in texts[0]
    assert "key='***'" in texts[3] and "http://127.0.0.1:9000" in texts[3]
    assert "callbacks__cp__storage_options={'key': '***'" in texts[2]
    assert cp.get_params()["storage_options"] == options()  # clone and set_params get the real ones


def test_save_failure_messages_show_no_secret(tmp_path, data):
    class Unpicklable(MyModule):
        def __init__(self):
            super().__init__()
            self.hook = lambda x: x  # pickle cannot store a lambda

    cp = Checkpoint(monitor=None, dirname=f"memory://safety-{uuid.uuid4().hex}/run", f_pickle="net.pkl",
                    storage_options=options())
    net = NeuralNetClassifier(Unpicklable, max_epochs=1, verbose=0, callbacks=[cp])
    with pytest.warns(CheckpointSaveWarning) as record:
        net.fit(*data)
    assert record and all(not [s for s in SECRETS if s in str(w.message)] for w in record)


@pytest.mark.parametrize("where", ["store", "absolute path"])
def test_f_pickle_keeps_no_credentials(tmp_path, data, where):
    dirname = f"memory://safety-{uuid.uuid4().hex}/run" if where == "store" else str(tmp_path)
    target = "net.pkl" if where == "store" else str(tmp_path / "net.pkl")
    cp = Checkpoint(monitor=None, dirname=dirname, f_pickle=target, storage_options=options())
    net = make_net(("cp", cp), 1, LoadInitState(cp), callbacks__cp__storage_options=options())
    net.fit(*data)
    if where == "store":
        store = cp.store()
        with store.source(store.latest_verified(), "net.pkl") as f:
            raw = f.read()
    else:
        raw = (tmp_path / "net.pkl").read_bytes()
    for secret in SECRETS:
        assert secret.encode() not in raw
    assert b"http://127.0.0.1:9000" in raw  # settings that are not secret stay
    loaded = pickle.loads(raw)
    kept = {"anon": False, "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "extra": [{}]},
            "config_kwargs": {"proxies": {}}}
    loaded_cp = dict(loaded.callbacks_)["cp"]
    assert loaded_cp.storage_options == kept and loaded.callbacks__cp__storage_options == kept
    assert loaded_cp is next(cb for _, cb in loaded.callbacks_ if isinstance(cb, LoadInitState)).checkpoint
    assert all(torch.equal(loaded.module_.state_dict()[k], v) for k, v in net.module_.state_dict().items())
    assert cp.storage_options == options() and net.callbacks__cp__storage_options == options()  # untouched
    if where == "store":
        cp.store().location.remove_tree("")


# -- non-finite losses -----------------------------------------------------------------------
class Diverge(Callback):
    """From epoch ``at`` on, the first layer's weights are NaN: every loss after that is NaN."""

    def __init__(self, at=2):
        self.at = at

    def on_epoch_begin(self, net, **kwargs):
        if len(net.history) == self.at:
            with torch.no_grad():
                net.module_[0].weight.fill_(math.nan)


class InfiniteValidLoss(Callback):
    def on_epoch_end(self, net, **kwargs):  # runs before Checkpoint (call_order 1)
        if len(net.history) == 2:
            net.history.record("valid_loss", math.inf)


def test_non_finite_loss_is_never_committed_as_current(tmp_path, data):
    cp = Checkpoint(monitor=None, dirname=str(tmp_path))
    net = make_net(cp, 3, Diverge(at=2))
    with pytest.warns(CheckpointSaveWarning) as record:
        net.fit(*data)
    messages = [str(w.message) for w in record if issubclass(w.category, CheckpointSaveWarning)]
    assert len(messages) == 2
    assert "epoch 2 is not saved, its train_loss is nan, valid_loss is nan" in messages[0]
    assert "skip_non_finite=False" in messages[0] and "epoch 3 is not saved" in messages[1]
    assert net.history[:, "event_cp"] == [True, False, False]
    assert [row.get("checkpoint_skipped") for row in net.history] == [
        None, "train_loss is nan, valid_loss is nan", "train_loss is nan, valid_loss is nan"]
    assert "checkpoint_errors" not in net.history[-1]  # a skip is not a failed save
    history_json(net.history)  # the record is JSON-safe
    store = cp.store()
    assert [v.epoch for v in store.read_manifest().versions] == [1]
    current = store.latest_verified()
    assert current.epoch == 1
    weights = torch.load(store.source(current, "params.pt"), weights_only=True)
    assert all(torch.isfinite(w).all() for w in weights.values())
    # a resume continues from the finite weights of epoch 1
    resumed = make_net(cp, 1, LoadInitState(cp))
    resumed.fit(*data)
    assert resumed.history[:, "epoch"] == [1, 2] and math.isfinite(resumed.history[-1, "train_loss"])


def test_non_finite_valid_loss_is_skipped_and_the_opt_out_saves_it(tmp_path, data):
    cp = Checkpoint(monitor=None, dirname=str(tmp_path / "skip"))
    net = make_net(cp, 3, InfiniteValidLoss())
    with pytest.warns(CheckpointSaveWarning, match="epoch 2 is not saved, its valid_loss is inf"):
        net.fit(*data)
    assert net.history[:, "event_cp"] == [True, False, True]
    assert [v.epoch for v in cp.store().read_manifest().versions] == [1, 3]

    keep = Checkpoint(monitor=None, dirname=str(tmp_path / "keep"), skip_non_finite=False)
    net = make_net(keep, 3, Diverge(at=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointSaveWarning)
        net.fit(*data)
    assert net.history[:, "event_cp"] == [True, True, True]
    assert "checkpoint_skipped" not in net.history[-1]
    assert keep.store().latest_verified().epoch == 3


def test_train_end_checkpoint_skips_a_non_finite_end(tmp_path, data):
    end = TrainEndCheckpoint(dirname=str(tmp_path))
    net = NeuralNetClassifier(MyModule, max_epochs=2, verbose=0, callbacks=[Diverge(at=1), end])
    with pytest.warns(CheckpointSaveWarning, match="epoch 2 is not saved, its train_loss is nan"):
        net.fit(*data)
    assert not end.store().has_checkpoint()
    saved = TrainEndCheckpoint(dirname=str(tmp_path), skip_non_finite=False)
    NeuralNetClassifier(MyModule, max_epochs=2, verbose=0, callbacks=[Diverge(at=1), saved]).fit(*data)
    assert saved.store().latest_verified().epoch == 2
