"""The README's first hour, from a clean clone: the demo, then a new shell that follows the
README's next steps as written, then the user's own flow, which must report to the server the
demo started (its flow run and artifacts on that server's API), not to a temporary one.

The README blocks are read from README.md itself, so README and test cannot drift; the only
substitution is the port (``127.0.0.1:4200`` -> a free port, which the demo gets through
``PREFECT_TORCH_PORT``). Every shell runs with a bare environment (``PATH``, ``HOME``, ``LANG``,
pip's configuration), plus a private ``PREFECT_HOME`` (so the test's server and its pid file stay in the temporary
folder; a user's is ``~/.prefect``) and ``OMP_NUM_THREADS=1`` (the machine is shared).

The clone's ``.venv`` is made by the test before the demo, with a ``.pth`` line that reaches the
test interpreter's installed dependencies (torch, prefect, ...) and a ``prefect`` command of its
own, so the demo's set-up installs only prefect-torch itself (editable, from the clone) and nothing
is downloaded; ``PREFECT_TORCH_FRESH_VENV=1`` leaves the ``.venv`` to the demo, which then installs
everything as on a new machine.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

from processes import free_port

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def readme_block(after: str, language: str) -> str:
    """The first ```language block of README.md after the text ``after``."""
    start = README.index(after)
    match = re.compile(rf"^```{language}\n(.*?)^```$", re.S | re.M).search(README, start)
    assert match, f"no {language} block after {after!r} in README.md"
    return match.group(1)


def test_the_readme_flow_is_flows_my_first_flow():
    """The fit_in_flow example of the README runs as shown: it is the file the next steps run."""
    assert readme_block("## Train in Prefect flows", "python") == (REPO / "flows/my_first_flow.py").read_text()
    assert "python flows/my_first_flow.py" in readme_block("After the demo, in a new shell", "bash")


def _bare_env(home: Path, prefect_home: Path, **extra: str) -> dict[str, str]:
    """A new shell's environment; pip keeps its configuration (the ``PIP_*`` variables and the
    user's pip.conf, which the private ``HOME`` would hide: where this machine's wheels are)."""
    pip = {name: value for name, value in os.environ.items() if name.startswith("PIP_")}
    user_conf = Path.home() / ".config/pip/pip.conf"
    if user_conf.is_file() and "PIP_CONFIG_FILE" not in pip:
        pip["PIP_CONFIG_FILE"] = str(user_conf)
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
            "PREFECT_HOME": str(prefect_home), "OMP_NUM_THREADS": "1", **pip, **extra}


def _shell(script: str, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def _overlay_venv(clone: Path) -> None:
    """``clone/.venv`` that sees this interpreter's dependencies (see the module docstring)."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(clone / ".venv")], check=True, timeout=120)
    venv_python = clone / ".venv/bin/python"
    purelib = subprocess.run([str(venv_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_first_hour_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    prefect = clone / ".venv/bin/prefect"
    prefect.write_text(f"#!{venv_python}\nimport sys\nfrom prefect.cli import app\nsys.exit(app())\n")
    prefect.chmod(0o755)


def _api(port: int, path: str, body: dict | None = None) -> object:
    url = f"http://127.0.0.1:{port}/api{path}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the demo's set-up (an editable install), a server's first start, two flows
def test_the_first_hour_from_a_clean_clone(tmp_path):
    clone, home, prefect_home = tmp_path / "clone", tmp_path / "home", tmp_path / "prefect-home"
    home.mkdir()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(REPO), str(clone)], check=True, timeout=120)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", head], check=True, timeout=120)
    if os.environ.get("PREFECT_TORCH_FRESH_VENV") != "1":
        _overlay_venv(clone)
    port = free_port()
    env = _bare_env(home, prefect_home)
    try:
        began = time.monotonic()
        demo = _shell("bash scripts/demo.sh", clone, {**env, "PREFECT_TORCH_PORT": str(port)}, timeout=1200)
        demo_seconds = time.monotonic() - began
        print(f"first demo from a clean clone: {demo_seconds:.1f} s")
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        # the line to copy: the demo's server, and its default UI for Prefect's own "View at" links
        assert (f"export PREFECT_API_URL=http://127.0.0.1:{port}/api PREFECT_UI_URL=http://127.0.0.1:{port}/v2"
                in demo.stdout.splitlines())

        steps = readme_block("After the demo, in a new shell", "bash").replace("127.0.0.1:4200", f"127.0.0.1:{port}")
        before_stop, stop = steps.split("prefect server stop")  # the last step, after the checks below
        assert stop.strip().startswith("#")  # (nothing after it)
        began = time.monotonic()
        user = _shell(before_stop, clone, env, timeout=600)
        print(f"the README's next steps (checkpoints, the user's flow of 20 epochs): {time.monotonic() - began:.1f} s")
        output = user.stdout + user.stderr
        assert user.returncode == 0, output[-4000:]
        assert "written (UTC)" in user.stdout and "train_loss" in user.stdout  # the checkpoints, the epoch table
        assert "temporary server" not in output.lower()
        views = [line for line in output.splitlines() if "View at" in line]
        assert views and all(f"http://127.0.0.1:{port}/v2/runs/" in line for line in views), views
        assert [line for line in output.splitlines() if "ERROR" in line or "telemetry" in line.lower()] == []

        runs = _api(port, "/flow_runs/filter", {"flow_runs": {}, "limit": 50})
        flows = {flow["id"]: flow["name"] for flow in _api(port, "/flows/filter", {"limit": 50})}
        nightly = [run for run in runs if flows[run["flow_id"]] == "nightly"]
        assert len(nightly) == 1 and nightly[0]["state_type"] == "COMPLETED"
        assert {flows[run["flow_id"]] for run in runs} == {"train-example", "nightly"}
        artifacts = _api(port, "/artifacts/filter",
                         {"artifacts": {"flow_run_id": {"any_": [nightly[0]["id"]]}}, "limit": 50})
        assert any((artifact.get("key") or "").startswith("nightly") for artifact in artifacts), artifacts
        tasks = _api(port, "/task_runs/filter", {"flow_runs": {"id": {"any_": [nightly[0]["id"]]}}, "limit": 50})
        assert sorted(task["name"] for task in tasks) == sorted(f"epoch-{n}" for n in range(1, 21))
    finally:
        stopped = _shell("source .venv/bin/activate\nprefect server stop", clone, env, timeout=120) \
            if (clone / ".venv/bin/prefect").exists() else None
        leftover = (prefect_home / "server.pid").exists()
    assert stopped is not None and stopped.returncode == 0, stopped and stopped.stderr[-2000:]
    assert not leftover
    with pytest.raises(OSError):
        _api(port, "/health")
    if os.environ.get("PREFECT_TORCH_FRESH_VENV") != "1":
        shutil.rmtree(clone / ".venv", ignore_errors=True)
