"""One writer per checkpoint directory, with real processes: on SeaweedFS (S3 conditional writes),
on an fsspec file system without conditional writes, and on a local disk (flock)."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
import warnings

import pytest
import torch
from fsspec.implementations.memory import MemoryFileSystem

from prefect_torch.checkpoint import (
    CheckpointConcurrencyWarning,
    CheckpointConflictError,
    CheckpointStore,
    PendingFile,
)
from s3_server import s3_server  # noqa: F401  (one real S3 server per test session, started on first use)

HERE = os.path.dirname(__file__)


class StoreWorker:
    """A ``store_worker.py`` process: one checkpoint writer, driven line by line."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "store_worker.py")], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def send(self, **command) -> None:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def reply(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, f"the worker ended (exit status {self.proc.poll()})"
        return json.loads(line)

    def do(self, **command) -> dict:
        self.send(**command)
        return self.reply()

    def close(self) -> None:
        self.proc.kill()  # it keeps nothing worth a clean exit
        self.proc.wait(timeout=60)
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def workers():
    """Two writer processes for the module's tests (each test opens fresh stores in them)."""
    started = [StoreWorker(), StoreWorker()]
    try:
        yield started
    finally:
        for worker in started:
            worker.close()


def weights_of(store, version):
    return torch.load(store.source(version, "params.pt"), weights_only=True)["w"]


def assert_every_named_version_intact(store):
    manifest = store.read_manifest()
    for version in manifest.versions:
        assert store.problems(version) == [], f"version {version.id} (epoch {version.epoch}) is damaged"
        assert torch.equal(weights_of(store, version), torch.full((64, 1024), float(version.epoch)))
    return manifest


def race(workers, url, options, rounds, strip=False):
    """``rounds`` rounds of both workers beginning as fresh writers, then committing epoch ``r``
    at the same instant; yields each round's replies (in worker order) and the store's state."""
    reader = CheckpointStore(url, **options)
    for r in range(1, rounds + 1):
        for i, worker in enumerate(workers):
            assert worker.do(op="open", url=url, options=options, keep_last=1, writer={"worker": f"w{i}"},
                             strip_conditions=strip)["ok"]
            assert worker.do(op="begin")["ok"]
        at = time.time() + 0.3
        for worker in workers:
            worker.send(op="commit", epoch=r, at=at)
        replies = [worker.reply() for worker in workers]
        yield r, replies, reader


@pytest.mark.slow
def test_two_processes_committing_at_once_to_s3_one_wins_one_is_refused(s3_server, workers):  # noqa: F811
    url = s3_server.url(f"single-writer/{secrets.token_hex(4)}")
    options = s3_server.storage_options()
    lost_swaps = 0
    for r, replies, store in race(workers, url, options, rounds=20):
        assert [reply["warnings"] for reply in replies] == [[], []]  # SeaweedFS enforces If-Match
        winners = [i for i, reply in enumerate(replies) if reply["ok"]]
        assert len(winners) == 1, f"round {r}: {replies}"
        loser = replies[1 - winners[0]]
        assert loser["error"].startswith("CheckpointConflictError")
        assert url in loser["error"] and f"worker w{winners[0]}" in loser["error"]
        lost_swaps += sum(reply["lost_swaps"] for reply in replies)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            current = store.latest_verified()
            manifest = assert_every_named_version_intact(store)
        assert current.epoch == r and current.writer["worker"] == f"w{winners[0]}"
        # the loser's files are gone and the winner pruned to keep_last=1 (plus the best, epoch 1);
        # SeaweedFS may keep an emptied folder's entry, so count the folders that hold objects
        fs, base = store.location.fs, store.location._base
        folders = {path[len(base) + 1:].rsplit("/", 1)[0] for path in fs.find(f"{base}/versions")
                   if "/epoch-" in path}
        assert folders == {v.folder for v in manifest.versions}
        assert torch.equal(torch.load(store.location.open_read("params.pt"), weights_only=True)["w"],
                           torch.full((64, 1024), float(r)))
    print(f"20 rounds: {lost_swaps} refused by the endpoint's compare-and-swap, "
          f"{20 - lost_swaps} by the generation check")


@pytest.mark.slow
def test_s3_endpoint_ignoring_conditional_writes_warns_and_loses_nothing(s3_server, workers):  # noqa: F811
    url = s3_server.url(f"single-writer-unenforced/{secrets.token_hex(4)}")
    options = s3_server.storage_options()
    refused = 0
    for r, replies, store in race(workers, url, options, rounds=8, strip=True):
        for reply in replies:
            if r == 1:  # once per directory and process
                assert len(reply["warnings"]) == 1
                assert "CheckpointConcurrencyWarning" in reply["warnings"][0]
                assert f"S3 endpoint {s3_server.endpoint_url} ignores conditional writes" in reply["warnings"][0]
                assert s3_server.secret_key not in reply["warnings"][0]
            else:
                assert reply["warnings"] == []
        refused += sum(not reply["ok"] for reply in replies)
        assert any(reply["ok"] for reply in replies)
        current = store.latest_verified()  # whichever manifest won, its versions are all there
        assert current.epoch == r
        assert_every_named_version_intact(store)
    print(f"unenforced: {refused} of 8 rounds refused a writer (by the generation check)")


def test_probe_finds_conditional_writes_on_seaweedfs_and_leaves_nothing(s3_server):  # noqa: F811
    url = s3_server.url(f"probe/{secrets.token_hex(4)}")
    store = CheckpointStore(url, **s3_server.storage_options())
    assert store.location.unenforced() is None
    left = store.location.fs.find(store.location._base)
    assert not [path for path in left if ".prefect-torch-probe-" in path]  # the probe object is gone


def test_the_endpoint_named_in_warnings_carries_no_credentials():
    from prefect_torch.checkpoint.location import FsspecLocation

    location = FsspecLocation("s3://bucket/cp", key="AKIDEXAMPLE", secret="s3cr3t-value",
                              endpoint_url="http://user:s3cr3t-value@storage.example:9000")
    assert location.endpoint() == "S3 endpoint http://storage.example:9000"


# -- an fsspec file system without conditional writes ----------------------------------------------
class RacingMemoryFileSystem(MemoryFileSystem):
    """In-memory files, as another process on a shared store would see them (no conditional writes)."""

    protocol = "racingmemory"


def pending(epoch):
    weights = {"w": torch.full((64, 1024), float(epoch))}
    return [PendingFile("params.pt", "f_params", lambda f: torch.save(weights, f))]


def test_storage_without_conditional_writes_warns_once_and_prunes_nothing_another_writer_names():
    from fsspec.registry import register_implementation

    register_implementation("racingmemory", RacingMemoryFileSystem, clobber=True)
    url = f"racingmemory://cp-{uuid.uuid4().hex}"
    a = CheckpointStore(url, keep_last=1, writer={"worker": "a"})
    b = CheckpointStore(url, keep_last=2, writer={"worker": "b"})
    try:
        with pytest.warns(CheckpointConcurrencyWarning, match="'racingmemory'.*no conditional writes") as caught:
            a.commit(pending(1), epoch=1)
            a.commit(pending(2), epoch=2)
        assert len([w for w in caught if w.category is CheckpointConcurrencyWarning]) == 1
        a.begin()
        b.begin()
        # both read generation 2; a writes generation 3 (dropping epoch 2), then b overwrites it
        # with its own generation 3 (nothing refuses it), which keeps epoch 2; only then does a prune
        b_read, a_wrote, b_wrote = threading.Event(), threading.Event(), threading.Event()
        write_a, write_b, finish_a = a.location.write_if_unchanged, b.location.write_if_unchanged, a._finish

        def a_writes(*args):
            assert b_read.wait(30)
            write_a(*args)
            a_wrote.set()

        def b_writes(*args):
            b_read.set()
            assert a_wrote.wait(30)
            write_b(*args)
            b_wrote.set()

        def a_finishes_after_b(*args):
            assert b_wrote.wait(30)
            finish_a(*args)

        a.location.write_if_unchanged, b.location.write_if_unchanged, a._finish = a_writes, b_writes, a_finishes_after_b
        racer = threading.Thread(target=b.commit, args=(pending(4),), kwargs={"epoch": 4})
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # warned once already for this directory
            racer.start()
            a.commit(pending(3), epoch=3)
            racer.join(30)
        manifest = b.read_manifest()
        assert manifest.writer["worker"] == "b"
        # a found b's manifest before pruning: it pruned nothing and left the root files alone
        assert [v.epoch for v in manifest.versions] == [1, 2, 4]
        for version in manifest.versions:
            assert b.problems(version) == []
            assert torch.equal(weights_of(b, version), torch.full((64, 1024), float(version.epoch)))
        assert torch.equal(torch.load(b.location.open_read("params.pt"), weights_only=True)["w"],
                           torch.full((64, 1024), 4.0))
        folders = [n for n in a.location.listdir("versions") if n.startswith("epoch-")]
        assert len(folders) == 4  # a's epoch 3, named by no manifest now, is left alone
        assert b.latest_verified().epoch == 4
        with pytest.raises(CheckpointConflictError, match="worker b"):
            a.commit(pending(5), epoch=5)  # the same generation, but another writer's: a stops
        assert b.latest_verified().epoch == 4
    finally:
        a.location.remove_tree("")


def test_memory_urls_keep_writers_apart_with_a_lock_in_the_process():
    url = f"memory://cp-{uuid.uuid4().hex}"  # no other process sees it: no warning needed
    a = CheckpointStore(url, writer={"worker": "a"})
    b = CheckpointStore(url, writer={"worker": "b"})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            a.commit(pending(1), epoch=1)
            a.begin()
            b.begin()
            b.commit(pending(2), epoch=2)
            with pytest.raises(CheckpointConflictError, match="worker b"):
                a.commit(pending(3), epoch=3)
        assert [v.epoch for v in b.read_manifest().versions] == [1, 2]
        assert len([n for n in b.location.listdir("versions") if n.startswith("epoch-")]) == 2
    finally:
        a.location.remove_tree("")


# -- local disks --------------------------------------------------------------------------------------
def test_local_the_writer_that_began_before_the_others_last_commit_stops(tmp_path, workers):
    first, second = workers
    url = str(tmp_path / "cp")
    assert first.do(op="open", url=url, keep_last=None, writer={"worker": "first"})["ok"]
    assert first.do(op="begin")["ok"]
    assert first.do(op="commit", epoch=1)["ok"]
    # a second process starts while the first is training: it begins from epoch 1...
    assert second.do(op="open", url=url, keep_last=None, writer={"worker": "second"})["ok"]
    assert second.do(op="begin")["ok"]
    # ...the running one commits its next epoch before the newcomer's first commit
    assert first.do(op="commit", epoch=2)["ok"]
    refused = second.do(op="commit", epoch=2)
    assert not refused["ok"] and refused["error"].startswith("CheckpointConflictError")
    assert "worker first" in refused["error"] and url in refused["error"]
    named = {v.folder.split("/")[1] for v in CheckpointStore(url).read_manifest().versions}
    assert {n for n in os.listdir(tmp_path / "cp" / "versions") if n.startswith("epoch-")} == named
    assert first.do(op="commit", epoch=3)["ok"]  # the running writer goes on
    store = CheckpointStore(url)
    manifest = assert_every_named_version_intact(store)
    assert [(v.epoch, v.writer["worker"]) for v in manifest.versions] == [(1, "first"), (2, "first"), (3, "first")]
    assert sorted(os.listdir(tmp_path / "cp" / "versions")) == sorted(
        [v.folder.split("/")[1] for v in manifest.versions] + [".commit.lock", ".published"])


def test_local_a_restarted_attempt_takes_over_from_its_zombie(tmp_path, workers):
    zombie, restart = workers
    url = str(tmp_path / "cp")
    label = {"experiment": "e", "flow_run_id": "run-1"}
    assert zombie.do(op="open", url=url, keep_last=2, writer={})["ok"]
    assert zombie.do(op="begin")["ok"]
    assert zombie.do(op="claim", label={**label, "run_count": 1})["ok"]
    assert zombie.do(op="commit", epoch=1)["ok"]
    # Prefect starts the same flow run again while attempt 1 still runs (a zombie); the fencing
    # rules let the newer attempt claim (tests/test_orchestration_parts.py), and the claim alone
    # makes the zombie stop
    assert restart.do(op="open", url=url, keep_last=2, writer={})["ok"]
    assert restart.do(op="begin")["ok"]
    assert restart.do(op="claim", label={**label, "run_count": 2})["ok"]
    stopped = zombie.do(op="commit", epoch=2)
    assert not stopped["ok"] and "CheckpointConflictError" in stopped["error"]
    assert "run_count 2" in stopped["error"]
    assert restart.do(op="commit", epoch=2)["ok"]
    # the zombie cannot claim back either (a version was committed since it began)
    refused = zombie.do(op="claim", label={**label, "run_count": 1})
    assert not refused["ok"] and refused["error"].startswith("CheckpointConflictError")
    manifest = assert_every_named_version_intact(CheckpointStore(url))
    assert [v.epoch for v in manifest.versions] == [1, 2]
    assert manifest.versions[-1].writer["run_count"] == 2
