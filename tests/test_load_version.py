"""Loading one named version of a checkpoint: ``load_params(checkpoint=cp, version=...)``,
``LoadInitState(cp, version=...)``, exporting a version, and presigned links on S3."""
import io
import json
import os
import secrets
import urllib.error
import urllib.parse
import urllib.request
import warnings

import pytest
import torch

from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Callback, Checkpoint, LoadInitState
from prefect_torch.checkpoint import (
    CheckpointCorruptError,
    CheckpointFallbackWarning,
    CheckpointStore,
    CheckpointVersionError,
    PendingFile,
)
from prefect_torch.checkpoint.export import export_version
from prefect_torch.examples import MyModule

BEST_EPOCH = 2


class Snapshots(Callback):
    """Marks epoch ``BEST_EPOCH`` as the best (before the Checkpoint runs) and keeps a copy of
    the weights of every epoch."""

    call_order = 0  # before Checkpoint (1)

    def __init__(self):
        self.weights = {}

    def on_epoch_end(self, net, **kwargs):
        epoch = len(net.history)
        net.history.record("valid_loss_best", epoch == BEST_EPOCH)
        self.weights[epoch] = {k: v.clone() for k, v in net.module_.state_dict().items()}


def _same(state, weights):
    return state.keys() == weights.keys() and all(torch.equal(state[k], weights[k]) for k in state)


def _net(cp, **kwargs):
    return NeuralNetClassifier(MyModule, verbose=0, **kwargs)


@pytest.fixture
def trained(tmp_path, data):
    """5 epochs, a version per epoch, keep_last=2: kept ids 2 (epoch 2, best), 4, 5 (current)."""
    snapshots = Snapshots()
    cp = Checkpoint(monitor=lambda net: True, dirname=str(tmp_path / "exp"), keep_last=2)
    net = _net(cp, max_epochs=5, callbacks=[snapshots, cp]).fit(*data)
    manifest = cp.store().read_manifest()
    assert [(v.id, v.epoch) for v in manifest.versions] == [(2, 2), (4, 4), (5, 5)]
    assert (manifest.current, manifest.best) == (5, 2)
    return cp, snapshots.weights, net


def _fresh(cp):
    return _net(cp, max_epochs=1).initialize()


def test_default_and_current_load_the_current_version(trained):
    cp, weights, _ = trained
    for version in (None, "current"):
        net = _fresh(cp)
        net.load_params(checkpoint=cp, version=version)
        assert _same(net.module_.state_dict(), weights[5])
        assert net.history[:, "epoch"] == [1, 2, 3, 4, 5]


def test_best_loads_the_best_version(trained):
    cp, weights, _ = trained
    net = _fresh(cp)
    net.load_params(checkpoint=cp, version="best")
    assert _same(net.module_.state_dict(), weights[BEST_EPOCH])
    assert not _same(net.module_.state_dict(), weights[5])
    assert net.history[:, "epoch"] == [1, 2]


def test_a_version_id_loads_that_version_not_that_epoch(tmp_path, data):
    """Ids and epochs differ once a run resumed from an older version: the id wins."""
    snapshots = Snapshots()
    cp = Checkpoint(monitor=lambda net: True, dirname=str(tmp_path / "exp"), keep_last=None)
    _net(cp, max_epochs=3, callbacks=[snapshots, cp]).fit(*data)  # ids 1..3 = epochs 1..3
    resumed = Snapshots()  # another lr, so its epoch 2 differs from the first run's (a resume is bit-exact)
    _net(cp, max_epochs=1, lr=0.5, callbacks=[resumed, cp, LoadInitState(cp, version=1)]).fit(*data)  # id 4
    versions = {v.id: v.epoch for v in cp.store().read_manifest().versions}
    assert versions == {1: 1, 2: 2, 3: 3, 4: 2}
    net = _fresh(cp)
    net.load_params(checkpoint=cp, version=4)
    assert _same(net.module_.state_dict(), resumed.weights[2])
    assert not _same(net.module_.state_dict(), snapshots.weights[2])  # epoch 2 of the first run is id 2
    net.load_params(checkpoint=cp, version=2)
    assert _same(net.module_.state_dict(), snapshots.weights[2])


def test_a_pruned_version_is_an_error_listing_the_kept_ones(trained):
    cp, weights, _ = trained
    net = _fresh(cp)
    before = {k: v.clone() for k, v in net.module_.state_dict().items()}
    with pytest.raises(CheckpointVersionError) as error:
        net.load_params(checkpoint=cp, version=3)
    text = str(error.value)
    assert "version 3 is not kept (pruned" in text
    assert "2 (epoch 2, best), 4 (epoch 4), 5 (epoch 5, current)" in text
    assert "version=<id>" in text and "not the epoch" in text
    assert _same(net.module_.state_dict(), before)  # nothing loaded
    with pytest.raises(CheckpointVersionError, match=r"version 9 was never written here \(the newest id is 5\)"):
        net.load_params(checkpoint=cp, version=9)


def test_a_damaged_named_version_is_an_error_and_never_replaced(trained):
    cp, weights, _ = trained
    store = cp.store()
    version = store.read_manifest().version(4)
    path = os.path.join(cp.dirname, version.folder, "params.pt")
    with open(path, "r+b") as f:  # flip one byte
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    net = _fresh(cp)
    before = {k: v.clone() for k, v in net.module_.state_dict().items()}
    with pytest.raises(CheckpointCorruptError) as error:
        net.load_params(checkpoint=cp, version=4)
    assert "version 4 (epoch 4" in str(error.value)
    assert "params.pt has a different sha256" in str(error.value)
    assert version.folder in str(error.value)
    assert _same(net.module_.state_dict(), before)
    # the current version is damaged the same way: named, it is an error; by default, a fallback
    current = store.read_manifest().version(5)
    with open(os.path.join(cp.dirname, current.folder, "params.pt"), "ab") as f:
        f.write(b"x")
    with pytest.raises(CheckpointCorruptError, match="version 5 .*params.pt has"):
        net.load_params(checkpoint=cp, version="current")
    with pytest.warns(CheckpointFallbackWarning, match="Loading version 2"):
        net.load_params(checkpoint=cp)
    assert _same(net.module_.state_dict(), weights[BEST_EPOCH])


def test_a_named_version_that_does_not_load_is_an_error(trained):
    """Hashes that match a file torch refuses (a pickle of code): damage, no other version."""
    cp, _, _ = trained
    store = cp.store()
    manifest_path = os.path.join(cp.dirname, "manifest.json")
    data = json.loads(open(manifest_path).read())
    entry = next(v for v in data["versions"] if v["id"] == 4)
    path = os.path.join(cp.dirname, entry["folder"], "params.pt")
    torch.save({"w": torch.nn.Linear(1, 1)}, path)  # a module: weights_only refuses it
    record = store.location.hash(f"{entry['folder']}/params.pt")
    entry["files"]["params.pt"].update(size=record.size, sha256=record.sha256)
    with open(manifest_path, "w") as f:
        json.dump(data, f)
    with pytest.raises(CheckpointCorruptError, match="params.pt matches its sha256 but cannot be loaded"):
        _fresh(cp).load_params(checkpoint=cp, version=4)


def test_best_without_a_recorded_best_is_a_clear_error(trained):
    cp, _, _ = trained
    manifest_path = os.path.join(cp.dirname, "manifest.json")
    data = json.loads(open(manifest_path).read())
    data["best"] = None
    with open(manifest_path, "w") as f:
        json.dump(data, f)
    with pytest.raises(CheckpointVersionError, match="no best version is recorded.*5 \\(epoch 5, current\\)"):
        _fresh(cp).load_params(checkpoint=cp, version="best")


@pytest.mark.parametrize("bad", ["latest", "3", 0, -1, True, 2.0])
def test_a_version_is_named_by_current_best_or_an_int_id(trained, bad):
    cp, _, _ = trained
    with pytest.raises(ValueError, match=r"version=.*'current', 'best', or its version id"):
        _fresh(cp).load_params(checkpoint=cp, version=bad)


def test_version_needs_a_checkpoint_and_one_saved_as_versions(trained, tmp_path):
    cp, _, _ = trained
    with pytest.raises(ValueError, match="pass checkpoint=cp too"):
        _fresh(cp).load_params(version="best")
    direct = Checkpoint(f_params=str(tmp_path / "sub" / "p.pt"), f_optimizer=None, f_criterion=None,
                        f_history=None, f_train_state=None)
    with pytest.raises(ValueError, match="not as versions"):
        _fresh(cp).load_params(checkpoint=direct, version="best")


def test_no_checkpoint_yet_is_still_file_not_found(tmp_path):
    cp = Checkpoint(dirname=str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="there is no checkpoint"):
        _fresh(cp).load_params(checkpoint=cp, version="best")


def test_load_init_state_resumes_from_the_best_version(trained, data):
    cp, weights, _ = trained
    loaded = {}

    class Peek(Callback):
        call_order = 0

        def on_train_begin(self, net, **kwargs):
            loaded["epochs"] = net.history[:, "epoch"]
            loaded["weights"] = {k: v.clone() for k, v in net.module_.state_dict().items()}

    net = _net(cp, max_epochs=2, callbacks=[Peek(), cp, LoadInitState(cp, version="best")]).fit(*data)
    assert loaded["epochs"] == [1, 2]
    assert _same(loaded["weights"], weights[BEST_EPOCH])
    assert net.history[:, "epoch"] == [1, 2, 3, 4]
    manifest = cp.store().read_manifest()
    current = manifest.version(manifest.current)
    assert (current.id, current.epoch) == (7, 4)  # the resumed run's commits are the newest versions


def test_load_init_state_with_a_version_starts_afresh_on_an_empty_directory(tmp_path, data):
    cp = Checkpoint(monitor=None, dirname=str(tmp_path / "new"))
    net = _net(cp, max_epochs=2, callbacks=[cp, LoadInitState(cp, version="best")]).fit(*data)
    assert net.history[:, "epoch"] == [1, 2]


def test_load_init_state_with_a_pruned_version_stops_before_training(trained, data):
    cp, _, _ = trained
    net = _net(cp, max_epochs=2, callbacks=[cp, LoadInitState(cp, version=1)])
    with pytest.raises(CheckpointVersionError, match="version 1 is not kept"):
        net.fit(*data)
    assert [v.id for v in cp.store().read_manifest().versions] == [2, 4, 5]  # nothing committed


def test_export_copies_one_version_and_refuses_to_overwrite(trained, tmp_path):
    cp, weights, _ = trained
    store = cp.store()
    for name, epoch in (("current", 5), ("best", BEST_EPOCH), (4, 4)):
        version = store.find(name)
        dest = tmp_path / f"out-{name}"
        written = export_version(store, version, dest)
        assert sorted(os.listdir(dest)) == sorted(version.files) == sorted(
            ["params.pt", "optimizer.pt", "criterion.pt", "history.json", "train_state.pt"])
        assert written == [str(dest / n) for n in sorted(version.files)]
        for file_name in version.files:
            assert (dest / file_name).read_bytes() == store.location.read_bytes(f"{version.folder}/{file_name}")
        net = _fresh(cp)  # skorch's way: the plain files by name
        net.load_params(f_params=str(dest / "params.pt"), f_history=str(dest / "history.json"))
        assert _same(net.module_.state_dict(), weights[epoch])
        assert len(net.history) == epoch
    dest = tmp_path / "out-current"
    (dest / "params.pt").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="there already: .*params.pt.*; nothing was written"):
        export_version(store, store.find(4), dest)
    assert (dest / "params.pt").read_bytes() == b"mine"
    assert json.loads((dest / "history.json").read_text())[-1]["epoch"] == 5  # untouched
    export_version(store, store.find(4), dest, force=True)
    assert json.loads((dest / "history.json").read_text())[-1]["epoch"] == 4
    assert sorted(os.listdir(dest)) == sorted(store.find(4).files)  # no temporary files left


def test_export_never_follows_a_link_out_of_dest(trained, tmp_path):
    cp, _, _ = trained
    outside = tmp_path / "victim.txt"
    outside.write_text("keep")
    dest = tmp_path / "linked"
    dest.mkdir()
    os.symlink(outside, dest / "params.pt")
    with pytest.raises(FileExistsError):
        export_version(cp.store(), cp.store().find("current"), dest)
    export_version(cp.store(), cp.store().find("current"), dest, force=True)
    assert outside.read_text() == "keep"  # the link was replaced, not written through
    assert not os.path.islink(dest / "params.pt")


def _s3_store(server):
    return CheckpointStore(server.url(f"links-{secrets.token_hex(4)}"), **server.storage_options())


def test_presigned_link_downloads_the_file_from_s3(s3_server):
    store = _s3_store(s3_server)
    weights = {"w": torch.arange(6.0)}
    version = store.commit([PendingFile("params.pt", "f_params", lambda f: torch.save(weights, f))], epoch=1)
    link = store.download_url(version, "params.pt", expires=120)
    assert link is not None and link.startswith(("https://", "http://127.0.0.1", "http://localhost"))
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
    assert query["X-Amz-Expires"] == ["120"] and "X-Amz-Signature" in query
    secret = s3_server.storage_options()["secret"]
    assert secret not in link and urllib.parse.quote(secret, safe="") not in link
    with urllib.request.urlopen(link, timeout=30) as response:
        body = response.read()
    assert body == store.location.read_bytes(f"{version.folder}/params.pt")
    assert torch.equal(torch.load(io.BytesIO(body), weights_only=True)["w"], weights["w"])
    tampered = link.replace("X-Amz-Expires=120", "X-Amz-Expires=999")
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(tampered, timeout=30)


def test_export_from_s3(s3_server, tmp_path):
    store = _s3_store(s3_server)
    for epoch in (1, 2):
        store.commit([PendingFile("params.pt", "f_params", lambda f: torch.save({"e": torch.tensor(epoch)}, f)),
                      PendingFile("history.json", "f_history", lambda f: f.write(b"[]"))], epoch=epoch)
    export_version(store, store.find(1), tmp_path / "out")
    assert torch.load(tmp_path / "out" / "params.pt", weights_only=True)["e"].item() == 1
    assert (tmp_path / "out" / "history.json").read_bytes() == b"[]"


def test_links_are_none_for_local_folders_and_expiry_is_checked(trained):
    cp, _, _ = trained
    store = cp.store()
    version = store.find("current")
    assert store.download_url(version, "params.pt") is None
    for bad in (0, -5, 8 * 24 * 3600, 1.5, True):
        with pytest.raises(ValueError, match="expires="):
            store.download_url(version, "params.pt", expires=bad)
    with pytest.raises(ValueError, match="not a file of version 5"):
        store.download_url(version, "../manifest.json")


def test_version_ids_warn_nothing_when_intact(trained):
    cp, _, _ = trained
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _fresh(cp).load_params(checkpoint=cp, version=4)
