#!/usr/bin/env bash
# The test command: sets up a fresh machine (venv, torch, host deps, ComfyUI host) and runs pytest.
# A run that collects no test fails (pytest exit code 5 is turned into failure). Skipped tests are
# listed with their reasons (-rs).
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$(bash "$REPO/scripts/setup.sh" | tail -n 1)" || exit 1
cd "$REPO"
"$PY" -m pytest -rs "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "[test] pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
