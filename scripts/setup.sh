#!/usr/bin/env bash
# Set up a Python environment for prefect-torch. Sourced with the extras a command needs:
#   source scripts/setup.sh plot                # scripts/demo.sh: the package, and matplotlib for the UI's curves
#   source scripts/setup.sh plot,test,compare   # scripts/test.sh, scripts/lint.sh: plus the test tools
# (pass "" explicitly: a bare `source` would see the caller's own arguments)
#
# - Uses the active virtualenv ($VIRTUAL_ENV) if there is one, else creates ./.venv.
# - Installs torch only when it is missing, then torch==2.13.0, never a CUDA build without an NVIDIA
#   GPU: from pip's configured local sources first, else PyTorch's CPU index, and the default index
#   only with an NVIDIA GPU or off Linux (scripts/install_torch.sh). An existing torch is kept.
# - Installs the package in editable mode with the extras asked for; skipped when pyproject.toml has
#   not changed since the last run and those extras were installed then (the stamp in the venv
#   records both), so the demo after the tests installs nothing and the tests after the demo add
#   only their extras.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-}"
if [[ ! "$extras" =~ ^[a-z0-9_,-]*$ || "$extras" == -* ]]; then
    echo "[setup] extras must be a comma-separated list such as test,compare, not '$extras'" >&2
    return 2 2>/dev/null || exit 2
fi

if [[ -z "${VIRTUAL_ENV:-}" ]]; then
    if [[ ! -x "$repo/.venv/bin/python" ]]; then
        echo "[setup] creating $repo/.venv" >&2
        "${PYTHON:-python3}" -m venv "$repo/.venv"
    fi
    # shellcheck disable=SC1091
    source "$repo/.venv/bin/activate"
fi

stamp="$VIRTUAL_ENV/.prefect-torch-installed"
want="$(sha256sum < "$repo/pyproject.toml" | cut -d' ' -f1)"
had="" had_extras=""
read -r had had_extras 2>/dev/null < "$stamp" || true
if [[ "$had" != "$want" ]]; then
    had_extras=""  # pyproject.toml changed: what was installed before counts for nothing
fi
missing=""
for extra in ${extras//,/ }; do
    [[ ",$had_extras," == *",$extra,"* ]] || missing="$missing,$extra"
done
if [[ "$had" != "$want" || -n "$missing" ]]; then
    if ! python -c "import torch" 2>/dev/null; then
        # shellcheck source=scripts/install_torch.sh
        source "$repo/scripts/install_torch.sh"
        install_torch 2.13.0
    fi
    echo "[setup] installing prefect-torch${extras:+ with the extras $extras}" >&2
    python -m pip install --quiet --disable-pip-version-check -e "$repo${extras:+[$extras]}"
    installed="$(echo "${had_extras}${missing}" | sed 's/^,//')"
    echo "$want $installed" > "$stamp"
fi
