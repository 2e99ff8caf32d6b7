#!/usr/bin/env bash
# The GPU benchmarks in one call (full FLUX.1 architecture, random bf16 weights).
# Needs the ComfyUI host in .cache/ (carry it) and torch with CUDA; no downloads.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/bench_out}"; mkdir -p "$OUT"
bench() { python3 scripts/dev.py "bench.$1" "${@:2}" 2>&1 | grep -v "^WARNING"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
bench bench_adapter --device cuda --repeats 3 | tee "$OUT/adapter.txt"
bench bench_sweep --device cuda --repeats 1 | tee "$OUT/sweep.txt"
# Peak VRAM and time with and without the adapter, Dynamic VRAM on and off (a 0.30.0 host:
# COMFYUI_PATH=.cache/comfyui-0.30.0-<hash>; carry .cache).
bench bench_vram --dynamic off | tee "$OUT/vram_off.txt"
bench bench_vram --dynamic on | tee "$OUT/vram_on.txt"
bench bench_train --device cuda | tee "$OUT/train.txt"
