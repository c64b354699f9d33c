"""pytest plugin: ``skorch`` and ``skorch.*`` imports resolve to the matching ``prefect_torch`` modules.

Used by ``bench/skorch_conformance.py``, which runs a copy of skorch's own test suite (laid out as
``<tmp>/skorch/tests``) with ``-p skorch_alias``. Rules of the alias:

* ``skorch`` is ``prefect_torch``; ``skorch.X`` is ``prefect_torch.X`` (``skorch.dataset`` is
  ``prefect_torch.data``): the very same module objects, so a missing name fails the test that
  imports or uses it;
* ``skorch.tests`` and below are the copied test files (their fixtures and helpers);
* nothing of skorch's implementation is ever imported: a ``skorch.*`` module prefect_torch lacks
  raises ``ModuleNotFoundError``, and the session fails if any module of the installed skorch got
  imported -- except the self-contained fixture helpers in ``FIXTURE_MODULES``
  (``skorch._version``, a vendored version parser the test fixtures call), loaded on their own.

The plugin also reads ``SKORCH_CONFORMANCE_EXCLUDE`` (a JSON list of ``{"pattern", "reason"}``:
those tests are deselected and reported as excluded) and writes every outcome to the JSON file
named by ``SKORCH_CONFORMANCE_REPORT``.
"""
from __future__ import annotations

import fnmatch
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest

RENAMED = {"skorch.dataset": "prefect_torch.data", "skorch.cli": "prefect_torch.cli_args"}
TESTS_PACKAGE = "skorch.tests"
# self-contained helper modules of the installed skorch that the tests use as fixtures only
# (``_version.Version`` compares torch versions in two fixtures); they import nothing of skorch
FIXTURE_MODULES = {"skorch._version": "_version.py"}


def target_of(fullname: str) -> str:
    """The prefect_torch module that stands for the skorch module ``fullname``."""
    return RENAMED.get(fullname, "prefect_torch" + fullname[len("skorch"):])


class _AliasLoader(importlib.abc.Loader):
    """Hands out the already imported prefect_torch module itself, leaving its own spec in place."""

    def __init__(self, target: types.ModuleType):
        self.target = target
        self.target_spec = target.__spec__

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return self.target

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__ = self.target_spec  # importlib stamped the alias spec on it


class SkorchAliasFinder(importlib.abc.MetaPathFinder):
    """Resolves every ``skorch*`` name: to prefect_torch, to the copied tests, or to an ImportError."""

    def __init__(self, tests_dir: Path, reference: Path | None = None, installed: Path | None = None):
        self.tests_dir = tests_dir
        self.reference = reference  # the installed skorch's directory, in reference mode
        self.installed = installed

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "skorch" and not fullname.startswith("skorch."):
            return None
        if fullname == TESTS_PACKAGE:
            return importlib.util.spec_from_file_location(
                fullname, self.tests_dir / "__init__.py", submodule_search_locations=[str(self.tests_dir)])
        if fullname.startswith(TESTS_PACKAGE + "."):
            return None  # the path finder finds them in skorch.tests.__path__ (the copy)
        if self.reference is not None:  # skorch itself, not the copy's empty skorch/__init__.py
            return importlib.machinery.PathFinder.find_spec(fullname, path or [str(self.reference.parent)])
        if fullname in FIXTURE_MODULES and self.installed is not None:
            return importlib.util.spec_from_file_location(fullname, self.installed / FIXTURE_MODULES[fullname])
        name = target_of(fullname)
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (the alias maps it to {name!r}, which does not exist)",
                name=fullname) from None
        return importlib.machinery.ModuleSpec(
            fullname, _AliasLoader(module), is_package=hasattr(module, "__path__"))


def installed_skorch_dir(root: Path) -> Path | None:
    """Where the installed skorch lives (looked up without importing it, ignoring the copy in ``root``)."""
    paths = [p for p in sys.path if Path(p or ".").resolve() != root.resolve()]
    spec = importlib.machinery.PathFinder.find_spec("skorch", paths)
    return Path(spec.origin).parent.resolve() if spec and spec.origin else None


class _Recorder:
    def __init__(self, report_path: str | None, exclusions: list[dict[str, str]], installed: Path | None):
        self.report_path = report_path
        self.exclusions = exclusions
        self.tests_prefix = "skorch/tests/"
        self.outcomes: dict[str, dict[str, str]] = {}
        self.excluded: dict[str, str] = {}
        self.installed = installed  # None: nothing to guard (reference mode, or skorch not installed)

    def short(self, nodeid: str) -> str:
        return nodeid[len(self.tests_prefix):] if nodeid.startswith(self.tests_prefix) else nodeid

    def reason_to_exclude(self, nodeid: str) -> str | None:
        short = self.short(nodeid)
        for entry in self.exclusions:
            if fnmatch.fnmatchcase(short, entry["pattern"]):
                return entry["reason"]
        return None

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: Any, items: list[Any]) -> None:
        kept, dropped = [], []
        for item in items:
            reason = self.reason_to_exclude(item.nodeid)
            if reason is None:
                kept.append(item)
            else:
                dropped.append(item)
                self.excluded[self.short(item.nodeid)] = reason
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept

    def pytest_runtest_logreport(self, report: Any) -> None:
        key = self.short(report.nodeid)
        entry = self.outcomes.setdefault(key, {"outcome": "passed", "message": ""})
        if report.failed:
            if entry["outcome"] != "failed":
                entry.update(outcome="failed", message=_crash_message(report))
        elif report.skipped and entry["outcome"] == "passed":
            entry["outcome"] = "skipped"  # skipped, or xfail

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.outcomes[self.short(report.nodeid) + "::<collection>"] = {
                "outcome": "failed", "message": _crash_message(report)}

    def leaked_modules(self) -> list[str]:
        if self.installed is None:
            return []
        leaked = []
        allowed = {self.installed / file for file in FIXTURE_MODULES.values()}
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None)
            if file and Path(file).resolve().is_relative_to(self.installed) and Path(file).resolve() not in allowed:
                leaked.append(name)
        return sorted(leaked)

    def pytest_sessionfinish(self, session: Any) -> None:
        leaked = self.leaked_modules()
        if leaked:
            session.exitstatus = 3
            print(f"\nskorch_alias: modules of the installed skorch were imported: {leaked}", file=sys.stderr)
        if self.report_path:
            Path(self.report_path).write_text(json.dumps(
                {"outcomes": self.outcomes, "excluded": self.excluded, "leaked": leaked}))


def _crash_message(report: Any) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def install(tests_dir: Path, reference: bool) -> Path | None:
    """Put the finder first on ``sys.meta_path`` (once); the installed skorch's directory, if any.

    Called by ``pytest_configure`` and, in processes that multiprocessing spawns, by the
    ``sitecustomize.py`` the runner writes beside the copied tests.
    """
    tests_dir = tests_dir.resolve()
    installed = installed_skorch_dir(tests_dir.parent.parent)
    if reference and installed is None:
        raise RuntimeError("reference mode needs skorch installed: pip install -e '.[compare]'")
    if not any(isinstance(finder, SkorchAliasFinder) for finder in sys.meta_path):
        for name in [n for n in sys.modules if n == "skorch" or n.startswith("skorch.")]:
            del sys.modules[name]
        sys.meta_path.insert(0, SkorchAliasFinder(tests_dir, installed if reference else None, installed))
    return installed


def install_from_environment() -> Path | None:
    tests = os.environ.get("SKORCH_CONFORMANCE_TESTS")
    if not tests:
        return None
    return install(Path(tests), os.environ.get("SKORCH_CONFORMANCE_REFERENCE") == "1")


def pytest_configure(config: Any) -> None:
    if not os.environ.get("SKORCH_CONFORMANCE_TESTS"):
        os.environ["SKORCH_CONFORMANCE_TESTS"] = str(config.rootpath / "skorch" / "tests")
    reference = os.environ.get("SKORCH_CONFORMANCE_REFERENCE") == "1"
    try:
        installed = install_from_environment()
    except RuntimeError as error:
        raise pytest.UsageError(str(error)) from None
    exclusions = json.loads(os.environ.get("SKORCH_CONFORMANCE_EXCLUDE", "[]"))
    config.pluginmanager.register(
        _Recorder(os.environ.get("SKORCH_CONFORMANCE_REPORT"), exclusions, None if reference else installed),
        "skorch_alias_recorder")
