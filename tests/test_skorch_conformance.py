"""skorch's own test suite against prefect_torch (bench/skorch_conformance.py), and its import alias."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO / "bench"))
import skorch_conformance  # noqa: E402

pytest.importorskip("skorch")

# passed / (passed + failed) of the whole in-scope suite on this branch, less a margin for the
# few tests that depend on timing; raise it as the pass rate rises
FLOOR = 0.87  # 1,027 of 1,145 (89.7%) on 2026-12-06 with issues 10, 11 and 13 merged; the issue asks for 85%

FAKE_TESTS = '''
import sys

import pytest


def test_skorch_is_prefect_torch():
    import prefect_torch
    import prefect_torch.data
    import skorch
    import skorch.dataset
    from skorch.helper import SliceDict
    assert skorch is prefect_torch and skorch.dataset is prefect_torch.data
    assert SliceDict.__module__ == "prefect_torch.helper"


def test_missing_module_fails():
    import skorch.setter  # noqa: F401  (skorch has it, prefect_torch does not)


def test_missing_name_fails():
    from skorch.callbacks import NoSuchCallback  # noqa: F401


def test_fixtures_of_the_copied_suite_load():
    from skorch.tests.conftest import VALUE
    assert VALUE == 42


def test_spawned_process_gets_the_alias():
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        assert pool.apply(_module_file_of_skorch) == pool.apply(_module_file_of_prefect_torch)


def _module_file_of_skorch():
    import skorch
    return skorch.__file__


def _module_file_of_prefect_torch():
    import prefect_torch
    return prefect_torch.__file__
'''


@pytest.fixture
def fake_suite(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "__init__.py").write_text("")
    (tests / "conftest.py").write_text("VALUE = 42\n")
    (tests / "test_alias.py").write_text(textwrap.dedent(FAKE_TESTS))
    return tests


@pytest.mark.slow  # a pytest run in a fresh process: 20-70 s on a busy machine
def test_alias_points_at_prefect_torch_and_never_falls_back_to_skorch(fake_suite):
    exclusions = [{"pattern": "test_alias.py::test_excluded_*", "reason": "internals: for this test"}]
    (fake_suite / "test_alias.py").write_text(
        (fake_suite / "test_alias.py").read_text() + "\n\ndef test_excluded_one():\n    assert False\n")
    payload, _ = skorch_conformance.run_suite([], exclusions, source=fake_suite)
    outcomes = {k.split("::")[-1]: v for k, v in payload["outcomes"].items()}
    assert outcomes["test_skorch_is_prefect_torch"]["outcome"] == "passed"
    assert outcomes["test_fixtures_of_the_copied_suite_load"]["outcome"] == "passed"
    assert outcomes["test_spawned_process_gets_the_alias"]["outcome"] == "passed"
    assert outcomes["test_missing_module_fails"]["outcome"] == "failed"
    assert "No module named 'skorch.setter'" in outcomes["test_missing_module_fails"]["message"]
    assert outcomes["test_missing_name_fails"]["outcome"] == "failed"
    assert "cannot import name 'NoSuchCallback' from 'prefect_torch.callbacks'" in \
        outcomes["test_missing_name_fails"]["message"]
    assert payload["leaked"] == []
    # the excluded test is deselected (not run) and reported with its reason
    assert payload["excluded"] == {"test_alias.py::test_excluded_one": "internals: for this test"}
    assert "test_excluded_one" not in outcomes
    summary = skorch_conformance.summarise(payload)
    assert summary["total"] == {"passed": 3, "failed": 2, "excluded": 1} and summary["rate"] == 0.6


def test_exclusion_file_lists_only_internals_and_departures():
    entries = skorch_conformance.load_exclusions(skorch_conformance.EXCLUSIONS)
    assert entries
    for entry in entries:
        assert entry["reason"].split(":")[0] in ("internals", "departure"), entry


@pytest.mark.slow
def test_skorch_suite_pass_rate_stays_above_the_floor(tmp_path):
    out = tmp_path / "conformance.json"
    result = subprocess.run([sys.executable, str(REPO / "bench" / "skorch_conformance.py"), "--json", str(out),
                             "--floor", str(FLOOR)], capture_output=True, text=True, timeout=1800, cwd=REPO)
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    payload = json.loads(out.read_text())
    assert payload["leaked"] == []
    assert payload["summary"]["rate"] >= FLOOR
    # every exclusion pattern still matches a test (a stale entry hides nothing, but misleads)
    counts = skorch_conformance.exclusion_counts(
        payload, skorch_conformance.load_exclusions(skorch_conformance.EXCLUSIONS))
    assert [entry["pattern"] for entry, n in counts if n == 0] == []
