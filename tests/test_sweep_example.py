"""flows/sweep_example.py as a user runs it: no Prefect server configured (Prefect starts a
temporary one), a LocalCluster of 2 workers, then again (every trial skipped)."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from helpers import REPO

pytest.importorskip("prefect_dask")


def run_example(tmp_path: pathlib.Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AWS_"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               OMP_NUM_THREADS="1", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")  # a busy machine
    result = subprocess.run([sys.executable, str(REPO / "flows" / "sweep_example.py"), *args], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


@pytest.mark.slow
def test_the_example_sweep_runs_then_skips_its_finished_trials(tmp_path: pathlib.Path):
    root = tmp_path / "sweeps" / "example"
    first = run_example(tmp_path, "--max-epochs", "2", "--root", str(root))
    # the workers reported to the flow's temporary server instead of starting servers of their own
    assert first.count("Stopping temporary server") == 1, first[-4000:]
    trials = sorted(p.name for p in root.iterdir())
    assert trials == ["lr=0.05,num_units=10", "lr=0.05,num_units=20", "lr=0.1,num_units=10", "lr=0.1,num_units=20"]
    records = {name: json.loads((root / name / "trial.json").read_text()) for name in trials}
    assert all(r["epoch"] == 2 and r["state"] == "Completed" for r in records.values())
    best = min(records, key=lambda name: records[name]["best_score"])
    assert f"best: {best};" in first
    table = [line.split() for line in first.splitlines() if line[:2] in ("* ", "  ") and "best epoch" in line]
    assert sorted((row[0], row[1]) for row in table if row[0] != "*") == sorted(
        (name, "Completed") for name in trials if name != best)
    assert [row[1:3] for row in table if row[0] == "*"] == [[best, "Completed"]]

    second = run_example(tmp_path, "--max-epochs", "2", "--root", str(root))
    assert "4 trials, 4 finished earlier, 0 to run" in second
    assert sum("Completed earlier" in line for line in second.splitlines()) == 4
    assert all(json.loads((root / name / "trial.json").read_text()) == records[name] for name in trials)
