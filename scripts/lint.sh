#!/usr/bin/env bash
# Static checks: ruff (errors, unused names, import order) and mypy on the package.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/setup.sh" plot,test,compare
cd "$repo"
python -m ruff check src tests bench flows
python -m mypy
