#!/usr/bin/env bash
# The main job: sets up a fresh machine (same environment as the tests) and runs a blur sweep.
#   bash scripts/sweep.sh --prompt "a cat on a sofa"      # needs the model files (README)
#   bash scripts/sweep.sh --check                         # tiny random models: proves the install
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$(bash "$REPO/scripts/setup.sh" | tail -n 1)"
exec "$PY" "$REPO/scripts/bokeh_sweep.py" "$@"
