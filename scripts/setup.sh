#!/usr/bin/env bash
# Set up a Python environment for prefect-torch; sourced by scripts/demo.sh and scripts/test.sh.
#
# - Uses the active virtualenv ($VIRTUAL_ENV) if there is one, else creates ./.venv.
# - Installs torch only when it is missing, and then the CPU wheel torch==2.13.0
#   (a plain "pip install torch" would pull a multi-GB CUDA build); an existing torch is kept.
# - Installs the package in editable mode with its test extras; skipped when pyproject.toml
#   has not changed since the last run.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ -z "${VIRTUAL_ENV:-}" ]]; then
    if [[ ! -x "$repo/.venv/bin/python" ]]; then
        echo "[setup] creating $repo/.venv" >&2
        "${PYTHON:-python3}" -m venv "$repo/.venv"
    fi
    # shellcheck disable=SC1091
    source "$repo/.venv/bin/activate"
fi

stamp="$VIRTUAL_ENV/.prefect-torch-installed"
want="$(cat "$repo/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    pip_quiet=(--quiet --disable-pip-version-check)
    if ! python -c "import torch" 2>/dev/null; then
        echo "[setup] installing the CPU build of torch 2.13.0" >&2
        python -m pip install "${pip_quiet[@]}" "torch==2.13.0" \
            || python -m pip install "${pip_quiet[@]}" "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
    fi
    echo "[setup] installing prefect-torch and its test extras" >&2
    python -m pip install "${pip_quiet[@]}" -e "$repo[test,compare]"
    echo "$want" > "$stamp"
fi
