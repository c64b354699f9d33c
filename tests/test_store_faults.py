"""I/O faults under a real file system: a full disk (a small tmpfs) and a read-only directory.

Mounting needs root (or CAP_SYS_ADMIN); elsewhere these tests skip, saying why.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import warnings

import pytest

from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Callback, Checkpoint, LoadInitState
from prefect_torch.checkpoint import CheckpointFallbackWarning, CheckpointSaveWarning, CheckpointStore
from prefect_torch.examples import MyModule

DISK = "3m"


@pytest.fixture
def small_disk(tmp_path):
    """A fresh 3 MiB tmpfs mounted under the test's tmp path, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mount)],
                                capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no mount command here: a full disk needs a small tmpfs")
    if result.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here (needs root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, timeout=30)


def free_bytes(path):
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


class VerifyCurrent(Callback):
    """After every epoch's checkpoint: the current version verifies (no fallback)."""

    call_order = 2  # after Checkpoint

    def __init__(self, dirname):
        self.dirname = dirname

    def on_epoch_end(self, net, **kwargs):
        net.history.record("verified_current", verified_current(self.dirname).epoch)


def run(dirname, data, epochs):
    """One training run resuming from ``dirname``; its warnings (all kept) and the net."""
    cp = Checkpoint(monitor=None, dirname=str(dirname), keep_last=3)
    net = NeuralNetClassifier(MyModule, module__num_units=4000, lr=0.05, max_epochs=epochs, batch_size=100,
                              verbose=0, callbacks=[cp, LoadInitState(cp), VerifyCurrent(dirname)])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        net.fit(*data)
    assert not [w for w in record if issubclass(w.category, CheckpointFallbackWarning)]
    return net, [str(w.message) for w in record if issubclass(w.category, CheckpointSaveWarning)]


def verified_current(dirname):
    """Epoch of the current version, which must verify with no fallback (an error otherwise)."""
    store = CheckpointStore(dirname)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointFallbackWarning)
        version = store.latest_verified()
    assert version.id == store.read_manifest().current
    return version


def version_folders(dirname):
    return sorted(name for name in os.listdir(dirname / "versions") if name.startswith("epoch-"))


def named_folders(dirname):
    return sorted(v.folder.split("/")[-1] for v in CheckpointStore(dirname).read_manifest().versions)


def root_matches(dirname, version):
    store = CheckpointStore(dirname)
    return all(store.location.hash(name).sha256 == entry.sha256 for name, entry in version.files.items())


def test_full_disk_warns_keeps_the_current_version_and_recovers_once_space_is_freed(small_disk, data):
    run_dir = small_disk / "run"
    net, messages = run(run_dir, data, epochs=1)
    assert messages == []
    v1 = verified_current(run_dir)
    assert v1.epoch == 1 and root_matches(run_dir, v1)

    # leave room for one more version folder, not for its copies at the root as well
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * (free_bytes(small_disk) - v1.size * 3 // 2))

    # run 2: epoch 2 commits but its root copy fails; epoch 3 cannot even write its folder
    net, messages = run(run_dir, data, epochs=2)
    assert net.history[:, "epoch"] == [1, 2, 3]
    assert len(messages) == 2, messages
    root_failure, commit_failure = messages
    assert "version 2 (epoch 2) is committed and stays the current one" in root_failure
    assert "no space left on device: copying params.pt to the root needs" in root_failure
    assert str(run_dir) in root_failure and "bytes are free" in root_failure
    v2 = verified_current(run_dir)
    assert v2.epoch == 2
    assert "Checkpoint of epoch 3" in commit_failure  # about what the last version took:
    assert f"no space left on device: writing the version of epoch 3 needs {v2.size:,} bytes" in commit_failure
    assert "unexpected pos" not in root_failure + commit_failure  # torch's words for it are not the message
    assert version_folders(run_dir) == named_folders(run_dir)  # the failed commit left no folder
    assert net.history[1:, "verified_current"] == [2, 2]  # after each epoch of this run
    assert net.history[-1]["checkpoint_errors"] == 1 and net.history[-1]["event_cp"] is False

    # a writer killed while writing its files left a partial folder
    partial = run_dir / "versions" / "epoch-000009-abcdef"
    partial.mkdir()
    (partial / "params.pt").write_bytes(b"half a file")

    # run 3 starts on the full disk: begin() cannot fix the root files and says so, removes the
    # partial folder, loads version 2, trains on; its commit fails with a warning
    net, messages = run(run_dir, data, epochs=1)
    assert net.history[:, "epoch"] == [1, 2, 3]  # resumed from version 2 (epoch 2)
    assert len(messages) == 2, messages
    assert "could not finish what an earlier commit left undone" in messages[0]
    assert "no space left on device: copying params.pt to the root" in messages[0]
    assert "version 2 (epoch 2) stays the current one" in messages[0]
    assert "no space left on device: writing the version of epoch 3" in messages[1]
    assert verified_current(run_dir).id == v2.id
    assert net.history[-1, "verified_current"] == 2
    assert not partial.exists()
    assert version_folders(run_dir) == named_folders(run_dir)

    # space freed: the next run repairs the root files and commits again, with no warning
    ballast.unlink()
    net, messages = run(run_dir, data, epochs=2)
    assert messages == []
    assert net.history[:, "epoch"] == [1, 2, 3, 4]
    assert net.history[2:, "verified_current"] == [3, 4]
    v4 = verified_current(run_dir)
    assert v4.epoch == 4 and root_matches(run_dir, v4)
    assert [v.epoch for v in CheckpointStore(run_dir).read_manifest().versions] == [2, 3, 4]
    assert version_folders(run_dir) == named_folders(run_dir)


def test_read_only_directory_loads_warns_and_trains_on(small_disk, data):
    run_dir = small_disk / "run"
    run(run_dir, data, epochs=2)
    v2 = verified_current(run_dir)
    before = {name: (run_dir / name).read_bytes() for name in os.listdir(run_dir) if name.endswith(".pt")}
    partial = run_dir / "versions" / "epoch-000009-abcdef"  # left by a killed writer
    partial.mkdir()
    (partial / "params.pt").write_bytes(b"half a file")
    remount = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True, text=True)
    if remount.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only: {remount.stderr.strip()}")
    try:
        net, messages = run(run_dir, data, epochs=2)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], capture_output=True)
    assert net.history[:, "epoch"] == [1, 2, 3, 4]  # loaded epoch 2, trained 2 more
    assert len(messages) == 3, messages
    assert "could not finish what an earlier commit left undone" in messages[0]
    assert "Read-only file system" in messages[0] and "version 2 (epoch 2) stays the current one" in messages[0]
    assert all("Read-only file system" in m and "previous checkpoint stays the current one" in m
               for m in messages[1:])
    assert not any("no space left" in m for m in messages)
    assert verified_current(run_dir).id == v2.id
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert partial.exists()  # nothing could be removed; the next writable start removes it
    shutil.rmtree(partial)
