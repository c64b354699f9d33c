"""The checkpoint store on its own (no nets), and how Checkpoint reports failed saves."""
from __future__ import annotations

import io
import json
import os
import uuid
import warnings

import pytest
import torch

from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Checkpoint
from prefect_torch.checkpoint import (
    CheckpointConflictError,
    CheckpointCorruptError,
    CheckpointFallbackWarning,
    CheckpointSaveWarning,
    CheckpointStore,
    PendingFile,
)
from prefect_torch.examples import MyModule

FILES = ("params.pt", "history.json")


def pending(epoch, names=FILES):
    """The files of one version: a tensor file and a small JSON file, both depending on ``epoch``."""
    weights = {"w": torch.full((4,), float(epoch))}
    history = json.dumps([{"epoch": epoch}]).encode()
    writers = {"params.pt": ("f_params", lambda f: torch.save(weights, f)),
               "history.json": ("f_history", lambda f: f.write(history))}
    return [PendingFile(name, *writers[name]) for name in names]


def commit(store, epoch, best=False, **kwargs):
    return store.commit(pending(epoch), epoch=epoch, metrics={"valid_loss": 1.0 / epoch}, best=best, **kwargs)


def weights_of(store, version):
    return torch.load(store.source(version, "params.pt"), weights_only=True)["w"]


def folders(path, prefix=""):
    names = os.listdir(path / "versions") if (path / "versions").exists() else []
    return sorted(n for n in names if n.startswith(f"{prefix}epoch-"))


def epochs_of(store):
    return [v.epoch for v in store.read_manifest().versions]


# -- committing ------------------------------------------------------------------------------
def test_commit_versions_current_and_best_pointers(tmp_path):
    store = CheckpointStore(tmp_path)
    assert store.read_manifest() is None and store.latest_verified() is None and not store.has_checkpoint()
    v1 = commit(store, 1, best=True)
    v2 = commit(store, 2, best=False)
    v3 = commit(store, 3, best=True)
    v4 = commit(store, 4, best=False)
    assert [v1.id, v2.id, v3.id, v4.id] == [1, 2, 3, 4]
    manifest = store.read_manifest()
    assert manifest.current == v4.id and manifest.best == v3.id
    assert epochs_of(store) == [1, 2, 3, 4]
    assert manifest.version(v3.id).metrics == {"valid_loss": 1.0 / 3}
    assert manifest.version(v4.id).files["params.pt"].key == "f_params"
    assert manifest.generation == 4 and manifest.next_id == 5
    assert store.has_checkpoint()
    latest = store.latest_verified()
    assert latest.id == v4.id and latest.epoch == 4
    assert torch.equal(weights_of(store, latest), torch.full((4,), 4.0))
    # the first commit is best when nothing better was said
    other = CheckpointStore(tmp_path / "other")
    commit(other, 1, best=False)
    assert other.read_manifest().best == 1
    # the manifest file is the documented JSON
    raw = json.loads((tmp_path / "manifest.json").read_text())
    assert raw["current"] == 4 and raw["best"] == 3 and raw["prefix"] == ""
    assert [v["epoch"] for v in raw["versions"]] == [1, 2, 3, 4]


def test_root_files_hold_the_current_version_after_each_commit(tmp_path):
    store = CheckpointStore(tmp_path, keep_last=2)
    for epoch in range(1, 5):
        version = commit(store, epoch, best=epoch == 1)
        for name in FILES:
            root = (tmp_path / name).read_bytes()
            assert root == (tmp_path / version.folder / name).read_bytes(), (epoch, name)
        assert torch.equal(torch.load(tmp_path / "params.pt", weights_only=True)["w"],
                           torch.full((4,), float(epoch)))
        assert json.loads((tmp_path / "history.json").read_text()) == [{"epoch": epoch}]


def test_retention_prunes_only_after_a_commit_and_keeps_current_and_best(tmp_path):
    keep_all = CheckpointStore(tmp_path)
    for epoch in (1, 2, 3):
        commit(keep_all, epoch, best=epoch == 1)
    assert len(folders(tmp_path)) == 3

    store = CheckpointStore(tmp_path, keep_last=1)
    # reading never prunes
    assert store.latest_verified().epoch == 3
    assert store.has_checkpoint()
    assert epochs_of(store) == [1, 2, 3] and len(folders(tmp_path)) == 3
    # the next commit does: the newest 1 (current) plus the best (epoch 1) stay
    v4 = commit(store, 4)
    assert epochs_of(store) == [1, 4]
    manifest = store.read_manifest()
    assert manifest.version(manifest.best).epoch == 1 and manifest.current == v4.id
    assert folders(tmp_path) == sorted(v.folder.split("/")[-1] for v in manifest.versions)
    commit(store, 5)
    assert epochs_of(store) == [1, 5]
    assert len(folders(tmp_path)) == 2
    assert torch.equal(weights_of(store, manifest.version(manifest.best)), torch.full((4,), 1.0))


def test_keep_last_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="keep_last"):
        CheckpointStore(tmp_path, keep_last=0)


def test_orphan_folder_of_an_unfinished_commit_is_never_loaded_and_removed_by_next_commit(tmp_path):
    store = CheckpointStore(tmp_path)
    commit(store, 1)
    orphan = tmp_path / "versions" / "epoch-000009-abcdef"
    orphan.mkdir()
    (orphan / "params.pt").write_bytes(b"PK\x03\x04 half a file")
    assert store.latest_verified().epoch == 1
    assert epochs_of(store) == [1]
    good = (tmp_path / "manifest.json").read_bytes()
    (tmp_path / "manifest.json").write_bytes(b"\x00garbage")
    with pytest.warns(CheckpointFallbackWarning):
        assert [v.epoch for v in store.read_manifest().versions] == [1]  # no version.json: not a version
    (tmp_path / "manifest.json").write_bytes(good)
    commit(store, 2)
    assert not orphan.exists()
    assert epochs_of(store) == [1, 2]
    assert len(folders(tmp_path)) == 2


def test_crash_between_files_and_manifest_leaves_the_old_version_current(tmp_path, monkeypatch):
    store = CheckpointStore(tmp_path)
    commit(store, 1)
    manifest_before = (tmp_path / "manifest.json").read_bytes()
    root_before = (tmp_path / "params.pt").read_bytes()

    def killed(rel, data):
        raise KeyboardInterrupt("killed before the manifest was replaced")

    monkeypatch.setattr(store.location, "write_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        commit(store, 2)
    monkeypatch.undo()
    assert len(folders(tmp_path)) == 2  # the new folder is complete...
    new_folder = [f for f in folders(tmp_path) if f.startswith("epoch-000002-")]
    assert new_folder and (tmp_path / "versions" / new_folder[0] / "version.json").exists()
    # ...but it is not a version: nothing changed for readers
    assert (tmp_path / "manifest.json").read_bytes() == manifest_before
    assert (tmp_path / "params.pt").read_bytes() == root_before
    fresh = CheckpointStore(tmp_path)
    assert fresh.latest_verified().epoch == 1
    assert epochs_of(fresh) == [1]
    commit(fresh, 3)
    assert epochs_of(fresh) == [1, 3]
    assert not (tmp_path / "versions" / new_folder[0]).exists()


# -- verification and fallback ---------------------------------------------------------------
@pytest.fixture
def three_versions(tmp_path):
    store = CheckpointStore(tmp_path)
    versions = [commit(store, epoch) for epoch in (1, 2, 3)]
    return store, versions


def newest_file(tmp_path, versions, name="params.pt"):
    return tmp_path / versions[-1].folder / name


def test_intact_current_version_loads_without_warning(three_versions):
    store, versions = three_versions
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.latest_verified().id == versions[-1].id
    assert all(store.problems(v) == [] for v in versions)


def test_truncated_file_falls_back_to_previous_version(tmp_path, three_versions):
    store, versions = three_versions
    path = newest_file(tmp_path, versions)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 10)
    assert store.problems(versions[-1]) == [f"params.pt has {size - 10} bytes, {size} were committed"]
    with pytest.warns(CheckpointFallbackWarning, match=r"params\.pt has \d+ bytes") as record:
        version = store.latest_verified()
    assert version.id == versions[1].id and version.epoch == 2
    assert "version 3 (epoch 3)" in str(record[0].message)
    assert torch.equal(weights_of(store, version), torch.full((4,), 2.0))


def test_flipped_byte_falls_back_with_sha256_message(tmp_path, three_versions):
    store, versions = three_versions
    path = newest_file(tmp_path, versions, "history.json")
    data = bytearray(path.read_bytes())
    data[3] ^= 0x01
    size = path.stat().st_size
    path.write_bytes(bytes(data))
    assert path.stat().st_size == size
    with pytest.warns(CheckpointFallbackWarning, match=r"history\.json has a different sha256"):
        assert store.latest_verified().epoch == 2


def test_deleted_file_falls_back_with_missing_message(tmp_path, three_versions):
    store, versions = three_versions
    newest_file(tmp_path, versions).unlink()
    with pytest.warns(CheckpointFallbackWarning, match=r"params\.pt is missing"):
        assert store.latest_verified().epoch == 2


def test_all_versions_damaged_raises_corrupt_error(tmp_path, three_versions):
    store, versions = three_versions
    for version in versions:
        (tmp_path / version.folder / "params.pt").unlink()
    with pytest.raises(CheckpointCorruptError,
                       match=r"no committed version is intact.*params\.pt is missing"):
        store.latest_verified()


def test_damaged_manifest_is_rebuilt_from_version_files(tmp_path, three_versions):
    store, versions = three_versions
    (tmp_path / "manifest.json").write_bytes(os.urandom(64) + b"\xff\xfe")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = store.read_manifest()
        latest = store.latest_verified()
        store.begin()
    # one warning for one damaged manifest, however often it is read
    assert [str(w.message) for w in caught if w.category is CheckpointFallbackWarning] == [
        f"{tmp_path / 'manifest.json'} is damaged (the manifest is not valid JSON (UnicodeDecodeError: "
        + str(caught[0].message).split("UnicodeDecodeError: ", 1)[1].split(")", 1)[0]
        + ")); rebuilding the list of versions from the version folders (found: epoch 1, epoch 2, epoch 3)"]
    assert len(caught) == 1
    assert [(v.epoch, v.folder) for v in manifest.versions] == [(v.epoch, v.folder) for v in versions]
    assert manifest.version(manifest.current).epoch == 3
    assert latest.epoch == 3
    assert torch.equal(weights_of(store, latest), torch.full((4,), 3.0))


def damage_manifest(path):
    (path / "manifest.json").write_bytes(b"\x00garbage \xff")


@pytest.mark.parametrize("keep_last", [None, 1])
def test_commit_after_damaged_manifest_adds_the_new_version_once(tmp_path, keep_last):
    store = CheckpointStore(tmp_path, keep_last=keep_last)
    for epoch in (1, 2, 3):
        commit(store, epoch, best=epoch == 1)
    damage_manifest(tmp_path)
    fresh = CheckpointStore(tmp_path, keep_last=keep_last)  # e.g. the resumed run
    with pytest.warns(CheckpointFallbackWarning, match="damaged"):
        new = commit(fresh, 4)
    manifest = fresh.read_manifest()  # a good manifest again
    folders_named = [v.folder for v in manifest.versions]
    assert len(folders_named) == len(set(folders_named)), folders_named
    assert (tmp_path / new.folder / "params.pt").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        latest = fresh.latest_verified()
    assert latest.epoch == 4
    assert torch.equal(weights_of(fresh, latest), torch.full((4,), 4.0))


def test_live_writer_goes_on_after_its_manifest_was_damaged(tmp_path):
    store = CheckpointStore(tmp_path)
    store.begin()
    for epoch in (1, 2):
        commit(store, epoch)
    damage_manifest(tmp_path)
    with pytest.warns(CheckpointFallbackWarning, match="damaged"):
        commit(store, 3)
    assert store.latest_verified().epoch == 3


# -- fencing and prefixes --------------------------------------------------------------------
def test_second_writer_commit_fences_the_first(tmp_path):
    a = CheckpointStore(tmp_path, writer={"flow_run": "run-a"})
    b = CheckpointStore(tmp_path, writer={"flow_run": "run-b"})
    commit(a, 1)
    a.begin()
    b.begin()
    commit(b, 2)
    manifest_before = (tmp_path / "manifest.json").read_bytes()
    root_before = (tmp_path / "params.pt").read_bytes()
    with pytest.raises(CheckpointConflictError, match="dirname") as info:
        commit(a, 3)
    assert "another writer" in str(info.value) and "run-b" in str(info.value)
    assert (tmp_path / "manifest.json").read_bytes() == manifest_before
    assert (tmp_path / "params.pt").read_bytes() == root_before
    assert b.latest_verified().epoch == 2
    commit(b, 4)  # the live writer goes on
    assert epochs_of(b) == [1, 2, 4]


def test_prefixes_in_one_directory_do_not_prune_each_other(tmp_path):
    plain = CheckpointStore(tmp_path, keep_last=1)
    final = CheckpointStore(tmp_path, prefix="train_end_", keep_last=1)
    commit(plain, 1)
    commit(final, 1)
    commit(plain, 2)
    commit(plain, 3)
    commit(final, 2)
    assert (tmp_path / "manifest.json").exists() and (tmp_path / "train_end_manifest.json").exists()
    # keep_last=1 plus the best (the first) in each series, each with its own folders
    assert epochs_of(plain) == [1, 3] and epochs_of(final) == [1, 2]
    assert len(folders(tmp_path, "")) == 2
    assert len(folders(tmp_path, "train_end_")) == 2
    assert all(v.folder.startswith("versions/train_end_epoch-") for v in final.read_manifest().versions)
    for store, epoch in ((plain, 3), (final, 2)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert store.latest_verified().epoch == epoch
    # committing in one series does not fence the other
    plain.begin()
    commit(final, 3)
    commit(plain, 4)


def test_memory_url_store():
    url = f"memory://prefect-torch-test-{uuid.uuid4().hex}/cp"
    store = CheckpointStore(url, keep_last=2)
    try:
        for epoch in (1, 2, 3):
            commit(store, epoch, best=epoch == 1)
        assert epochs_of(store) == [1, 2, 3]
        version = store.latest_verified()
        assert version.epoch == 3
        source = store.source(version, "params.pt")
        assert torch.equal(torch.load(source, weights_only=True)["w"], torch.full((4,), 3.0))
        assert store.file_url(version, "params.pt").startswith(url + "/versions/epoch-000003-")
        assert torch.equal(torch.load(io.BytesIO(store.location.read_bytes("params.pt")),
                                      weights_only=True)["w"], torch.full((4,), 3.0))
        commit(store, 4)
        assert epochs_of(store) == [1, 3, 4]
        assert len([n for n in store.location.listdir("versions") if n.startswith("epoch-")]) == 3
    finally:
        store.location.remove_tree("")


# -- Checkpoint: failed saves ----------------------------------------------------------------
def failing_commits(monkeypatch, fail_epochs):
    original = CheckpointStore.commit

    def commit_or_fail(self, files, epoch, *args, **kwargs):
        if epoch in fail_epochs:
            raise OSError(28, "No space left on device")
        return original(self, files, epoch, *args, **kwargs)

    monkeypatch.setattr(CheckpointStore, "commit", commit_or_fail)


def make_net(cp, max_epochs=4):
    return NeuralNetClassifier(MyModule, lr=0.5, max_epochs=max_epochs, batch_size=64, verbose=0,
                               callbacks=[cp])


@pytest.mark.parametrize("background", [False, True])
def test_failed_commit_warns_counts_and_training_goes_on(tmp_path, data, monkeypatch, background):
    failing_commits(monkeypatch, {2, 4})
    cp = Checkpoint(monitor=None, dirname=str(tmp_path), keep_last=None, background=background)
    net = make_net(cp)
    with pytest.warns(CheckpointSaveWarning, match="No space left on device") as record:
        net.fit(*data)
    messages = [str(w.message) for w in record if issubclass(w.category, CheckpointSaveWarning)]
    assert len(messages) == 2
    assert "epoch 2" in messages[0] and "epoch 4" in messages[1]
    assert net.history[:, "epoch"] == [1, 2, 3, 4]
    assert net.history[:, "event_cp"] == [True, False, True, False]
    counts = [row.get("checkpoint_errors") for row in net.history]
    if background:  # the writer's error surfaces at the next epoch end (or when training ends)
        assert counts == [None, None, 1, 2]
    else:
        assert counts == [None, 1, None, 2]
    assert epochs_of(cp.store()) == [1, 3]
    assert cp.store().latest_verified().epoch == 3


class Unpicklable(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = MyModule()
        self.hook = lambda x: x  # a lambda: the net cannot be pickled

    def forward(self, X):
        return self.body(X)


def test_unpicklable_net_with_f_pickle_warns_every_epoch_and_trains_on(tmp_path, data):
    cp = Checkpoint(monitor=None, dirname=str(tmp_path), f_pickle="net.pkl")
    net = NeuralNetClassifier(Unpicklable, lr=0.5, max_epochs=3, batch_size=64, verbose=0, callbacks=[cp])
    with pytest.warns(CheckpointSaveWarning) as record:
        net.fit(*data)
    assert sum(issubclass(w.category, CheckpointSaveWarning) for w in record) == 3
    assert net.history[:, "epoch"] == [1, 2, 3]
    assert net.history[:, "event_cp"] == [False, False, False]
    assert net.history[:, "checkpoint_errors"] == [1, 2, 3]
    assert not cp.store().has_checkpoint()
    assert not (tmp_path / "params.pt").exists()
