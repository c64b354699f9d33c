"""The benchmarks run (smoke tests; the figures themselves are printed, never asserted)."""
import json
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from helpers import REPO


def run_bench(script: str, *args: str, json_out: pathlib.Path | None = None) -> tuple[str, Any]:
    """``python bench/<script> ARGS`` (plus ``--json json_out``): its stdout, and the JSON it wrote."""
    command = [sys.executable, str(REPO / "bench" / script), *args]
    if json_out is not None:
        command += ["--json", str(json_out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, json.loads(json_out.read_text()) if json_out is not None else None


@pytest.mark.slow
def test_fit_speed_quick_run_prints_the_ratio_table():
    stdout, _ = run_bench("fit_speed.py", "--quick", "--threads", "1")
    assert "prefect_torch / hand loop" in stdout
    assert "identical weights prefect_torch vs skorch: yes" in stdout


@pytest.mark.slow
def test_checkpoint_speed_quick_runs(tmp_path):
    stdout, payload = run_bench("checkpoint_speed.py", "--quick", "--dir", str(tmp_path / "disk"),
                                json_out=tmp_path / "checkpoint_speed.json")
    assert "| commit / torch.save |" in stdout
    assert "long epochs: blocked" in stdout
    assert [(r["size"], r["optimizer"]) for r in payload["sync"]] == [
        ("1 MB", "sgd"), ("1 MB", "sgd+momentum"), ("20 MB", "sgd"), ("20 MB", "sgd+momentum")]
    for row in payload["sync"]:
        assert all(t["best"] > 0 for t in row["timings"].values())
        # the momentum buffers make optimizer.pt as big as the params
        factor = 2 if row["optimizer"] == "sgd+momentum" else 1
        assert row["written_bytes"] >= factor * row["param_bytes"]
    assert len(payload["background"]) == 4
    assert all(r["long_epochs"]["best"] > 0 for r in payload["background"])
    assert len(payload["targets"]) == 6
    assert list((tmp_path / "disk").iterdir()) == []  # the bench cleans up what it wrote


@pytest.mark.slow
def test_orchestration_overhead_quick_run_prints_the_targets(tmp_path):
    """Starts its own Prefect server (a fresh SQLite database: 10-30 s of the 25-70 s run here)."""
    stdout, payload = run_bench("orchestration_overhead.py", "--quick", json_out=tmp_path / "overhead.json")
    assert "flow / plain <= 1.50x" in stdout
    assert "identical weights plain vs flow, ept=1: yes" in stdout
    assert "identical weights plain vs flow, ept=auto: yes" in stdout
    runs = {(r["contender"], r["epochs"]): r for r in payload["fit_seconds"]}
    assert runs[("flow, ept=1", 10)]["tasks"] == [10]  # one task run per epoch
    assert 1 <= runs[("flow, ept=auto", 10)]["tasks"][0] <= 10  # how many depends on the machine's load
    assert all(s > 0 for r in payload["fit_seconds"] for s in r["seconds"])
    assert payload["fixed"]["0.05 s"]["flow_start_stop"] > 0
    assert payload["identical_weights"] == {"0.05 s flow, ept=1": True, "0.05 s flow, ept=auto": True}


@pytest.mark.slow
def test_sweep_scaling_quick_run_prints_the_speedup(tmp_path):
    """Starts its own Prefect server and two Dask clusters (1 and 2 workers): 40-90 s here."""
    stdout, payload = run_bench("sweep_scaling.py", "--quick", "--dir", str(tmp_path / "disk"),
                                json_out=tmp_path / "sweep_scaling.json")
    assert "sweep_flow speed-up 1 -> 2 workers >= 1.6x" in stdout
    assert "every trial of every run trained 5 epochs: yes" in stdout
    trials = {"lr=0.05,num_units=20", "lr=0.05,num_units=40", "lr=0.1,num_units=20", "lr=0.1,num_units=40"}
    runs = {(r["contender"], r["workers"]): r for r in payload["runs"]}
    assert set(runs) == {("sweep_flow", 1), ("sweep_flow", 2), ("plain", 1), ("plain", 2)}
    for run in runs.values():
        assert set(run["trial_seconds"][0]) == trials  # every trial timed, sweep (Prefect API) and plain
        assert all(s > 0 for s in run["trial_seconds"][0].values())
        assert run["wall_seconds"][0] > 0
    for workers in (1, 2):  # the nested epoch task runs: at least one per trial, at most one per epoch
        assert 4 <= runs[("sweep_flow", workers)]["epoch_tasks"][0] <= 4 * 5
    startup = payload["startup"]
    assert [w["threads"] for w in startup["1"]["workers"]] == [1]  # one torch thread per Dask worker
    assert [w["threads"] for w in startup["2"]["workers"]] == [1, 1]
    assert payload["target"]["value"] > 0 and payload["per_trial"]["2"]["plain_trial_s"] > 0
    assert list((tmp_path / "disk").iterdir()) == []  # the bench removes the checkpoints it wrote


@pytest.mark.slow
def test_containment_cost_runs(tmp_path):
    stdout, _ = run_bench("containment_cost.py", "--sizes", "0.1", "--commits", "3", "--dir", str(tmp_path))
    row = next(line for line in stdout.splitlines() if line.startswith("| 0.1 MB |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[1]) > 0 and int(cells[2]) > 0 and cells[-1].endswith("%")


@pytest.mark.slow
def test_curves_cost_quick_run_prints_costs_and_the_training_ratios():
    pytest.importorskip("matplotlib")
    stdout, _ = run_bench("curves_cost.py", "--quick")
    assert "snapshot (training thread)" in stdout and "2 PNG" in stdout
    assert "as the publisher draws" in stdout and "curves back to back" in stdout
    assert "identical weights: True" in stdout


@pytest.mark.slow
def test_curve_drawing_quick_run_prints_the_table(tmp_path):
    pytest.importorskip("matplotlib")
    stdout, payload = run_bench("curve_drawing.py", "--quick", "--threads", "1", json_out=tmp_path / "curves.json")
    assert "| training_curves, 100 epochs |" in stdout and "| sweep_curves, 8 trials x 50 epochs |" in stdout
    cases = {case["case"]: case for case in payload["cases"]}
    assert len(cases["training_curves, 10 epochs"]["png_bytes"]) == 2  # the loss and the score images
    assert all(0 < size < 40_000 for case in cases.values() for size in case["png_bytes"])
    assert all(s > 0 for case in cases.values() for s in case["seconds"])
