#!/usr/bin/env bash
# Install the browser of the UI tests (tests/test_ui_artifacts.py): Debian's chromium and
# chromium-driver, plus a font so that screenshots show text. Does nothing when both are installed.
#
# - Non-interactive; runs apt-get through sudo when not root.
# - Runs `apt-get update` only when the package lists are missing or do not know the packages,
#   or when an install from the present lists fails.
# - About 25 s and 121 MB of downloads (440 MB on disk) on a Debian 12 machine.
#
# Usage: bash scripts/install_browser.sh        (or `source` it from .ci/run / scripts/setup.sh)
set -euo pipefail

_browser_packages=(chromium chromium-driver fonts-dejavu-core)

_install_browser() {
    if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "[install_browser] no apt-get here: install chromium and chromedriver by hand" >&2
        return 1
    fi
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        sudo=(sudo -n)
    fi
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q
               -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    echo "[install_browser] installing ${_browser_packages[*]}" >&2
    # update the package lists only when they cannot provide the packages
    if ! apt-cache show chromium chromium-driver >/dev/null 2>&1; then
        "${apt[@]}" update >/dev/null
    fi
    if ! "${apt[@]}" install --no-install-recommends "${_browser_packages[@]}" >/dev/null; then
        # stale lists (a package version gone from the mirror): refresh once and retry
        "${apt[@]}" update >/dev/null
        "${apt[@]}" install --no-install-recommends "${_browser_packages[@]}" >/dev/null
    fi
    echo "[install_browser] $(chromium --version 2>/dev/null); $(chromedriver --version 2>/dev/null)" >&2
}

_install_browser
