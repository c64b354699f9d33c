#!/usr/bin/env bash
# Run the test suite (after setting up the environment). Extra arguments go to pytest.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/setup.sh"
cd "$repo"
python -m pytest "$@"
