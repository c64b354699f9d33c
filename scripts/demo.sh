#!/usr/bin/env bash
# The main job: train the README's example classifier as a Prefect flow, each epoch a task run with a
# committed checkpoint; a re-run resumes where the last one stopped (--max-epochs N, --lr, --fresh).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/setup.sh" plot  # matplotlib: the curves in the UI
cd "$repo"
source "$repo/scripts/prefect_server.sh"
python flows/train_example.py "$@"
if [[ -n "$demo_server" ]]; then
    echo
    echo "[demo] for your own flows to report to this server and its UI, in a new shell (README: After the demo):"
    echo "export PREFECT_API_URL=$demo_server PREFECT_UI_URL=$PREFECT_UI_URL"
fi
