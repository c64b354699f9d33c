#!/usr/bin/env bash
# Run the test suite (after setting up the environment). Extra arguments go to pytest.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/setup.sh" plot,test,compare
cd "$repo"
# the UI tests drive Debian's chromium; without it (and no way to install it) they are skipped
bash "$repo/scripts/install_browser.sh" || echo "[test] chromium not installed: the browser tests will be skipped" >&2
# the Postgres tests start a private cluster with Debian's postgresql; without it they are skipped
bash "$repo/scripts/install_postgres.sh" || echo "[test] PostgreSQL not installed: the Postgres tests will be skipped" >&2
python -m pytest "$@"
