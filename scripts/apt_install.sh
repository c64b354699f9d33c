#!/usr/bin/env bash
# `apt_install TAG PACKAGE...`: install Debian packages for the test set-up scripts
# (install_browser.sh, install_postgres.sh), which source this file.
#
# - Non-interactive; runs apt-get through sudo when not root.
# - Runs `apt-get update` only when the package lists are missing or do not know the packages,
#   or when an install from the present lists fails (a package version gone from the mirror).
# - Returns 1, with a message prefixed by [TAG], when there is no apt-get.

apt_install() {
    local tag="$1"
    shift
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "[$tag] no apt-get here: install $* by hand" >&2
        return 1
    fi
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        sudo=(sudo -n)
    fi
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q
               -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    echo "[$tag] installing $*" >&2
    if ! apt-cache show "$@" >/dev/null 2>&1; then
        "${apt[@]}" update >/dev/null
    fi
    if ! "${apt[@]}" install --no-install-recommends "$@" >/dev/null; then
        "${apt[@]}" update >/dev/null
        "${apt[@]}" install --no-install-recommends "$@" >/dev/null
    fi
}
