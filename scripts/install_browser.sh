#!/usr/bin/env bash
# Install the browser of the UI tests (tests/test_ui_artifacts.py): Debian's chromium and
# chromium-driver, plus a font so that screenshots show text. Does nothing when both are installed.
#
# - Through scripts/apt_install.sh: non-interactive, sudo when not root, `apt-get update` only
#   when needed.
# - About 25 s and 121 MB of downloads (440 MB on disk) on a Debian 12 machine.
#
# Usage: bash scripts/install_browser.sh        (or `source` it from .ci/run / scripts/setup.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/apt_install.sh"

_browser_packages=(chromium chromium-driver fonts-dejavu-core)

_install_browser() {
    if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
        return 0
    fi
    apt_install install_browser "${_browser_packages[@]}"
    echo "[install_browser] $(chromium --version 2>/dev/null); $(chromedriver --version 2>/dev/null)" >&2
}

_install_browser
