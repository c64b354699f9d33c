#!/usr/bin/env bash
# The main job: train the README's example classifier with a checkpoint after each epoch;
# a re-run resumes where the last one stopped (--max-epochs N, --fresh).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/setup.sh"
cd "$repo"
python flows/train_example.py "$@"
