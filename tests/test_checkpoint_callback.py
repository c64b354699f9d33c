"""Checkpoint's skorch arguments: monitor forms, sink, load_best, f_pickle, file objects, format strings."""
import io
import pickle

import pytest
import torch

from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Checkpoint, LoadInitState, TrainEndCheckpoint
from prefect_torch.examples import MyModule


def _fit(data, *callbacks, max_epochs=4, **kwargs):
    torch.manual_seed(0)
    return NeuralNetClassifier(MyModule, max_epochs=max_epochs, verbose=0, lr=0.5,
                               callbacks=list(callbacks), **kwargs).fit(*data)


def _saved_epochs(cp):
    return [v.epoch for v in cp.store().read_manifest().versions]


def test_default_monitor_saves_when_valid_loss_improves(tmp_path, data):
    cp = Checkpoint(dirname=str(tmp_path), keep_last=None)
    net = _fit(data, cp, max_epochs=6)
    best = [row["epoch"] for row in net.history if row["valid_loss_best"]]
    assert net.history[:, "event_cp"] == net.history[:, "valid_loss_best"]
    assert _saved_epochs(cp) == best


@pytest.mark.parametrize("monitor, expected", [
    (None, [1, 2, 3, 4]),
    (lambda net: net.history[-1, "epoch"] % 2 == 0, [2, 4]),
    ("train_loss_best", None),  # every epoch whose train loss improved
])
def test_monitor_forms(tmp_path, data, monitor, expected):
    cp = Checkpoint(monitor=monitor, dirname=str(tmp_path), keep_last=None)
    net = _fit(data, cp)
    if expected is None:
        expected = [row["epoch"] for row in net.history if row["train_loss_best"]]
    assert _saved_epochs(cp) == expected
    assert [row["epoch"] for row in net.history if row["event_cp"]] == expected


def test_monitor_without_best_suffix_warns_and_missing_key_explains(tmp_path, data):
    with pytest.warns(UserWarning, match="did you mean monitor='valid_loss_best'"):
        _fit(data, Checkpoint(monitor="valid_loss", dirname=str(tmp_path)), max_epochs=1)
    with pytest.raises(KeyError, match="'valid_acc_best'.*not in the history.*validation data"):
        _fit(data, Checkpoint(monitor="valid_acc_best", dirname=str(tmp_path)), max_epochs=1, train_split=None)


def test_event_name_none_records_no_column(tmp_path, data):
    net = _fit(data, Checkpoint(event_name=None, dirname=str(tmp_path)), max_epochs=2)
    assert "event_cp" not in net.history[-1]


def test_sink_hears_each_checkpoint_and_train_end(tmp_path, data):
    said = []
    cp = Checkpoint(monitor=None, dirname=str(tmp_path), sink=said.append)
    _fit(data, cp, TrainEndCheckpoint(dirname=str(tmp_path), sink=said.append), max_epochs=2)
    assert said == ["A checkpoint was triggered in epoch 1.", "A checkpoint was triggered in epoch 2.",
                    "Final checkpoint triggered"]


def test_load_best_restores_the_checkpointed_weights_at_train_end(tmp_path, data):
    cp = Checkpoint(dirname=str(tmp_path), load_best=True, keep_last=None)
    net = _fit(data, cp, max_epochs=8)
    best_epoch = [row["epoch"] for row in net.history if row["valid_loss_best"]][-1]
    assert best_epoch < 8, "the scenario needs a best epoch before the last"
    version = cp.store().latest_verified()
    saved = torch.load(cp.store().source(version, "params.pt"), weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in net.module_.state_dict().items())
    assert len(net.history) == best_epoch  # as skorch: the checkpoint's history comes back too


def test_f_pickle_stores_a_loadable_net(tmp_path, data):
    cp = Checkpoint(monitor=None, dirname=str(tmp_path), f_pickle="net_{last_epoch[epoch]}.pkl")
    net = _fit(data, cp, max_epochs=2)
    version = cp.store().latest_verified()
    assert version.name_of("f_pickle") == "net_2.pkl"
    with open(tmp_path / "net_2.pkl", "rb") as f:
        copy = pickle.load(f)
    assert (copy.predict_proba(data[0]) == net.predict_proba(data[0])).all()
    assert copy.history[:, "epoch"] == [1, 2]


def test_format_strings_and_prefix_name_the_files(tmp_path, data):
    cp = Checkpoint(monitor=None, dirname=str(tmp_path), fn_prefix="run1_",
                    f_params="params_{last_epoch[epoch]}.pt", f_optimizer=None, f_criterion=None)
    _fit(data, cp, max_epochs=3)
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert names == ["run1_history.json", "run1_manifest.json", "run1_params_1.pt", "run1_params_2.pt",
                     "run1_params_3.pt", "run1_train_state.pt"]
    net = NeuralNetClassifier(MyModule, verbose=0).initialize()
    net.load_params(checkpoint=cp)
    assert [row["epoch"] for row in net.history] == [1, 2, 3]
    assert cp.get_formatted_files(net)["f_params"] == str(tmp_path / "run1_params_3.pt")


def test_file_objects_are_written_as_given_without_a_store(data):
    params, history = io.BytesIO(), io.StringIO()
    cp = Checkpoint(monitor=None, f_params=params, f_optimizer=None, f_criterion=None, f_history=history,
                    f_train_state=None)
    assert not cp.uses_store()
    net = _fit(data, cp, max_epochs=1)
    params.seek(0)
    saved = torch.load(params, weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in net.module_.state_dict().items())
    assert '"epoch": 1' in history.getvalue()


def test_dirname_with_file_objects_is_refused():
    with pytest.raises(ValueError, match=r"Checkpoint\(dirname='d'\) needs file names"):
        Checkpoint(dirname="d", f_params=io.BytesIO())


def test_clone_keeps_extra_file_arguments(tmp_path):
    from sklearn.base import clone

    cp = Checkpoint(dirname=str(tmp_path), f_module2="module2.pt", keep_last=5)
    copy = clone(cp)
    assert copy.f_module2 == "module2.pt" and copy.keep_last == 5
    with pytest.raises(TypeError, match="f_<part>"):
        Checkpoint(dirnam="typo")


def test_load_init_state_without_checkpoint_trains_from_scratch(tmp_path, data):
    cp = Checkpoint(dirname=str(tmp_path / "new"))
    load = LoadInitState(cp)
    net = _fit(data, cp, load, max_epochs=2)
    assert load.loaded_epoch_ is None and net.history[:, "epoch"] == [1, 2]


@pytest.mark.parametrize("store", [True, False])
def test_load_init_state_with_epoch_templates_starts_fresh_then_resumes(tmp_path, data, store):
    """File names formatted with ``{last_epoch[epoch]}`` have no epoch to name on a first run:
    LoadInitState trains from scratch, and the next run loads the newest named files."""
    folder = "" if store else f"{tmp_path}/"  # absolute names: the plain layout, files at the root only
    names = {"f_params": folder + "params_{last_epoch[epoch]}.pt", "f_optimizer": folder + "opt_{last_epoch[epoch]}.pt"}
    cp = Checkpoint(monitor=None, dirname=str(tmp_path), **names)
    assert cp.uses_store() is store
    load = LoadInitState(cp)
    first = _fit(data, cp, load, max_epochs=2)
    assert load.loaded_epoch_ is None and first.history[:, "epoch"] == [1, 2]
    assert (tmp_path / "params_2.pt").exists() and (tmp_path / "opt_2.pt").exists()
    load = LoadInitState(cp)
    second = _fit(data, cp, load, max_epochs=1)
    assert load.loaded_epoch_ == 2 and second.history[:, "epoch"] == [1, 2, 3]
    saved = torch.load(tmp_path / "params_2.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in first.module_.state_dict().items())
    assert second.history[:2, "train_loss"] == first.history[:, "train_loss"]


def test_load_init_state_refuses_another_architecture(tmp_path, data):
    cp = Checkpoint(monitor=None, dirname=str(tmp_path))
    _fit(data, cp, max_epochs=1)
    with pytest.raises(ValueError, match="different architecture.*different shapes"):
        _fit(data, cp, LoadInitState(cp), max_epochs=1, module__num_units=20)


def test_a_commit_between_load_and_first_epoch_stops_the_resumed_run(tmp_path, data):
    """Fencing starts when LoadInitState reads: another writer's commit after that (here from a
    callback that runs between the load and the Checkpoint's own start) stops this run."""
    from prefect_torch.callbacks import Callback
    from prefect_torch.checkpoint import CheckpointConflictError, CheckpointStore, PendingFile

    _fit(data, Checkpoint(monitor=None, dirname=str(tmp_path)), max_epochs=2)

    class Intruder(Callback):
        def on_train_begin(self, net, **kwargs):
            CheckpointStore(str(tmp_path)).commit(
                [PendingFile("params.pt", "f_params", lambda f: torch.save(net.module_.state_dict(), f))], epoch=9)

    cp = Checkpoint(monitor=None, dirname=str(tmp_path))
    with pytest.raises(CheckpointConflictError, match="another writer"):
        _fit(data, cp, LoadInitState(cp), Intruder(), max_epochs=3)
    assert [v.epoch for v in cp.store().read_manifest().versions][-1] == 9


def test_interpreter_exit_waits_for_a_background_commit(tmp_path):
    """A script that ends while a background commit is in flight still commits it."""
    import os
    import subprocess
    import sys

    from prefect_torch.checkpoint import CheckpointStore

    script = """
import sys, time
from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Checkpoint
from prefect_torch.checkpoint.store import set_commit_pause
from prefect_torch.examples import MyModule, make_data
set_commit_pause(lambda stage: time.sleep(0.1))  # slow commits: one is still in flight at exit
cp = Checkpoint(monitor=None, dirname=sys.argv[1], background=True)
net = NeuralNetClassifier(MyModule, max_epochs=1, verbose=0, callbacks=[cp]).fit(*make_data(100))
net.history.new_epoch()
net.history.record("epoch", 2)
cp.save_model(net)
print("in flight at exit:", cp.committer_.busy())
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          timeout=240, env=env)
    assert done.returncode == 0, done.stderr
    assert "in flight at exit: True" in done.stdout
    store = CheckpointStore(str(tmp_path))
    assert [v.epoch for v in store.read_manifest().versions] == [1, 2]
    assert store.latest_verified().epoch == 2


def test_repr_masks_credentials():
    cp = Checkpoint(dirname="s3://bucket/run", storage_options={"key": "AKIA123", "secret": "s3cr3t",
                                                               "endpoint_url": "http://127.0.0.1:9000"})
    text = repr(cp)
    assert "AKIA123" not in text and "s3cr3t" not in text
    assert "'endpoint_url': 'http://127.0.0.1:9000'" in text and "'secret': '***'" in text
    assert cp.get_params()["storage_options"]["secret"] == "s3cr3t"  # clone still gets the real ones


def test_train_end_checkpoint_adds_no_version_when_a_rerun_trains_no_epoch(tmp_path, data):
    def run(max_epochs):
        cp = Checkpoint(monitor=None, dirname=str(tmp_path))
        train_end = TrainEndCheckpoint(dirname=str(tmp_path))
        net = _fit(data, cp, train_end, LoadInitState(cp, until_max_epochs=True), max_epochs=max_epochs)
        return net, train_end

    net, train_end = run(3)
    saved = train_end.store().read_manifest()
    assert [v.epoch for v in saved.versions] == [3]
    rerun, train_end = run(3)  # every epoch done: trains nothing
    assert len(rerun.history) == 3 and train_end.epochs_run_ == 0
    assert train_end.store().read_manifest().versions == saved.versions
    _, train_end = run(5)  # more epochs: saved again
    assert [v.epoch for v in train_end.store().read_manifest().versions] == [3, 5]

