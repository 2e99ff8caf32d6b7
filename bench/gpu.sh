#!/usr/bin/env bash
# The GPU benchmarks in one call (full FLUX.1 architecture, random bf16 weights).
# Needs the ComfyUI host in .cache/ (carry it) and torch with CUDA; no downloads.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/bench_out}"; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 bench_adapter.py --device cuda --repeats 3 2>&1 | grep -v "^WARNING" | tee "$OUT/adapter.txt"
python3 bench_sweep.py --device cuda --repeats 1 2>&1 | grep -v "^WARNING" | tee "$OUT/sweep.txt"
# Peak VRAM and time with and without the adapter, Dynamic VRAM on and off (a 0.30.0 host:
# COMFYUI_PATH=.cache/comfyui-0.30.0-<hash>; carry .cache).
python3 bench_vram.py --dynamic off 2>&1 | grep -v "^WARNING" | tee "$OUT/vram_off.txt"
python3 bench_vram.py --dynamic on 2>&1 | grep -v "^WARNING" | tee "$OUT/vram_on.txt"
