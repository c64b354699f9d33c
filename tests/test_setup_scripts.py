"""scripts/setup.sh and scripts/install_torch.sh, run by bash in a sandbox whose PATH holds fake
`python` (and so pip), `nvidia-smi` and `uname`: which index torch would come from, and what the
stamp makes each command install. Nothing is downloaded."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
BASH = shutil.which("bash")

FAKE_PYTHON = """#!{bash}
# logs each call; `-m pip install` fails for the sources named in $FAKE_FAILS (local, cpu, default)
echo "$*" >> "$FAKE_LOG"
if [[ "$1" == -c ]]; then exit "${{FAKE_NO_TORCH:-0}}"; fi
case "$*" in
    *--no-index*) source=local ;;
    *--index-url*) source=cpu ;;
    *) source=default ;;
esac
[[ " $FAKE_FAILS " == *" $source "* ]] && exit 1
exit 0
"""


def _sandbox(tmp_path, *, gpu=None, system="Linux"):
    """A bin folder with the fakes and only the real tools the scripts use; ``gpu``: None (no
    nvidia-smi), False (nvidia-smi without a GPU, exit 9) or True (lists one GPU)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("grep", "sed", "cat", "cut", "sha256sum", "dirname"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    fakes = {"python": FAKE_PYTHON.format(bash=BASH), "uname": f"#!{BASH}\necho {system}\n"}
    if gpu is not None:
        fakes["nvidia-smi"] = (f"#!{BASH}\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)'\n" if gpu
                               else f"#!{BASH}\necho 'NVIDIA-SMI has failed' >&2; exit 9\n")
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _bash(tmp_path, bin_dir, script, **env):
    log = tmp_path / "calls.log"
    log.touch()
    run = subprocess.run([BASH, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env={"PATH": str(bin_dir), "FAKE_LOG": str(log), "HOME": str(tmp_path), **env})
    return run, [line for line in log.read_text().splitlines() if " pip install " in f" {line} "]


def _install_torch(tmp_path, fails="", **sandbox):
    bin_dir = _sandbox(tmp_path, **sandbox)
    return _bash(tmp_path, bin_dir, "source scripts/install_torch.sh && install_torch 2.13.0",
                 FAKE_FAILS=fails, VIRTUAL_ENV=str(tmp_path / "venv"))


def test_a_configured_local_wheel_is_used_without_any_index(tmp_path):
    run, calls = _install_torch(tmp_path, gpu=None)
    assert run.returncode == 0, run.stderr
    assert calls == ["-m pip install --quiet --disable-pip-version-check --no-index --no-deps torch==2.13.0"]


@pytest.mark.parametrize("gpu", [None, False], ids=["no-nvidia-smi", "nvidia-smi-without-gpu"])
def test_without_a_gpu_only_the_cpu_index_is_tried(tmp_path, gpu):
    run, calls = _install_torch(tmp_path, fails="local", gpu=gpu)
    assert run.returncode == 0, run.stderr
    assert len(calls) == 2 and "--no-index" in calls[0]
    assert calls[1].endswith(f"torch==2.13.0 --index-url {CPU_INDEX}")
    assert "no NVIDIA GPU" in run.stderr


def test_without_a_gpu_a_failing_cpu_index_never_falls_back_to_the_cuda_build(tmp_path):
    run, calls = _install_torch(tmp_path, fails="local cpu", gpu=False)
    assert run.returncode == 1
    assert [c for c in calls if "--index-url" not in c and "--no-index" not in c] == []
    assert CPU_INDEX in run.stderr and "PIP_FIND_LINKS" in run.stderr


@pytest.mark.parametrize("sandbox", [{"gpu": True}, {"gpu": None, "system": "Darwin"}], ids=["gpu", "macos"])
def test_with_a_gpu_or_off_linux_the_default_index_is_used(tmp_path, sandbox):
    run, calls = _install_torch(tmp_path, fails="local", **sandbox)
    assert run.returncode == 0, run.stderr
    assert calls[1] == "-m pip install --quiet --disable-pip-version-check torch==2.13.0"


def _setup(tmp_path, bin_dir, extras, **env):
    venv = tmp_path / "venv"
    venv.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    log.write_text("")
    run, calls = _bash(tmp_path, bin_dir, f"source scripts/setup.sh '{extras}'", VIRTUAL_ENV=str(venv), **env)
    assert run.returncode == 0, run.stderr
    return [c.split(" -e ")[1] for c in calls if " -e " in c]


def test_the_stamp_installs_what_each_command_lacks_and_nothing_twice(tmp_path):
    bin_dir = _sandbox(tmp_path)
    assert _setup(tmp_path, bin_dir, "") == [str(REPO)]  # no extras
    assert _setup(tmp_path, bin_dir, "") == []
    assert _setup(tmp_path, bin_dir, "test,compare") == [f"{REPO}[test,compare]"]  # the tests add theirs
    assert _setup(tmp_path, bin_dir, "") == []  # fewer extras after more
    assert _setup(tmp_path, bin_dir, "test,compare") == []
    assert _setup(tmp_path, bin_dir, "compare") == []


def test_a_changed_pyproject_or_an_old_stamp_installs_again(tmp_path):
    bin_dir = _sandbox(tmp_path)
    stamp = tmp_path / "venv" / ".prefect-torch-installed"
    assert _setup(tmp_path, bin_dir, "test,compare") == [f"{REPO}[test,compare]"]
    stamp.write_text("0" * 64 + " test,compare\n")  # as after an edit of pyproject.toml
    assert _setup(tmp_path, bin_dir, "") == [str(REPO)]
    assert _setup(tmp_path, bin_dir, "test,compare") == [f"{REPO}[test,compare]"]
    stamp.write_text(stamp.read_text().split()[0] + "\n")  # the stamp of the older setup.sh: no extras
    assert _setup(tmp_path, bin_dir, "test") == [f"{REPO}[test]"]
    assert _setup(tmp_path, bin_dir, "compare") == [f"{REPO}[compare]"]
    assert _setup(tmp_path, bin_dir, "test,compare") == []  # the stamp keeps both


def test_a_missing_torch_goes_through_install_torch(tmp_path):
    bin_dir = _sandbox(tmp_path, gpu=None)
    venv = tmp_path / "venv"
    venv.mkdir()
    run, calls = _bash(tmp_path, bin_dir, "source scripts/setup.sh ''", VIRTUAL_ENV=str(venv),
                       FAKE_NO_TORCH="1", FAKE_FAILS="local")
    assert run.returncode == 0, run.stderr
    assert [c.split()[-1] for c in calls] == ["torch==2.13.0", CPU_INDEX, str(REPO)]


def test_setup_refuses_arguments_that_are_not_extras(tmp_path):
    bin_dir = _sandbox(tmp_path)
    (tmp_path / "venv").mkdir()
    run, calls = _bash(tmp_path, bin_dir, "source scripts/setup.sh --max-epochs", VIRTUAL_ENV=str(tmp_path / "venv"))
    assert run.returncode == 2 and "--max-epochs" in run.stderr and calls == []


def _extras_of(script):
    """The extras ``scripts/<script>`` passes to setup.sh."""
    (line,) = [line for line in (REPO / "scripts" / script).read_text().splitlines()
               if line.startswith('source "$repo/scripts/setup.sh"')]
    return line.split()[2].strip('"')


def test_the_demo_installs_matplotlib_for_the_curves_and_the_tests_keep_it(tmp_path):
    bin_dir = _sandbox(tmp_path)
    demo, tests, lint = _extras_of("demo.sh"), _extras_of("test.sh"), _extras_of("lint.sh")
    assert "plot" in demo.split(",") and "plot" in tests.split(",") and "plot" in lint.split(",")
    assert _setup(tmp_path, bin_dir, demo) == [f"{REPO}[{demo}]"]
    assert _setup(tmp_path, bin_dir, tests) == [f"{REPO}[{tests}]"]  # adds the test tools
    assert _setup(tmp_path, bin_dir, demo) == []  # the demo after the tests: nothing to install
