"""Checkpoints on a real S3 server (SeaweedFS on loopback): store, callbacks, save/load, CLI."""
import json
import secrets

import pytest
import torch

from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Checkpoint, LoadInitState
from prefect_torch.checkpoint import CheckpointFallbackWarning, CheckpointStore
from prefect_torch.cli import main
from prefect_torch.examples import MyModule


def _url(server, name):
    return server.url(f"{name}-{secrets.token_hex(4)}")


def _net(url, server, max_epochs, keep_last=3, background=False):
    cp = Checkpoint(monitor=None, dirname=url, keep_last=keep_last, background=background,
                    storage_options=server.storage_options())
    return NeuralNetClassifier(MyModule, max_epochs=max_epochs, verbose=0, iterator_train__shuffle=True,
                               callbacks=[cp, LoadInitState(cp, until_max_epochs=True)]), cp


def _weights(net):
    return list(net.module_.state_dict().values())


@pytest.mark.parametrize("background", [False, True], ids=["sync", "background"])
def test_resume_from_s3_is_bit_exact(s3_server, data, background):
    url = _url(s3_server, "resume")
    torch.manual_seed(0)
    reference = NeuralNetClassifier(MyModule, max_epochs=5, verbose=0, iterator_train__shuffle=True).fit(*data)

    torch.manual_seed(0)
    first, cp = _net(url, s3_server, max_epochs=3, background=background)
    first.fit(*data)
    store = cp.store()
    manifest = store.read_manifest()
    assert [v.epoch for v in manifest.versions] == [1, 2, 3]
    assert all(store.problems(v) == [] for v in manifest.versions)
    fs = s3_server.filesystem()
    root = url.removeprefix("s3://")
    assert {"params.pt", "optimizer.pt", "history.json", "train_state.pt", "manifest.json"} <= {
        p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)}

    torch.manual_seed(0)
    second, _ = _net(url, s3_server, max_epochs=5, background=background)
    second.fit(*data)
    assert second.history[:, "epoch"] == [1, 2, 3, 4, 5]
    assert all(torch.equal(a, b) for a, b in zip(_weights(second), _weights(reference)))


def test_retention_and_fallback_on_s3(s3_server, data):
    url = _url(s3_server, "fallback")
    torch.manual_seed(0)
    net, cp = _net(url, s3_server, max_epochs=4, keep_last=2)
    net.fit(*data)
    store = cp.store()
    manifest = store.read_manifest()
    assert [v.epoch for v in manifest.versions] == [3, 4]  # keep_last=2; current and best are epoch 4
    fs = s3_server.filesystem()
    objects = fs.find(url.removeprefix("s3://") + "/versions")
    folders = {path.split("/versions/")[1].split("/")[0] for path in objects} - {".published"}
    assert folders == {v.folder.rsplit("/", 1)[-1] for v in manifest.versions}

    newest = manifest.version(manifest.current)
    path = f"{url}/{newest.folder}/params.pt".removeprefix("s3://")
    fs.pipe_file(path, fs.cat_file(path)[:-7])  # truncated upload
    with pytest.warns(CheckpointFallbackWarning, match="params.pt has .* bytes"):
        version = CheckpointStore(url, **s3_server.storage_options()).latest_verified()
    assert version.epoch == 3


def test_save_and_load_params_with_s3_urls(s3_server, data, monkeypatch):
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)  # plain URLs, credentials and endpoint from the environment
    url = _url(s3_server, "params")
    net = NeuralNetClassifier(MyModule, max_epochs=2, verbose=0).fit(*data)
    net.save_params(f_params=f"{url}/params.pt", f_optimizer=f"{url}/opt.pt", f_history=f"{url}/history.json")
    other = NeuralNetClassifier(MyModule, verbose=0).initialize()
    other.load_params(f_params=f"{url}/params.pt", f_optimizer=f"{url}/opt.pt", f_history=f"{url}/history.json")
    assert all(torch.equal(a, b) for a, b in zip(_weights(other), _weights(net)))
    assert other.history == json.loads(json.dumps(net.history))


def test_cli_lists_an_s3_directory(s3_server, data, monkeypatch, capsys):
    url = _url(s3_server, "cli")
    torch.manual_seed(0)
    net, _ = _net(url, s3_server, max_epochs=2)
    net.fit(*data)
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    assert main(["checkpoints", url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [v["epoch"] for v in report[0]["versions"]] == [1, 2]
    assert all(v["verified"] for v in report[0]["versions"])
