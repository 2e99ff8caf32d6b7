#!/usr/bin/env bash
# Sets up everything the tests, benchmarks and the sweep runner need, on a fresh machine:
# a virtual environment with torch, the host's Python deps and ours, and a ComfyUI host
# (COMFYUI_PATH, the ComfyUI two folders up, or the pinned copy fetched into .cache/).
# Idempotent: a venv whose stamp matches the requirements is reused.
# Prints nothing on stdout but the venv's python path (last line), so callers can use it.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY_BOOT="${PYTHON:-python3}"
TORCH_REQ="torch==2.14.1 torchvision==0.29.1"

HOST="$("$PY_BOOT" "$REPO/tools/comfy_host.py")"
echo "[setup] ComfyUI host: $HOST" >&2

# The host's requirements minus torch (installed pinned above) and torchaudio (optional:
# ComfyUI skips its audio nodes without it).
HOST_REQS="$(grep -Ev '^\s*(torch|torchvision|torchaudio)\s*$' "$HOST/requirements.txt")"
KEY="$( { echo "$TORCH_REQ"; echo "$HOST_REQS"; cat "$REPO/requirements.txt" "$REPO/scripts/requirements-test.txt"; "$PY_BOOT" --version; } | sha256sum | cut -c1-16)"
VENV="${BOKEH_VENV:-${XDG_CACHE_HOME:-${HOME:-$REPO}/.cache}/bokeh-diffusion-comfyui/venv-$KEY}"

if [ ! -f "$VENV/.bokeh-setup-ok" ]; then
  echo "[setup] creating $VENV (torch is about 5.5 GB; this takes a few minutes once)" >&2
  rm -rf "$VENV"
  "$PY_BOOT" -m venv "$VENV"
  PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
  # shellcheck disable=SC2086
  "${PIP[@]}" $TORCH_REQ >&2
  "${PIP[@]}" -r <(echo "$HOST_REQS") -r "$REPO/requirements.txt" -r "$REPO/scripts/requirements-test.txt" >&2
  echo "$KEY" > "$VENV/.bokeh-setup-ok"
fi
echo "$VENV/bin/python"
