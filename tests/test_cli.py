"""The ``prefect-torch`` command line: listing and verifying checkpoint directories."""
import json
import subprocess
import sys

import pytest

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


def test_help_shows_plain_text_without_rst_markup(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = capsys.readouterr().out
    assert "prefect-torch: look into checkpoint directories" in shown and "``" not in shown
