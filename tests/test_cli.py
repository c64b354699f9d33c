"""The ``prefect-torch`` command line: listing and verifying checkpoint directories."""
import json
import secrets
import subprocess
import sys

import pytest
import torch

from prefect_torch import NeuralNetClassifier
from prefect_torch.callbacks import Checkpoint, TrainEndCheckpoint
from prefect_torch.cli import main
from prefect_torch.examples import MyModule


@pytest.fixture
def trained(tmp_path, data):
    """A directory with 3 versions (one per epoch) and a train-end series; the net that wrote it."""
    directory = tmp_path / "exp"
    cp = Checkpoint(monitor=None, dirname=str(directory), keep_last=None)
    net = NeuralNetClassifier(MyModule, max_epochs=3, verbose=0,
                              callbacks=[cp, TrainEndCheckpoint(dirname=str(directory))])
    net.fit(*data)
    return directory, net, cp


def _rows(text):
    """Table rows (lists of cells) whose first cell is a version number."""
    return [line.split() for line in text.splitlines() if line.split() and line.split()[0].isdigit()]


def test_checkpoints_lists_every_version_with_metrics_and_marks(trained, capsys):
    directory, net, _ = trained
    assert main(["checkpoints", str(directory), "--prefix", ""]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert [(r[0], r[1]) for r in rows] == [("1", "1"), ("2", "2"), ("3", "3")]
    header = next(line.split() for line in out.splitlines() if line.split()[:2] == ["version", "epoch"])
    valid = header.index("valid_loss")
    assert [r[valid] for r in rows] == [f"{v:.4f}" for v in net.history[:, "valid_loss"]]
    assert [r[-1] for r in rows] == ["ok", "ok", "ok"]
    assert rows[-1][-2] == "current,best" and rows[0][-2] == "-"


def test_checkpoints_shows_each_series_in_the_directory(trained, capsys):
    directory, _, _ = trained
    assert main(["checkpoints", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "[Checkpoint: 3 versions" in out
    assert "[fn_prefix 'train_end_': 1 versions" in out


def test_verify_passes_then_names_the_damaged_file(trained, capsys):
    directory, _, cp = trained
    assert main(["verify", str(directory)]) == 0
    assert "all versions intact" in capsys.readouterr().out

    version = cp.store().read_manifest().version(2)
    damaged = directory / version.folder / "params.pt"
    raw = bytearray(damaged.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped bit pattern, same size
    damaged.write_bytes(bytes(raw))

    assert main(["verify", str(directory)]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED  version 2 (epoch 2): params.pt has a different sha256" in out
    assert "1 damaged version(s)" in out
    assert main(["checkpoints", str(directory), "--prefix", ""]) == 1
    assert [r[-1] for r in _rows(capsys.readouterr().out)] == ["ok", "DAMAGED", "ok"]


def test_truncated_file_is_reported_with_its_sizes(trained, capsys):
    directory, _, cp = trained
    version = cp.store().read_manifest().version(3)
    path = directory / version.folder / "optimizer.pt"
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[:10])
    assert main(["verify", str(directory), "--prefix", ""]) == 1
    assert f"optimizer.pt has 10 bytes, {size} were committed" in capsys.readouterr().out


def test_json_output_and_no_verify(trained, capsys):
    directory, net, _ = trained
    assert main(["checkpoints", str(directory), "--prefix", "", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    versions = report[0]["versions"]
    assert [v["epoch"] for v in versions] == [1, 2, 3]
    assert [v["verified"] for v in versions] == [True, True, True]
    assert versions[-1]["metrics"]["train_loss"] == net.history[-1, "train_loss"]
    assert main(["checkpoints", str(directory), "--prefix", "", "--no-verify"]) == 0
    assert [r[-2:] for r in _rows(capsys.readouterr().out)][0] == ["not", "checked"]


def test_a_directory_without_checkpoints_exits_2(tmp_path, capsys):
    assert main(["verify", str(tmp_path)]) == 2
    assert "no prefect-torch checkpoints" in capsys.readouterr().err


def test_the_console_command_runs(trained):
    directory, _, _ = trained
    done = subprocess.run([sys.executable, "-m", "prefect_torch", "verify", str(directory)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "all versions intact" in done.stdout


# -- one version: checkpoints --version, export ---------------------------------------------------------

def test_checkpoints_version_shows_files_sha256_metrics_and_check(trained, capsys):
    directory, net, cp = trained
    version = cp.store().read_manifest().version(2)
    assert main(["checkpoints", str(directory), "--version", "2"]) == 0  # the plain series, not train_end_
    out = capsys.readouterr().out
    assert "version 2 (epoch 2, kept)" in out
    for name, entry in version.files.items():
        assert any(line.split()[0] == name and line.split()[-1] == entry.sha256 for line in out.splitlines()
                   if line.split())
    assert f"valid_loss = {net.history[1]['valid_loss']:.6g}" in out
    assert "check    ok" in out
    assert "version=2)" in out and f"prefect-torch export {directory} DEST --version 2" in out
    assert main(["checkpoints", str(directory), "--version", "current", "--prefix", "train_end_", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["current"] and record["epoch"] == 3 and record["verified"] is True
    assert sorted(f["name"] for f in record["files"]) == [
        "train_end_criterion.pt", "train_end_history.json", "train_end_optimizer.pt", "train_end_params.pt",
        "train_end_train_state.pt"]


def test_checkpoints_version_not_kept_lists_the_kept_ones(trained, capsys):
    directory, _, _ = trained
    assert main(["checkpoints", str(directory), "--version", "7"]) == 2
    err = capsys.readouterr().err
    assert "version 7 was never written here" in err
    assert "Kept versions: 1 (epoch 1), 2 (epoch 2), 3 (epoch 3, current, best)" in err
    with pytest.raises(SystemExit):
        main(["checkpoints", str(directory), "--version", "latest"])
    assert "name a version with current, best, or its version id" in capsys.readouterr().err


def test_checkpoints_version_names_a_damaged_file(trained, capsys):
    directory, _, cp = trained
    damaged = directory / cp.store().read_manifest().version(1).folder / "params.pt"
    raw = bytearray(damaged.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    assert main(["checkpoints", str(directory), "--version", "1"]) == 1
    assert "DAMAGED: params.pt has a different sha256" in capsys.readouterr().out


def test_export_copies_a_version_and_refuses_to_overwrite(trained, tmp_path, capsys):
    directory, net, cp = trained
    store = cp.store()
    dest = tmp_path / "out"
    assert main(["export", str(directory), str(dest), "--version", "2"]) == 0
    version = store.read_manifest().version(2)
    assert sorted(p.name for p in dest.iterdir()) == sorted(version.files)
    for name in version.files:
        assert (dest / name).read_bytes() == (directory / version.folder / name).read_bytes()
    assert "exported version 2 (epoch 2)" in capsys.readouterr().out

    assert main(["export", str(directory), str(dest)]) == 1  # current, over version 2's files
    err = capsys.readouterr().err
    assert "there already" in err and "--force" in err
    assert json.loads((dest / "history.json").read_text())[-1]["epoch"] == 2  # untouched
    assert main(["export", str(directory), str(dest), "--force"]) == 0
    assert json.loads((dest / "history.json").read_text())[-1]["epoch"] == 3

    train_end = tmp_path / "train_end"  # fn_prefix respected: the names skorch's TrainEndCheckpoint uses
    assert main(["export", str(directory), str(train_end), "--prefix", "train_end_", "--version", "best"]) == 0
    loaded = NeuralNetClassifier(MyModule, verbose=0).initialize()
    loaded.load_params(checkpoint=TrainEndCheckpoint(dirname=str(train_end)))
    assert all(torch.equal(a, b) for a, b in zip(loaded.module_.state_dict().values(),
                                                 net.module_.state_dict().values()))
    fresh = NeuralNetClassifier(MyModule, verbose=0).initialize()  # the same version, named, from the source
    fresh.load_params(checkpoint=TrainEndCheckpoint(dirname=str(directory)), version=1)
    assert all(torch.equal(a, b) for a, b in zip(fresh.module_.state_dict().values(),
                                                 net.module_.state_dict().values()))


def test_export_of_a_damaged_or_pruned_version_writes_nothing(trained, tmp_path, capsys):
    directory, _, cp = trained
    damaged = directory / cp.store().read_manifest().version(3).folder / "optimizer.pt"
    damaged.write_bytes(b"")
    dest = tmp_path / "out"
    assert main(["export", str(directory), str(dest)]) == 1
    assert "version 3 (epoch 3" in capsys.readouterr().err
    assert not dest.exists()
    assert main(["export", str(directory), str(dest), "--version", "9"]) == 2
    assert "Kept versions:" in capsys.readouterr().err
    assert not dest.exists()


def test_export_from_s3_with_the_environment_credentials(s3_server, data, tmp_path, monkeypatch, capsys):
    url = s3_server.url(f"cli-export-{secrets.token_hex(4)}")
    cp = Checkpoint(monitor=None, dirname=url, storage_options=s3_server.storage_options())
    net = NeuralNetClassifier(MyModule, max_epochs=2, verbose=0, callbacks=[cp]).fit(*data)
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    assert main(["export", url, str(tmp_path / "out"), "--version", "2"]) == 0
    state = torch.load(tmp_path / "out" / "params.pt", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in net.module_.state_dict().items())


def test_help_shows_plain_text_without_rst_markup(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    assert "prefect-torch: look into checkpoint directories" in shown and "``" not in shown
