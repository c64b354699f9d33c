"""Fault injection: SIGKILL a training process at random instants, resume it, and again, and again.

A training process (``Checkpoint(monitor=None)`` + ``LoadInitState(until_max_epochs=True)``,
12 epochs) is a real child process, forked from this already warmed-up pytest process (a fork
starts in milliseconds; a fresh interpreter importing torch takes seconds). The test hook
(``store.set_commit_pause``) slows every commit down (a sleep after each file, before and
after the manifest replace), so most kills land inside commits. After each SIGKILL the parent

- checks the directory as a new process would find it: the manifest reads without a warning and
  every version it lists verifies (sizes, sha256) and holds complete files (its history has
  epochs 1..n, its train state says epoch n): a kill never leaves a listed-but-broken version;
- records the evidence of a kill inside a commit (a new unfinished version folder, a new temp
  file, or a manifest that moved on while the plain files at the root did not) and, from markers
  the child writes at each commit stage, where exactly the kill landed;
- starts the next process, which logs what ``latest_verified()`` gives before training and what
  ``LoadInitState`` loaded: always the version the parent saw as current, intact, with the same
  weights as its ``params.pt``.

The run that finishes normally must end with the same weights (``torch.equal``), losses and
epochs 1..12 as an uninterrupted run.

Why forking works here: the children set ``torch.set_num_threads(1)`` before any torch op, so an
OpenMP pool the parent may own is never used after the fork (a child on 2 threads hangs).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import signal
import sys
import time
import traceback
import warnings
from typing import Any, Callable

import pytest
import torch

from helpers import make_net
from prefect_torch.callbacks import Callback, Checkpoint, LoadInitState
from prefect_torch.checkpoint import CheckpointFallbackWarning, CheckpointStore
from prefect_torch.checkpoint import store as store_module

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="forks a process that already imported torch")

MAX_EPOCHS = 12
COMMIT_PAUSES = 7  # _test_pause calls per commit: 5 files, before and after the manifest replace
FILES = ("params.pt", "optimizer.pt", "criterion.pt", "history.json", "train_state.pt")


# -- the training process --------------------------------------------------------------------------
class _RecordLoad(Callback):
    """Logs what LoadInitState loaded (it runs just after it, at on_train_begin)."""

    def __init__(self, log: Callable[..., None], load: LoadInitState, store: CheckpointStore, version: Any):
        self.log, self.load, self.store, self.version = log, load, store, version

    def on_train_begin(self, net: Any, **kwargs: Any) -> None:
        entry: dict[str, Any] = {"event": "loaded", "loaded_epoch": self.load.loaded_epoch_,
                                 "history_epochs": [row["epoch"] for row in net.history]}
        if self.version is not None:
            saved = torch.load(self.store.source(self.version, "params.pt"), weights_only=True)
            state = net.module_.state_dict()
            entry["params_equal_version"] = (saved.keys() == state.keys()
                                             and all(torch.equal(saved[k], state[k]) for k in saved))
        self.log(**entry)


def _net(dirname: str, background: bool = False, max_epochs: int = MAX_EPOCHS):
    """The net of the issue: a checkpoint every epoch, resumed until ``max_epochs`` in all."""
    cp = Checkpoint(monitor=None, dirname=dirname, background=background)
    load = LoadInitState(cp, until_max_epochs=True)
    return make_net(max_epochs=max_epochs, callbacks=[cp, load]), cp, load


def _append_line(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode() + b"\n")
    finally:
        os.close(fd)


def _instrument(mark: Callable[[str], None]) -> None:
    """Mark each commit stage in the phase file (in the child only; the stages still sleep)."""
    pause = store_module._test_pause

    def marked_pause(stage: str) -> None:
        mark(stage)
        pause(stage)

    commit = CheckpointStore.commit

    def marked_commit(self, files, epoch, *args, **kwargs):
        mark(f"commit-begin {epoch}")
        version = commit(self, files, epoch, *args, **kwargs)
        mark(f"commit-end {epoch}")
        return version

    store_module._test_pause = marked_pause
    CheckpointStore.commit = marked_commit


def _train_child(index: int, dirname: str, data, run_dir: str, delay: float, background: bool) -> None:
    """The body of one training process: resume from ``dirname`` and train to epoch 12. Never returns."""
    code = 1
    log_path = os.path.join(run_dir, "children.jsonl")
    phase_path = os.path.join(run_dir, f"phases-{index}.txt")
    start = time.monotonic()

    def log(**entry: Any) -> None:
        _append_line(log_path, json.dumps({"child": index, "t": time.monotonic() - start, **entry}))

    def mark(label: str) -> None:
        _append_line(phase_path, f"{time.monotonic() - start:.4f} {label}")

    try:
        torch.set_num_threads(1)  # first: the parent's OpenMP pool (if any) is unusable after fork
        store_module.set_commit_pause((lambda stage: time.sleep(delay)) if delay else None)
        warnings.resetwarnings()
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, category, *args, **kwargs: log(
            event="warning", category=category.__name__, message=str(message))
        _instrument(mark)
        mark("start")
        torch.manual_seed(0)
        X, y = data
        store = CheckpointStore(dirname)
        version = store.latest_verified()
        log(event="start", latest=None if version is None else
            {"id": version.id, "epoch": version.epoch, "folder": version.folder},
            problems=None if version is None else store.problems(version))
        net, _, load = _net(dirname, background)
        net.callbacks.append(("record_load", _RecordLoad(log, load, store, version)))
        net.fit(X, y)
        mark("trained")
        result = {
            "module": {k: v.clone() for k, v in net.module_.state_dict().items()},
            "epochs": [row["epoch"] for row in net.history],
            "train_loss": [row["train_loss"] for row in net.history],
            "valid_loss": [row["valid_loss"] for row in net.history],
            "loaded_epoch": load.loaded_epoch_,
        }
        result_path = os.path.join(run_dir, f"result-{index}.pt")
        torch.save(result, result_path + ".tmp")
        os.replace(result_path + ".tmp", result_path)
        mark("done")
        code = 0
    except BaseException:
        try:
            log(event="error", traceback=traceback.format_exc())
        finally:
            os._exit(1)
    finally:
        os._exit(code)


def _fork(body: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            body()
        finally:
            os._exit(1)
    return pid


def _wait(pid: int, timeout: float) -> int:
    """Wait for a child; a hung one is killed and reported."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} did not finish in {timeout} s (hung after fork?)")


def _kill_at(pid: int, delay: float) -> int:
    """SIGKILL the child ``delay`` seconds after its start (unless it ended before); its wait status."""
    deadline = time.monotonic() + delay
    while (left := deadline - time.monotonic()) > 0:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(min(left, 0.003))
    os.kill(pid, signal.SIGKILL)  # a zombie (exited just now) ignores it; waitpid tells
    return os.waitpid(pid, 0)[1]


def _read_log(run_dir: str, index: int | None = None) -> list[dict]:
    path = os.path.join(run_dir, "children.jsonl")
    if not os.path.exists(path):
        return []
    entries = [json.loads(line) for line in _read_text(path).splitlines() if line]
    return [e for e in entries if index is None or e["child"] == index]


def _read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def _child_error(run_dir: str, index: int) -> str:
    errors = [e["traceback"] for e in _read_log(run_dir, index) if e["event"] == "error"]
    return errors[-1] if errors else "(no traceback logged)"


# -- the reference: one uninterrupted run, in a forked child too --------------------------------------
def _warm_up(tmp_dir: str, data) -> None:
    """Run the code paths once here, so forked children start warm (the first fit imports
    torch._dynamo, 1-4 s); on 1 thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(2):  # train, then a resume that loads
            net, _, _ = _net(tmp_dir, max_epochs=2)
            net.fit(*data)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from prefect_torch.examples import make_data

    data = make_data(200)
    _warm_up(str(tmp_path_factory.mktemp("warm")), data)
    run_dir = str(tmp_path_factory.mktemp("reference"))
    dirname = os.path.join(run_dir, "cp")
    started = time.monotonic()
    pid = _fork(lambda: _train_child(0, dirname, data, run_dir, 0.0, False))
    status = _wait(pid, timeout=120)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, _child_error(run_dir, 0)
    result = torch.load(os.path.join(run_dir, "result-0.pt"), weights_only=True)
    phases = _phases(run_dir, 0)
    first_commit = next(t for t, label in phases if label.startswith("commit-begin"))
    assert result["epochs"] == list(range(1, MAX_EPOCHS + 1))
    assert result["loaded_epoch"] is None
    return {
        "data": data,
        "result": result,
        "wall": time.monotonic() - started,
        # from a child's start to its first commit (startup and an epoch's training), and the time
        # an epoch takes besides the commit pauses (the reference runs without them)
        "startup": first_commit,
        "epoch_work": max(phases[-1][0] - first_commit, 0.0) / MAX_EPOCHS,
    }


def _phases(run_dir: str, index: int) -> list[tuple[float, str]]:
    path = os.path.join(run_dir, f"phases-{index}.txt")
    if not os.path.exists(path):
        return []
    rows = []
    for line in _read_text(path).splitlines():
        t, _, label = line.partition(" ")
        rows.append((float(t), label))
    return rows


def _where_killed(phases: list[tuple[float, str]]) -> str:
    """Where the child was at the kill, from its last markers."""
    labels = [label for _, label in phases]
    if not labels:
        return "starting"
    stage, open_commit = None, False
    for label in labels:
        if label.startswith("commit-begin"):
            open_commit, stage = True, "writing files"
        elif label.startswith("commit-end"):
            open_commit = False
        elif label == "file":
            stage = "writing files"
        elif label == "before-manifest":
            stage = "replacing the manifest"
        elif label == "after-manifest":
            stage = "publishing/pruning"
    if open_commit:
        return f"commit: {stage}"
    if labels[-1] in ("trained", "done"):
        return "after training"
    if not any(label.startswith("commit") for label in labels):
        return "loading or first epoch"
    return "training"


# -- what a new process finds -----------------------------------------------------------------------
@dataclasses.dataclass
class Snapshot:
    current_id: int | None
    current_epoch: int
    generation: int
    listed: int
    unlisted: frozenset
    temp_files: frozenset
    root_is_current: bool


def _sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        return None


def _inspect(dirname: str, when: str) -> Snapshot:
    """Check the directory as a resuming process finds it: every listed version is intact."""
    store = CheckpointStore(dirname)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a damaged manifest (rebuilt with a warning) fails here
        manifest = store.read_manifest()
    versions = manifest.versions if manifest else []
    for version in versions:
        problems = store.problems(version)
        assert problems == [], f"{when}: listed version {version.id} (epoch {version.epoch}): {problems}"
        assert sorted(version.files) == sorted(FILES), when
        history = json.loads(store.location.read_bytes(f"{version.folder}/history.json"))
        assert [row["epoch"] for row in history] == list(range(1, version.epoch + 1)), when
        state = torch.load(store.source(version, "train_state.pt"), weights_only=True)
        assert state["epoch"] == version.epoch, when
    current = manifest.version(manifest.current) if manifest else None
    assert (current is None) == (not versions), when
    listed = {v.folder.rsplit("/", 1)[-1] for v in versions}
    folders = set(store.location.listdir("versions"))
    unlisted = {name for name in folders if name.startswith("epoch-")} - listed
    temp_files = {name for name in store.location.listdir("") if ".tmp-" in name}
    temp_files |= {f"versions/{name}" for name in folders if ".tmp-" in name}
    root_is_current = current is None or all(
        _sha256(os.path.join(dirname, name)) == entry.sha256 for name, entry in current.files.items())
    return Snapshot(current.id if current else None, current.epoch if current else 0,
                    manifest.generation if manifest else 0, len(versions), frozenset(unlisted),
                    frozenset(temp_files), root_is_current)


# -- the kill loop --------------------------------------------------------------------------------------
@dataclasses.dataclass
class KillRun:
    kills: int = 0
    kills_in_commit_on_disk: int = 0  # evidence left on disk (see _inspect)
    where: dict = dataclasses.field(default_factory=dict)  # from the children's stage markers
    kills_with_progress: int = 0
    loaded_epochs: list = dataclasses.field(default_factory=list)  # what each resume loaded (None: nothing)
    children: int = 0
    stale_root_after_kill: int = 0
    delays: list = dataclasses.field(default_factory=list)
    final: dict | None = None
    final_snapshot: Snapshot | None = None
    seconds: float = 0.0

    @property
    def kills_in_commit(self) -> int:
        return sum(n for where, n in self.where.items() if where.startswith("commit"))

    def summary(self) -> str:
        loaded = [epoch for epoch in self.loaded_epochs if epoch is not None]
        end = self.final_snapshot
        return (
            f"{self.kills} kills in {self.children} processes ({self.seconds:.1f} s); inside commits: "
            f"{self.kills_in_commit} by stage markers, {self.kills_in_commit_on_disk} with evidence on disk; "
            f"kills after progress: {self.kills_with_progress}; resumes that loaded a checkpoint: "
            f"{len(loaded)} (epochs {sorted(set(loaded))}); "
            f"kills after which the root files were behind the manifest: "
            f"{self.stale_root_after_kill}; where: {dict(sorted(self.where.items()))}; left at the end: "
            f"{len(end.temp_files) if end else '?'} temp files, "
            f"{len(end.unlisted) if end else '?'} unfinished folders"
        )


def _run_with_kills(tmp_path, reference: dict, *, min_kills: int, background: bool, seed: int,
                    delays: tuple[float, float], window_epochs: float, max_children: int = 400) -> KillRun:
    """Kill training processes until ``min_kills`` kills are done, then let one finish.

    Each child gets a random commit delay ``d`` from ``delays`` and is killed at a uniform instant
    in ``[0, W]``. Until ``min_kills``, ``W`` covers the child's startup and ``window_epochs``
    epochs, but stays below what finishing the run needs (``remaining * 7 * d`` of sleeping at
    least), so no child can finish early. Afterwards ``W`` is 1.5 times the expected rest of
    the run, so a child finishes soon (and some are still killed on the way).
    """
    rng = random.Random(seed)
    data = reference["data"]
    run_dir = str(tmp_path)
    dirname = os.path.join(run_dir, "cp")
    stats = KillRun()
    started = time.monotonic()
    before = _inspect(dirname, "before the first process")
    for index in range(1, max_children + 1):
        delay = rng.uniform(*delays)
        remaining = MAX_EPOCHS - before.current_epoch
        epoch_time = reference["epoch_work"] + COMMIT_PAUSES * delay
        if stats.kills < min_kills:
            window = min(reference["startup"] + window_epochs * epoch_time,
                         remaining * COMMIT_PAUSES * delay - delay)
        else:
            window = 1.5 * (reference["startup"] + remaining * epoch_time) + 0.05
        kill_after = rng.uniform(0, window)
        stats.children += 1
        pid = _fork(lambda: _train_child(index, dirname, data, run_dir, delay, background))
        status = _kill_at(pid, kill_after)
        when = f"after child {index} (seed {seed}, commit delay {delay:.3f} s, kill after {kill_after:.3f} s)"
        if os.WIFEXITED(status):
            assert os.WEXITSTATUS(status) == 0, f"{when}: {_child_error(run_dir, index)}"
        else:
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (when, status)
        after = _inspect(dirname, when)
        _check_child_log(run_dir, index, before, when)
        stats.loaded_epochs += [entry["loaded_epoch"]
                              for entry in _read_log(run_dir, index) if entry["event"] == "loaded"]
        assert after.current_epoch >= before.current_epoch, when
        if os.WIFEXITED(status):
            stats.final = torch.load(os.path.join(run_dir, f"result-{index}.pt"), weights_only=True)
            stats.final_snapshot = after
            break
        stats.kills += 1
        stats.delays.append(kill_after)
        where = _where_killed(_phases(run_dir, index))
        stats.where[where] = stats.where.get(where, 0) + 1
        stats.kills_with_progress += after.current_epoch > before.current_epoch
        in_commit = bool(after.unlisted - before.unlisted or after.temp_files - before.temp_files
                         or (not after.root_is_current and after.generation != before.generation))
        stats.kills_in_commit_on_disk += in_commit
        stats.stale_root_after_kill += not after.root_is_current
        before = after
    else:
        raise AssertionError(f"no process finished in {max_children} tries: {stats.summary()}")
    stats.seconds = time.monotonic() - started
    unexpected = [entry for entry in _read_log(run_dir)
                  if entry["event"] == "warning" and entry["category"].startswith("Checkpoint")]
    assert unexpected == [], unexpected  # no save failed, no fallback was needed
    return stats


def _check_child_log(run_dir: str, index: int, before: Snapshot, when: str) -> None:
    """The child resumed from the version the parent saw as current (intact), never from another."""
    for entry in _read_log(run_dir, index):
        if entry["event"] == "start":
            latest = entry["latest"]
            assert (latest and latest["id"]) == before.current_id, (when, entry)
            assert entry["problems"] in (None, []), (when, entry)
        elif entry["event"] == "loaded":
            expected = before.current_epoch or None
            assert entry["loaded_epoch"] == expected, (when, entry)
            assert entry["history_epochs"] == list(range(1, before.current_epoch + 1)), (when, entry)
            assert entry.get("params_equal_version", True) is True, (when, entry)


def _assert_matches_reference(stats: KillRun, reference: dict, dirname: str) -> None:
    expected, final = reference["result"], stats.final
    assert final is not None
    assert final["epochs"] == list(range(1, MAX_EPOCHS + 1))
    assert final["train_loss"] == expected["train_loss"]
    assert final["valid_loss"] == expected["valid_loss"]
    assert final["module"].keys() == expected["module"].keys()
    for key, tensor in expected["module"].items():
        assert torch.equal(final["module"][key], tensor), key
    # the finished run left the plain files at the current version, and no temp file
    assert stats.final_snapshot.root_is_current, stats.summary()
    assert stats.final_snapshot.temp_files == frozenset(), stats.summary()
    store = CheckpointStore(dirname)
    version = store.latest_verified()
    assert version.epoch == MAX_EPOCHS
    saved = torch.load(store.source(version, "params.pt"), weights_only=True)
    for key, tensor in expected["module"].items():
        assert torch.equal(saved[key], tensor), key


def _report(name: str, stats: KillRun) -> None:
    print(f"\n{name}: {stats.summary()}")


# -- the tests --------------------------------------------------------------------------------------------
def test_fork_after_parent_ran_multithreaded_torch(tmp_path, reference):
    """The premise of the kill tests: a fork of this process trains, starts warm, and gets the
    reference's weights, even after the parent ran torch on 2 threads (an OpenMP pool exists)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a = torch.randn(512, 512)
        (a @ a).sum().item()
    finally:
        torch.set_num_threads(threads)
    run_dir = str(tmp_path)
    started = time.monotonic()
    pid = _fork(lambda: _train_child(1, os.path.join(run_dir, "cp"), reference["data"], run_dir, 0.0, False))
    status = _wait(pid, timeout=60)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, _child_error(run_dir, 1)
    assert time.monotonic() - started < 10
    result = torch.load(os.path.join(run_dir, "result-1.pt"), weights_only=True)
    for key, tensor in reference["result"]["module"].items():
        assert torch.equal(result["module"][key], tensor), key
    assert reference["startup"] < 2.0, reference  # a warm fork starts in milliseconds


def test_sigkill_during_training_and_commits_resumes_bit_exact_quick(tmp_path, reference):
    """8+ SIGKILLs of real training processes, mostly inside (slowed-down) commits."""
    stats = _run_with_kills(tmp_path, reference, min_kills=8, background=False, seed=1,
                            delays=(0.02, 0.02), window_epochs=2.0)
    _report("quick", stats)
    assert stats.kills >= 8
    assert stats.kills_in_commit >= 3, stats.summary()
    assert stats.kills_in_commit_on_disk >= 2, stats.summary()
    _assert_matches_reference(stats, reference, os.path.join(tmp_path, "cp"))


@pytest.mark.slow
@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background"])
def test_sigkill_at_random_instants_resumes_bit_exact(tmp_path, reference, background):
    """60 SIGKILLs at random instants (commits slowed by 0.02-0.05 s per stage), then a run
    that finishes: every resume loaded a committed, intact version; the end is bit-exact."""
    stats = _run_with_kills(tmp_path, reference, min_kills=60, background=background, seed=2 + background,
                            delays=(0.02, 0.05), window_epochs=1.0)
    _report("background" if background else "foreground", stats)
    assert stats.kills >= 50
    assert stats.kills_in_commit >= 10, stats.summary()
    assert stats.kills_in_commit_on_disk >= 10, stats.summary()
    assert sum(epoch is not None for epoch in stats.loaded_epochs) >= 5, stats.summary()
    _assert_matches_reference(stats, reference, os.path.join(tmp_path, "cp"))


# -- a kill between the manifest replace and the end of publishing ------------------------------------------
def _stop_child(dirname: str, data, run_dir: str, where: str) -> None:
    """Train 2 epochs, but stop (sleep, to be killed) in the commit of epoch 2 at ``where``. Never returns."""
    try:
        torch.set_num_threads(1)
        store_module.set_commit_pause(None)
        counts: dict[str, int] = {}

        def stop_at(point: str, nth: int) -> None:
            counts[point] = counts.get(point, 0) + 1
            if point == where and counts[point] == nth:
                _append_line(os.path.join(run_dir, "stopped"), point)
                time.sleep(120)

        pause, replace = store_module._test_pause, os.replace
        store_module._test_pause = lambda stage: (stop_at(stage, 2), pause(stage))

        def replace_and_stop(src, dst, *args, **kwargs):
            # a plain file is published by a temp file renamed over it; epoch 2's params.pt is the 2nd
            if os.path.basename(dst) == "params.pt":
                stop_at("temp", 2)  # the temp file exists, not yet renamed
                replace(src, dst, *args, **kwargs)
                stop_at("publish", 2)  # params.pt is epoch 2's, the other plain files epoch 1's
            else:
                replace(src, dst, *args, **kwargs)

        os.replace = replace_and_stop
        torch.manual_seed(0)
        net, _, _ = _net(dirname, max_epochs=2)
        net.fit(*data)
    except BaseException:
        _append_line(os.path.join(run_dir, "error"), traceback.format_exc())
    finally:
        os._exit(3)  # it should have been killed


@pytest.fixture
def killed_inside_publish(request, tmp_path, data) -> str:
    """A checkpoint directory whose writer was SIGKILLed in epoch 2's commit, after the manifest
    named epoch 2, at ``request.param``: in the pause after the manifest replace ("after-manifest"),
    after the first plain file was replaced ("publish"), or when its temp file was written but not
    yet renamed over it ("temp")."""
    run_dir = str(tmp_path)
    dirname = os.path.join(run_dir, "cp")
    pid = _fork(lambda: _stop_child(dirname, data, run_dir, request.param))
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(run_dir, "stopped")):
        if os.waitpid(pid, os.WNOHANG)[0] or time.monotonic() > deadline:
            error = os.path.join(run_dir, "error")
            pytest.fail("the child did not stop: " + (_read_text(error) if os.path.exists(error) else "?"))
        time.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    manifest = CheckpointStore(dirname).read_manifest()
    if manifest.version(manifest.current).epoch != 2:  # the kill must come after the manifest named epoch 2
        pytest.fail(f"the manifest names epoch {manifest.version(manifest.current).epoch}, not 2")
    return dirname


@pytest.mark.parametrize("killed_inside_publish", ["after-manifest", "publish"], ids=["stale", "mixed"],
                         indirect=True)
def test_root_files_hold_the_current_version_after_a_kill_and_a_resume(killed_inside_publish, data, request):
    """A kill after the manifest replace leaves the plain files behind (stale, or a mix of two
    versions); a resume, even one with nothing left to train, brings them to the current version."""
    dirname = killed_inside_publish
    current = CheckpointStore(dirname).latest_verified()
    fresh = {name for name, entry in current.files.items()
             if _sha256(os.path.join(dirname, name)) == entry.sha256}
    assert "history.json" not in fresh  # the root still says epoch 1...
    mixed = request.node.callspec.params["killed_inside_publish"] == "publish"
    assert ("params.pt" in fresh) == mixed  # ...with epoch 2's weights if "mixed"
    torch.manual_seed(0)
    net, _, load = _net(dirname, max_epochs=2)
    net.fit(*data)  # the resume: both epochs are done, nothing to train
    assert load.loaded_epoch_ == 2
    # skorch (and load_params(f_params=...)) read the plain files: they should be epoch 2's
    with open(os.path.join(dirname, "history.json")) as f:
        assert [row["epoch"] for row in json.load(f)] == [1, 2]
    assert _inspect(dirname, "after the resume").root_is_current


@pytest.mark.parametrize("killed_inside_publish", ["temp"], indirect=True)
def test_temp_files_of_a_killed_publish_are_cleaned_up(killed_inside_publish, data):
    """The temp file (a full copy) of a publish cut by a kill is removed by the next resume,
    even one with nothing left to train."""
    dirname = killed_inside_publish
    leftovers = [name for name in os.listdir(dirname) if ".tmp-" in name]
    assert leftovers == [".params.pt.tmp-" + leftovers[0].rsplit("-", 1)[-1]]  # what the kill left
    torch.manual_seed(0)
    net, _, load = _net(dirname, max_epochs=2)
    net.fit(*data)
    assert load.loaded_epoch_ == 2
    assert [name for name in os.listdir(dirname) if ".tmp-" in name] == []
    assert _inspect(dirname, "after the resume").root_is_current


# -- damaged files: fall back to the previous version --------------------------------------------------
def _damage(path: str, how: str) -> None:
    size = os.path.getsize(path)
    if how == "truncate":
        os.truncate(path, size // 2)
    else:  # flip one bit in the middle (same size: only the sha256 tells)
        with open(path, "r+b") as f:
            f.seek(size // 2)
            byte = f.read(1)[0]
            f.seek(size // 2)
            f.write(bytes([byte ^ 0x10]))


@pytest.mark.parametrize("name, how", [
    ("params.pt", "truncate"), ("params.pt", "flip"),
    ("train_state.pt", "flip"), ("history.json", "truncate"),
])
def test_damaged_newest_version_falls_back_and_ends_bit_exact(tmp_path, data, name, how):
    dirname = str(tmp_path / "cp")
    torch.manual_seed(0)
    net, cp, _ = _net(dirname)
    net.fit(*data)
    expected = {k: v.clone() for k, v in net.module_.state_dict().items()}
    losses = net.history[:, "train_loss"]
    store = cp.store()
    newest = store.latest_verified()
    assert newest.epoch == MAX_EPOCHS
    _damage(os.path.join(dirname, *newest.folder.split("/"), name), how)
    assert store.problems(newest) != []

    torch.manual_seed(0)
    net, cp, load = _net(dirname)
    damaged = rf"version {newest.id} \(epoch {MAX_EPOCHS}\) is damaged"
    with pytest.warns(CheckpointFallbackWarning, match=damaged):
        net.fit(*data)
    assert load.loaded_epoch_ == MAX_EPOCHS - 1
    assert net.history[:, "epoch"] == list(range(1, MAX_EPOCHS + 1))
    assert net.history[:, "train_loss"] == losses
    for key, tensor in expected.items():
        assert torch.equal(net.module_.state_dict()[key], tensor), key
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed = store.latest_verified()  # the re-done epoch 12 is current, intact
    assert resumed.epoch == MAX_EPOCHS and resumed.id > newest.id
    saved = torch.load(store.source(resumed, "params.pt"), weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in expected.items())


def test_two_damaged_versions_fall_back_two(tmp_path, data):
    dirname = str(tmp_path / "cp")
    torch.manual_seed(0)
    net, cp, _ = _net(dirname)
    net.fit(*data)
    expected = {k: v.clone() for k, v in net.module_.state_dict().items()}
    store = cp.store()
    manifest = store.read_manifest()
    for version in manifest.versions[-2:]:
        _damage(os.path.join(dirname, *version.folder.split("/"), "params.pt"), "flip")
    torch.manual_seed(0)
    net, cp, load = _net(dirname)
    with pytest.warns(CheckpointFallbackWarning, match=f"Loading version .* \\(epoch {MAX_EPOCHS - 2}\\)"):
        net.fit(*data)
    assert load.loaded_epoch_ == MAX_EPOCHS - 2
    assert net.history[:, "epoch"] == list(range(1, MAX_EPOCHS + 1))
    for key, tensor in expected.items():
        assert torch.equal(net.module_.state_dict()[key], tensor), key
