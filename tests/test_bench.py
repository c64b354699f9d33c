"""The benchmarks run (smoke tests; the figures themselves are printed, never asserted)."""
import subprocess
import sys

import pytest

from helpers import REPO


@pytest.mark.slow
def test_fit_speed_quick_run_prints_the_ratio_table():
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fit_speed.py"), "--quick", "--threads", "1"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "prefect_torch / hand loop" in result.stdout
    assert "identical weights prefect_torch vs skorch: yes" in result.stdout
