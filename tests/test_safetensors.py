"""``use_safetensors=True`` in save_params/load_params, Checkpoint, TrainEndCheckpoint and LoadInitState."""
from __future__ import annotations

import builtins
import io

import numpy as np
import pytest
import torch

from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Checkpoint, LoadInitState, TrainEndCheckpoint
from prefect_torch.examples import MyModule

safetensors_torch = pytest.importorskip("safetensors.torch")


def net(**kwargs):
    kwargs.setdefault("max_epochs", 2)
    kwargs.setdefault("verbose", 0)
    kwargs.setdefault("lr", 0.2)
    return NeuralNetClassifier(MyModule, **kwargs)


def same_weights(a, b):
    sa, sb = a.module_.state_dict(), b.module_.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_params_writes_safetensors_that_load_back(tmp_path, data):
    X, y = data
    trained = net().fit(X, y)
    trained.save_params(f_params=tmp_path / "params.safetensors", f_history=tmp_path / "h.json",
                        use_safetensors=True)
    on_disk = safetensors_torch.load_file(str(tmp_path / "params.safetensors"))
    assert on_disk.keys() == trained.module_.state_dict().keys()
    assert all(torch.equal(on_disk[k], v) for k, v in trained.module_.state_dict().items())
    fresh = net().initialize()
    fresh.load_params(f_params=tmp_path / "params.safetensors", f_history=tmp_path / "h.json",
                      use_safetensors=True)
    assert same_weights(fresh, trained) and len(fresh.history) == 2
    np.testing.assert_array_equal(fresh.predict_proba(X), trained.predict_proba(X))
    buffer = io.BytesIO()
    trained.save_params(f_params=buffer, use_safetensors=True)
    buffer.seek(0)
    from_buffer = net().initialize()
    from_buffer.load_params(f_params=buffer, use_safetensors=True)
    assert same_weights(from_buffer, trained)


def test_optimizer_state_is_refused_before_anything_is_written(tmp_path, data):
    X, y = data
    trained = net(optimizer=torch.optim.Adam).fit(X, y)
    with pytest.raises(ValueError, match="Safetensors can only store tensors"):
        trained.save_params(f_params=tmp_path / "p.st", f_optimizer=tmp_path / "o.st", use_safetensors=True)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="Cannot save optimizer state when using safetensors"):
        Checkpoint(dirname=tmp_path, use_safetensors=True)
    with pytest.raises(ValueError, match="Cannot save optimizer state when using safetensors"):
        TrainEndCheckpoint(dirname=tmp_path, use_safetensors=True)


def test_loading_a_torch_file_as_safetensors_says_so(tmp_path, data):
    X, y = data
    trained = net(max_epochs=1).fit(X, y)
    trained.save_params(f_params=tmp_path / "params.pt")
    with pytest.raises(ValueError, match="use_safetensors=False"):
        net().initialize().load_params(f_params=tmp_path / "params.pt", use_safetensors=True)


def test_checkpoint_and_load_init_state_with_safetensors(tmp_path, data):
    X, y = data
    cp = Checkpoint(dirname=tmp_path, f_optimizer=None, monitor=None, use_safetensors=True)
    first = net(callbacks=[cp]).fit(X, y)
    params = safetensors_torch.load_file(str(tmp_path / "params.pt"))
    assert all(torch.equal(params[k], v) for k, v in first.module_.state_dict().items())
    assert set(safetensors_torch.load_file(str(tmp_path / "criterion.pt"))) == set(first.criterion_.state_dict())
    cp2 = Checkpoint(dirname=tmp_path, f_optimizer=None, monitor=None, use_safetensors=True)
    resumed = net(max_epochs=1, callbacks=[cp2, LoadInitState(cp2, use_safetensors=True)])
    resumed.initialize()
    loaded = {}
    resumed.notify = _record_first_epoch(resumed.notify, resumed, loaded)
    resumed.partial_fit(X, y)
    assert all(torch.equal(loaded["weights"][k], v) for k, v in first.module_.state_dict().items())
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]


def _record_first_epoch(notify, the_net, into):
    def wrapped(hook, **kwargs):
        notify(hook, **kwargs)
        if hook == "on_epoch_begin" and "weights" not in into:
            into["weights"] = {k: v.clone() for k, v in the_net.module_.state_dict().items()}
    return wrapped


def test_train_end_checkpoint_with_safetensors(tmp_path, data):
    X, y = data
    trained = net(callbacks=[TrainEndCheckpoint(dirname=tmp_path, f_optimizer=None, use_safetensors=True)]).fit(X, y)
    params = safetensors_torch.load_file(str(tmp_path / "train_end_params.pt"))
    assert all(torch.equal(params[k], v) for k, v in trained.module_.state_dict().items())


def test_missing_safetensors_gives_an_install_hint(monkeypatch, tmp_path, data):
    X, y = data
    trained = net(max_epochs=1).fit(X, y)
    real_import = builtins.__import__

    def no_safetensors(name, *args, **kwargs):
        if name.startswith("safetensors"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_safetensors)
    with pytest.raises(ImportError, match=r"pip install 'prefect-torch\[safetensors\]'"):
        trained.save_params(f_params=tmp_path / "p.st", use_safetensors=True)
