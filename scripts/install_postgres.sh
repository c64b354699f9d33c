#!/usr/bin/env bash
# Install PostgreSQL for the tests that run a Prefect server on Postgres
# (tests/test_postgres_deployment.py, through tests/postgres_server.py): Debian's `postgresql`.
# Does nothing when initdb and pg_ctl are found, on PATH or in /usr/lib/postgresql/*/bin
# (where Debian puts them: its /usr/bin has neither).
#
# - Non-interactive; runs apt-get through sudo when not root.
# - Runs `apt-get update` only when the package lists are missing or do not know the package,
#   or when an install from the present lists fails.
# - The tests start a private cluster of their own (initdb in a temporary folder, loopback only);
#   the cluster that Debian's package creates and starts, if any, is not used.
#
# Usage: bash scripts/install_postgres.sh        (or `source` it from .ci/run / scripts/setup.sh)
set -euo pipefail

_postgres_packages=(postgresql)

# the folder holding initdb and pg_ctl, or nothing; newest /usr/lib/postgresql/<version> first
_postgres_bindir() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    local dir
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -rV); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

_install_postgres() {
    if _postgres_bindir >/dev/null; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "[install_postgres] no apt-get here: install PostgreSQL (initdb, pg_ctl) by hand" >&2
        return 1
    fi
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        sudo=(sudo -n)
    fi
    local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q
               -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    echo "[install_postgres] installing ${_postgres_packages[*]}" >&2
    # update the package lists only when they cannot provide the package
    if ! apt-cache show "${_postgres_packages[@]}" >/dev/null 2>&1; then
        "${apt[@]}" update >/dev/null
    fi
    if ! "${apt[@]}" install --no-install-recommends "${_postgres_packages[@]}" >/dev/null; then
        # stale lists (a package version gone from the mirror): refresh once and retry
        "${apt[@]}" update >/dev/null
        "${apt[@]}" install --no-install-recommends "${_postgres_packages[@]}" >/dev/null
    fi
    local bindir
    bindir="$(_postgres_bindir)" || {
        echo "[install_postgres] installed ${_postgres_packages[*]}, but found no initdb/pg_ctl" >&2
        return 1
    }
    echo "[install_postgres] $("$bindir/initdb" --version) in $bindir" >&2
}

_install_postgres
