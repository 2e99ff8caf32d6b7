#!/usr/bin/env bash
# Sets up everything the tests, benchmarks and the sweep runner need, on a fresh machine:
# a virtual environment with torch, the host's Python deps and ours, and a ComfyUI host
# (COMFYUI_PATH, the ComfyUI two folders up, or the pinned copy fetched into .cache/).
# Idempotent: a venv whose stamp matches the requirements is reused.
# BOKEH_TORCH replaces the torch stack (the CI host matrix gives ComfyUI 0.30.0 torch 2.11.0
# with torchaudio, which that host imports unconditionally); the venv key follows it.
# Prints nothing on stdout but the venv's python path (last line), so callers can use it.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY_BOOT="${PYTHON:-python3}"
TORCH_REQ="${BOKEH_TORCH:-torch==2.14.1 torchvision==0.29.1}"

HOST="$("$PY_BOOT" "$REPO/runner/host.py")"
echo "[setup] ComfyUI host: $HOST" >&2

# The host's requirements minus torch (pinned above) and torchaudio (optional on 0.3.75 and
# 0.8.0, which skip their audio nodes without it; BOKEH_TORCH adds it where a host needs it).
HOST_REQS="$(grep -Ev '^\s*(torch|torchvision|torchaudio)\s*$' "$HOST/requirements.txt")"
KEY="$( { echo "$TORCH_REQ"; echo "$HOST_REQS"; cat "$REPO/requirements.txt" "$REPO/scripts/requirements-test.txt"; "$PY_BOOT" --version; } | sha256sum | cut -c1-16)"
VENV="${BOKEH_VENV:-${XDG_CACHE_HOME:-${HOME:-$REPO}/.cache}/bokeh-diffusion-comfyui/venv-$KEY}"

if [ ! -f "$VENV/.bokeh-setup-ok" ]; then
  echo "[setup] creating $VENV with $TORCH_REQ (torch is about 5.5 GB; this takes a few minutes once)" >&2
  START=$SECONDS
  rm -rf "$VENV"
  "$PY_BOOT" -m venv "$VENV"
  # One resolution for everything; the torch pins keep the host's unpinned lines off torch.
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $TORCH_REQ \
    -r <(echo "$HOST_REQS") -r "$REPO/requirements.txt" -r "$REPO/scripts/requirements-test.txt" >&2
  echo "$KEY" > "$VENV/.bokeh-setup-ok"
  echo "[setup] venv ready in $((SECONDS - START)) s" >&2
fi
echo "$VENV/bin/python"
