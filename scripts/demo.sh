#!/usr/bin/env bash
# The main job: train the README's example classifier and print its epoch table.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/setup.sh"
cd "$repo"
python flows/train_example.py "$@"
