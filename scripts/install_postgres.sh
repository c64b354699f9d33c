#!/usr/bin/env bash
# Install PostgreSQL for the tests that run a Prefect server on Postgres
# (tests/test_postgres_deployment.py, through tests/postgres_server.py): Debian's `postgresql`.
# Does nothing when initdb and pg_ctl are found, on PATH or in /usr/lib/postgresql/*/bin
# (where Debian puts them: its /usr/bin has neither).
#
# - Through scripts/apt_install.sh: non-interactive, sudo when not root, `apt-get update` only
#   when needed.
# - The tests start a private cluster of their own (initdb in a temporary folder, loopback only);
#   the cluster that Debian's package creates and starts, if any, is not used.
#
# Usage: bash scripts/install_postgres.sh        (or `source` it from .ci/run / scripts/setup.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/apt_install.sh"

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
    apt_install install_postgres "${_postgres_packages[@]}"
    local bindir
    bindir="$(_postgres_bindir)" || {
        echo "[install_postgres] installed ${_postgres_packages[*]}, but found no initdb/pg_ctl" >&2
        return 1
    }
    echo "[install_postgres] $("$bindir/initdb" --version) in $bindir" >&2
}

_install_postgres
