"""Conformance: skorch's own test suite, run against prefect_torch through an import alias.

Run from the repository root, in the project's virtualenv (skorch 1.4.0 installed: the ``compare``
extra, whose wheel ships ``skorch/tests``)::

    python bench/skorch_conformance.py                        # the whole in-scope suite
    python bench/skorch_conformance.py --files test_helper.py --files 'callbacks/*'
    python bench/skorch_conformance.py --reference            # the same selection on skorch itself
    python bench/skorch_conformance.py --json out.json --floor 0.5

How it works
------------
The test files are copied to a temporary ``<tmp>/skorch/tests`` and pytest runs there with the
plugin ``bench/skorch_alias.py``: ``skorch`` *is* ``prefect_torch`` and ``skorch.X`` *is*
``prefect_torch.X`` (``skorch.dataset`` is ``prefect_torch.data``), so a name prefect_torch lacks
fails the tests that use it; nothing of the installed skorch is ever imported (the run fails if
it is). Out of scope and not copied: ``test_hf.py``, ``llm/``, ``test_probabilistic.py``
(Hugging Face, LLMs, GPyTorch). ``flaky`` (a test-only dependency skorch's suite imports) is
replaced by a shim that runs each test once when it is not installed.

Tests listed in ``bench/skorch_conformance_exclusions.toml`` are deselected and listed with their
reason: skorch internals and documented departures, never "not implemented yet".

The pass rate is ``passed / (passed + failed)`` over the tests that ran (skips -- no GPU, no
optional logger library -- count on neither side), overall and per file.
"""
from __future__ import annotations

import argparse
import collections
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import tomllib

REPO = Path(__file__).resolve().parent.parent
EXCLUSIONS = REPO / "bench" / "skorch_conformance_exclusions.toml"
OUT_OF_SCOPE = ["test_hf.py", "llm", "test_probabilistic.py"]
FLAKY_SHIM = '''"""Stand-in for the ``flaky`` package (not installed): run each test once."""


def flaky(*args, **kwargs):
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda func: func
'''


def installed_tests_dir() -> Path:
    spec = importlib.util.find_spec("skorch")
    if spec is None or spec.origin is None:
        raise SystemExit("skorch is not installed: pip install -e '.[compare]' (its wheel holds the tests)")
    tests = Path(spec.origin).parent / "tests"
    if not (tests / "conftest.py").is_file():
        raise SystemExit(f"no test suite under {tests}: reinstall skorch from its wheel (pip install skorch==1.4.0)")
    return tests


def load_exclusions(path: Path) -> list[dict[str, str]]:
    """The ``[[exclude]]`` entries of ``path``: each a ``pattern`` (fnmatch over test ids) and a ``reason``."""
    entries = tomllib.loads(path.read_text()).get("exclude", [])
    for entry in entries:
        if set(entry) != {"pattern", "reason"} or not all(isinstance(v, str) and v for v in entry.values()):
            raise SystemExit(f"{path}: every [[exclude]] needs a non-empty pattern and reason, got {entry!r}")
    return entries


def copy_suite(source: Path, root: Path) -> Path:
    """``source`` copied to ``root/skorch/tests`` without the out-of-scope files; the tests dir."""
    tests = root / "skorch" / "tests"
    shutil.copytree(source, tests, ignore=shutil.ignore_patterns("__pycache__", *OUT_OF_SCOPE))
    (root / "skorch" / "__init__.py").write_text("")
    (root / "pytest.ini").write_text("[pytest]\n")
    if importlib.util.find_spec("flaky") is None:
        (root / "flaky.py").write_text(FLAKY_SHIM)
    # processes that multiprocessing spawns (DistributedHistory's tests) get the alias too
    (root / "sitecustomize.py").write_text("import skorch_alias\n\nskorch_alias.install_from_environment()\n")
    return tests


def run_suite(files: list[str], exclusions: list[dict[str, str]], reference: bool = False,
              extra: list[str] = (), timeout: int = 120,
              source: Path | None = None) -> tuple[dict[str, Any], float]:
    """Run a copy of the suite (``source``: the installed skorch's tests) in a fresh pytest
    process: (the plugin's report, wall seconds)."""
    source = source or installed_tests_dir()
    with tempfile.TemporaryDirectory(prefix="skorch-conformance-") as tmp:
        root = Path(tmp)
        tests = copy_suite(source, root)
        targets = select(tests, files)
        report = root / "report.json"
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   SKORCH_CONFORMANCE_REPORT=str(report), SKORCH_CONFORMANCE_TESTS=str(tests),
                   SKORCH_CONFORMANCE_EXCLUDE=json.dumps(exclusions))
        paths = [str(root), str(REPO / "bench")] + ([] if reference else [str(REPO / "src")])
        env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [os.environ.get("PYTHONPATH")] if p])
        if reference:
            env["SKORCH_CONFORMANCE_REFERENCE"] = "1"
        command = [sys.executable, "-m", "pytest", *targets, "-q", "-p", "no:cacheprovider",
                   "-p", "skorch_alias", "--rootdir", str(root), "-W", "ignore::DeprecationWarning",
                   "--tb=no", "-o", "console_output_style=classic", f"--timeout={timeout}", *extra]
        start = time.perf_counter()
        result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if not report.is_file():
            raise SystemExit(f"pytest ended (exit {result.returncode}) without a report:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        payload = json.loads(report.read_text())
        if payload["leaked"]:
            raise SystemExit(f"the run imported the installed skorch's own modules: {payload['leaked']}")
        return payload, seconds


def select(tests: Path, files: list[str]) -> list[str]:
    """The test files matching the ``--files`` globs (relative to the tests dir), or the whole dir."""
    if not files:
        return [str(tests)]
    found = sorted(str(p.relative_to(tests)) for p in tests.rglob("test_*.py"))
    chosen = [f for f in found if any(fnmatch.fnmatchcase(f, pattern) for pattern in files)]
    if not chosen:
        raise SystemExit(f"--files {files} matches none of: {', '.join(found)}")
    return [str(tests / f) for f in chosen]


def file_of(test_id: str) -> str:
    return test_id.split("::", 1)[0]


def summarise(payload: dict[str, Any]) -> dict[str, Any]:
    """Counts per file and overall, the rate, and the most frequent failure messages."""
    per_file: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for test_id, entry in payload["outcomes"].items():
        per_file[file_of(test_id)][entry["outcome"]] += 1
    for test_id in payload["excluded"]:
        per_file[file_of(test_id)]["excluded"] += 1
    total = sum(per_file.values(), collections.Counter())
    causes = collections.Counter(
        _normalise(entry["message"]) for entry in payload["outcomes"].values() if entry["outcome"] == "failed")
    return {"per_file": {f: dict(c) for f, c in sorted(per_file.items())}, "total": dict(total),
            "rate": rate(total), "causes": causes.most_common()}


def _normalise(message: str) -> str:
    """A failure message with addresses and numbers blanked, so equal causes group together."""
    message = re.sub(r"0x[0-9a-f]+", "0x...", message)
    return re.sub(r"\d+(\.\d+)?", "N", message)[:160]


def rate(counts: collections.Counter | dict) -> float:
    ran = counts.get("passed", 0) + counts.get("failed", 0)
    return counts.get("passed", 0) / ran if ran else 0.0


def print_report(summary: dict[str, Any], payload: dict[str, Any], exclusions: list[dict[str, str]],
                 seconds: float, label: str, causes: int) -> None:
    print(f"skorch 1.4.0 test suite against {label}: {seconds:.0f} s wall\n")
    print("| file | passed | failed | skipped | excluded | pass rate |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = list(summary["per_file"].items()) + [("**all**", summary["total"])]
    for name, c in rows:
        print(f"| {name} | {c.get('passed', 0)} | {c.get('failed', 0)} | {c.get('skipped', 0)} "
              f"| {c.get('excluded', 0)} | {100 * rate(c):.1f}% |")
    total = summary["total"]
    print(f"\npass rate: {total.get('passed', 0)} of {total.get('passed', 0) + total.get('failed', 0)} "
          f"= {100 * summary['rate']:.1f}% (excluded: {total.get('excluded', 0)}, skipped: {total.get('skipped', 0)})")
    print("\nexcluded on purpose (bench/skorch_conformance_exclusions.toml):")
    for entry, n in exclusion_counts(payload, exclusions):
        print(f"  {n:3d}  {entry['pattern']}: {entry['reason']}")
    if causes:
        print(f"\nmost frequent failure messages (top {causes}):")
        for message, n in summary["causes"][:causes]:
            print(f"  {n:3d}  {message}")


def exclusion_counts(payload: dict[str, Any], exclusions: list[dict[str, str]]) -> list[tuple[dict, int]]:
    """Each exclusion entry with the number of tests it deselected (the first matching entry counts)."""
    counts = collections.Counter()
    for test_id in payload["excluded"]:
        first = next((i for i, e in enumerate(exclusions) if fnmatch.fnmatchcase(test_id, e["pattern"])), None)
        counts[first] += 1
    return [(entry, counts[i]) for i, entry in enumerate(exclusions)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", action="append", default=[],
                        help="only these test files: globs relative to skorch/tests, e.g. 'callbacks/*' "
                             "(repeatable; default: every in-scope file)")
    parser.add_argument("--reference", action="store_true",
                        help="run the same selection on the installed skorch itself (no alias)")
    parser.add_argument("--exclusions", type=Path, default=EXCLUSIONS)
    parser.add_argument("--causes", type=int, default=25, help="how many failure messages to list")
    parser.add_argument("--failures", action="store_true", help="list every failed test with its message")
    parser.add_argument("--json", type=Path, help="write the outcomes and the summary here")
    parser.add_argument("--floor", type=float,
                        help="exit 1 when the pass rate (0..1) falls below this")
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest (after --), e.g. -- -k Slice")
    args = parser.parse_args(argv)
    exclusions = [] if args.reference else load_exclusions(args.exclusions)
    payload, seconds = run_suite(args.files, exclusions, args.reference, args.pytest_args)
    summary = summarise(payload)
    label = "skorch itself (reference)" if args.reference else "prefect_torch (import alias)"
    print_report(summary, payload, exclusions, seconds, label, args.causes)
    if args.failures:
        print("\nfailed:")
        for test_id, entry in sorted(payload["outcomes"].items()):
            if entry["outcome"] == "failed":
                print(f"  {test_id}: {entry['message']}")
    if args.json:
        args.json.write_text(json.dumps({"seconds": seconds, "summary": summary, **payload}, indent=1))
    if args.floor is not None and summary["rate"] < args.floor:
        print(f"\npass rate {summary['rate']:.3f} is below the floor {args.floor:.3f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
