"""Adapter overhead: sampling time of FLUX with and without the Bokeh adapter, same run.

    python scripts/dev.py bench.bench_adapter                 # CPU: tiny and mid configs
    python scripts/dev.py bench.bench_adapter --device cuda   # GPU: full FLUX.1 architecture, random bf16, 512^2 and 1024^2

Targets (issue 3): overhead <= 10 % on CPU, <= 3 % on GPU.
"""

from __future__ import annotations

import argparse

from . import common


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    common.harness.boot(cpu=args.device == "cpu")
    import torch

    if args.device == "cpu":
        cases = [("tiny", 256, 10, torch.float32), ("mid", 128, 6, torch.float32)]
        txt = 64
    else:
        cases = [("full", 512, 10, torch.bfloat16), ("full", 1024, 6, torch.bfloat16)]
        txt = 512
    print(f"# bench_adapter on {common.device_name(args.device)}, torch {torch.__version__}")
    print("config  size  steps  base_s   adapter_s  overhead")
    built = {}
    for name, size, steps, dtype in cases:
        if name not in built:
            built[name] = common.build_model(name, args.device, dtype)
        base = built[name]
        patched = common.with_adapter(base, name, [12.0])
        runs = {
            "base": common.run_fn(base, name, 1, size, steps, args.device, dtype, txt),
            "adapter": common.run_fn(patched, name, 1, size, steps, args.device, dtype, txt),
        }
        t = common.compare(runs, args.repeats)
        print(f"{name:6s}  {size:4d}  {steps:5d}  {t['base']:7.3f}  {t['adapter']:9.3f}  {100 * (t['adapter'] / t['base'] - 1):+6.1f} %", flush=True)


if __name__ == "__main__":
    main()
