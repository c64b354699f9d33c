"""The orchestration layer's parts that need no Prefect server: claims and fencing rules, the
resume policy, epochs per task, records, and undoing a failed epoch."""
import json
import pathlib

import pytest
import torch

from prefect_torch import NeuralNetClassifier, train_state
from prefect_torch.callbacks import Checkpoint, LoadInitState, TrainEndCheckpoint
from prefect_torch.checkpoint import CheckpointConflictError, CheckpointStore, PendingFile
from prefect_torch.epochs import driving_epochs, run_epochs
from prefect_torch.examples import MyModule
from prefect_torch.orchestration import ResumeLimitError
from prefect_torch.orchestration.driver import auto_size
from prefect_torch.orchestration.fencing import claim_check
from prefect_torch.orchestration.fit import resume_callbacks
from prefect_torch.orchestration.records import checkpoint_record, checkpoint_rows, slug
from prefect_torch.orchestration.run import (
    Attempt,
    TrainingRun,
    default_experiment,
    earlier_attempt_target,
    find_checkpoint,
)


def label(run="run-a", attempt=1, experiment="exp"):
    return {"experiment": experiment, "flow_run_id": run, "flow_run_name": f"name-{run}", "run_count": attempt}


def commit(store, epoch, **metrics):
    return store.commit([PendingFile("params.pt", "f_params", lambda f: torch.save({"w": torch.ones(1)}, f))],
                        epoch=epoch, metrics=metrics)


def never_alive(claim):
    return None


def always_alive(claim):
    return f"flow run {claim['flow_run_name']!r}"


# -- claims in the store ---------------------------------------------------------------------
def test_claim_is_recorded_and_release_marks_it_finished(tmp_path):
    store = CheckpointStore(tmp_path)
    store.begin()
    store.claim({**label(), "target": 5})
    manifest = store.read_manifest()
    assert [c["flow_run_id"] for c in manifest.claims] == ["run-a"]
    assert manifest.claims[0]["target"] == 5 and manifest.claims[0]["finished"] is None
    assert manifest.writer["flow_run_id"] == "run-a"
    commit(store, 1)
    assert store.read_manifest().versions[0].writer["run_count"] == 1  # versions name their writer
    store.release()
    assert store.read_manifest().claims[0]["finished"] is not None


def test_a_newer_claim_stops_the_older_writer_at_its_next_commit(tmp_path):
    old, new = CheckpointStore(tmp_path), CheckpointStore(tmp_path)
    old.begin()
    old.claim(label(attempt=2))
    commit(old, 1)
    new.begin()
    new.claim(label(attempt=3))
    with pytest.raises(CheckpointConflictError, match="run_count 3.*took over this directory"):
        commit(old, 2)
    commit(new, 2)
    manifest = new.read_manifest()
    assert [v.epoch for v in manifest.versions] == [1, 2]
    assert manifest.version(manifest.current).writer["run_count"] == 3


def test_a_claim_after_another_writers_commit_is_refused_as_stale(tmp_path):
    late, other = CheckpointStore(tmp_path), CheckpointStore(tmp_path)
    late.begin()  # loads what is there (nothing)...
    other.begin()
    commit(other, 1)  # ...then another writer commits: training on from nothing would be stale
    with pytest.raises(CheckpointConflictError, match="committed version 1"):
        late.claim(label())


def test_release_after_a_take_over_leaves_the_new_claim_open(tmp_path):
    old, new = CheckpointStore(tmp_path), CheckpointStore(tmp_path)
    old.begin()
    old.claim(label(attempt=1))
    new.begin()
    new.claim(label(attempt=2))
    old.release()
    assert [c["finished"] for c in new.read_manifest().claims] == [None, None]


# -- the fencing rules -------------------------------------------------------------------------
def claimed(tmp_path, *labels):
    store = CheckpointStore(tmp_path)
    store.begin()
    for each in labels:
        store.claim(each)
    return store.read_manifest()


def test_an_older_attempt_of_the_same_flow_run_stops(tmp_path):
    manifest = claimed(tmp_path, label(attempt=3))
    with pytest.raises(CheckpointConflictError, match="attempt 2 of flow run 'name-run-a' stops: attempt 3"):
        claim_check(label(attempt=2), max_resumes=3, is_alive=always_alive)(manifest)
    claim_check(label(attempt=4), max_resumes=3, is_alive=always_alive)(manifest)  # a newer one goes on


def test_another_flow_run_blocks_only_while_alive(tmp_path):
    manifest = claimed(tmp_path, label(run="run-a"))
    with pytest.raises(CheckpointConflictError, match="being trained by flow run 'name-run-a'.*concurrency_limit"):
        claim_check(label(run="run-b"), max_resumes=3, is_alive=always_alive)(manifest)
    claim_check(label(run="run-b"), max_resumes=3, is_alive=never_alive)(manifest)


def test_a_finished_claim_never_blocks(tmp_path):
    store = CheckpointStore(tmp_path)
    store.begin()
    store.claim(label(run="run-a"))
    store.release()
    claim_check(label(run="run-b"), max_resumes=3, is_alive=always_alive)(store.read_manifest())


def test_attempts_that_never_get_past_the_same_checkpoint_stop_at_max_resumes(tmp_path):
    store = CheckpointStore(tmp_path)
    store.begin()
    store.claim(label(run="r0"))
    commit(store, 1)
    for run in ("r1", "r2"):  # two resumes start from epoch 1 and crash
        store.claim(label(run=run))
    check = claim_check(label(run="r3"), max_resumes=3, is_alive=never_alive)
    check(store.read_manifest())  # r0 made progress; r1, r2 are 2 stuck resumes: a third is allowed
    store.claim(label(run="r3"))
    with pytest.raises(ResumeLimitError, match=r"3 attempts in a row started from epoch 1.*name-r1.*max_resumes=3"):
        claim_check(label(run="r4"), max_resumes=3, is_alive=never_alive)(store.read_manifest())
    commit(store, 2)  # progress resets the count
    claim_check(label(run="r4"), max_resumes=3, is_alive=never_alive)(store.read_manifest())


def test_the_first_attempt_is_not_counted_as_a_resume(tmp_path):
    manifest = claimed(tmp_path, label(run="r0"), label(run="r1"))  # both crashed before any commit
    claim_check(label(run="r2"), max_resumes=2, is_alive=never_alive)(manifest)  # r1 was resume 1 of 2
    manifest = claimed(tmp_path, label(run="r2"))
    with pytest.raises(ResumeLimitError, match="max_resumes=2"):
        claim_check(label(run="r3"), max_resumes=2, is_alive=never_alive)(manifest)


def test_an_attempt_of_the_same_run_finishes_the_earlier_target(tmp_path):
    manifest = claimed(tmp_path, {**label(attempt=1), "target": 12})
    assert earlier_attempt_target(manifest, label(attempt=2)) == 12
    assert earlier_attempt_target(manifest, label(run="other", attempt=2)) is None
    assert earlier_attempt_target(manifest, label(attempt=1)) is None
    assert earlier_attempt_target(None, label()) is None


# -- choosing the checkpoint and the resume policy -----------------------------------------------
def net_with(*callbacks):
    return NeuralNetClassifier(MyModule, max_epochs=2, verbose=0, callbacks=list(callbacks))


def loaders(net):
    return [(cb.checkpoint, cb.until_max_epochs) for _, cb in net.callbacks_ if isinstance(cb, LoadInitState)]


def use_resume_policy(net, cp, resume):
    """The net's callbacks while fit_in_flow trains with ``resume``."""
    run = TrainingRun("exp", "exp", cp, cp.store(), Attempt("run-a", "name-run-a", 1), resume)
    with resume_callbacks(net, run):
        return loaders(net)


def test_resume_policies_set_the_nets_load_init_state_for_the_call_only(tmp_path):
    cp = Checkpoint(monitor=None, dirname=str(tmp_path))
    net = net_with(cp).initialize()
    assert use_resume_policy(net, cp, None) == [(cp, True)]  # none of its own: acts as "latest"
    assert use_resume_policy(net, cp, "extend") == [(cp, False)]
    assert use_resume_policy(net, cp, "never") == []
    assert loaders(net) == [] and net.callbacks == [cp]
    own = LoadInitState(cp)
    net = net_with(cp, own).initialize()
    assert use_resume_policy(net, cp, None) == [(cp, False)]  # keeps what the net has
    assert use_resume_policy(net, cp, "latest") == [(cp, True)]
    assert use_resume_policy(net, cp, "never") == []
    assert loaders(net) == [(cp, False)] and net.callbacks == [cp, own]


def test_find_checkpoint_prefers_the_one_loaded_and_explains_what_is_missing(tmp_path):
    cp_a, cp_b = Checkpoint(dirname=str(tmp_path / "a")), Checkpoint(dirname=str(tmp_path / "b"))
    assert find_checkpoint(net_with(cp_a, TrainEndCheckpoint(dirname=str(tmp_path))).initialize()) is cp_a
    assert find_checkpoint(net_with(cp_a, cp_b, LoadInitState(cp_b)).initialize()) is cp_b
    with pytest.raises(ValueError, match="pass the one to resume from"):
        find_checkpoint(net_with(cp_a, cp_b).initialize())
    with pytest.raises(ValueError, match=r"add Checkpoint\(monitor=None, dirname=...\).*TrainEndCheckpoint saves only"):
        find_checkpoint(net_with(TrainEndCheckpoint(dirname=str(tmp_path))).initialize())


def test_default_experiment_and_artifact_keys(tmp_path):
    assert default_experiment(Checkpoint(dirname=str(tmp_path / "exp1"))) == "exp1"
    assert default_experiment(Checkpoint(dirname="s3://bucket/runs/exp2/", fn_prefix="best_")) == "exp2-best"
    assert slug("Exp_1 (small)") == "exp-1-small"
    with pytest.raises(ValueError, match="no letters or digits"):
        slug("__")


# -- epochs per task -----------------------------------------------------------------------------
@pytest.mark.parametrize("epoch_seconds, overheads, expected", [
    (1.0, [0.03], 1),                # long epochs: one per task
    (0.05, [0.03], 20),              # at least TASK_COST (50 ms) per task, 2.5 ms allowed per epoch
    (0.05, [0.06, 0.5, 0.062], 25),  # the median overhead (62 ms), not one slow sample
    (0.01, [5.0], 6000),             # capped so that a task lasts at most a minute
])
def test_auto_epochs_per_task_keeps_prefects_share_small(epoch_seconds, overheads, expected):
    records = [{"epochs": [1, 1], "seconds": epoch_seconds}, {"epochs": [2, 4], "seconds": 3 * epoch_seconds}]
    assert auto_size(records, overheads) == expected


def test_the_default_driver_runs_epochs_in_order_and_a_driver_can_take_over():
    done = []
    run_epochs(None, 3, lambda: done.append("plain"))
    with driving_epochs(lambda net, n, one: [one() for _ in range(n * 2)]):
        run_epochs(None, 2, lambda: done.append("driven"))
    run_epochs(None, 1, lambda: done.append("plain"))  # the driver is gone after the block
    assert done == ["plain"] * 3 + ["driven"] * 4 + ["plain"]


# -- records ---------------------------------------------------------------------------------------
def test_records_and_table_rows_follow_the_manifest(tmp_path):
    store = CheckpointStore(tmp_path, keep_last=2)
    for epoch, loss in enumerate([0.9, 0.5, 0.712345678], start=1):
        store.commit([PendingFile("params.pt", "f_params", lambda f, e=epoch: torch.save({"e": e}, f))],
                     epoch=epoch, metrics={"valid_loss": loss, "dur": 0.1}, best=loss < 0.6)
    manifest = store.read_manifest()
    rows = checkpoint_rows(store, manifest)
    assert [(r["epoch"], r["current"], r["best"]) for r in rows] == [(2, "", "best"), (3, "current", "")]
    assert all("dur" not in r for r in rows)
    current = checkpoint_record(store, manifest)
    assert current["epoch"] == 3 and current["sha256"] == manifest.version(manifest.current).files["params.pt"].sha256
    # the key columns first (they must fit a laptop's screen in the UI), the folder relative to the directory
    assert list(rows[1]) == ["epoch", "version", "current", "best", "valid_loss", "size", "sha256", "folder"]
    assert rows[1]["sha256"] == current["sha256"][:12]
    assert rows[1]["valid_loss"] == 0.7123  # 4 significant digits: short columns
    assert rows[1]["folder"] == manifest.version(manifest.current).folder
    assert tmp_path / rows[1]["folder"] == pathlib.Path(current["uri"])
    json.dumps(current)  # small and JSON-able
    assert checkpoint_record(store, manifest, "best")["epoch"] == 2
    assert checkpoint_record(store, None) is None and checkpoint_rows(store, None) == []


# -- undoing a failed epoch ------------------------------------------------------------------------
def test_a_snapshot_restores_weights_optimizer_history_and_random_state(data):
    net = NeuralNetClassifier(MyModule, max_epochs=2, verbose=0, optimizer=torch.optim.Adam, lr=0.01)
    net.fit(*data)
    saved = train_state.snapshot(net)
    expected_next = torch.rand(3)
    train_state.restore_snapshot(net, saved)
    net.partial_fit(*data)  # training moves everything on...
    train_state.restore_snapshot(net, saved)  # ...and the snapshot puts it all back
    assert torch.equal(torch.rand(3), expected_next)
    assert len(net.history) == 2
    again = train_state.snapshot(net)
    for name, state in saved["parts"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, again["parts"][name][key]), (name, key)
    assert saved["parts"]["optimizer_"]["state"][0]["exp_avg"].equal(again["parts"]["optimizer_"]["state"][0]["exp_avg"])
