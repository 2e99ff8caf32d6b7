"""A 6-target blur sweep three ways, same run:
  grounded  one batch [pivot + 6] with grounded self-attention (this pack's Pivot Batch)
  reference six 2-row batches [target, pivot], each grounded (the authors' procedure)
  free      one batch of 7 without grounding (window 0)

    python scripts/dev.py bench.bench_sweep                   # CPU: tiny and mid configs
    python scripts/dev.py bench.bench_sweep --device cuda     # GPU: full FLUX.1 architecture, random bf16, 512^2 and 1024^2

Targets (issue 4): grounded <= 0.6x reference, <= 1.2x free.
"""

from __future__ import annotations

import argparse

from . import common

PIVOT, TARGETS = 15.0, [0.0, 4.0, 8.0, 12.0, 18.0, 28.0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", default=None, help="run only this size (GPU)")
    args = ap.parse_args()
    common.harness.boot(cpu=args.device == "cpu")
    import torch

    if args.device == "cpu":
        cases = [("tiny", 256, 10, torch.float32), ("mid", 128, 5, torch.float32)]
        txt = 64
    else:
        cases = [("full", 512, 30, torch.bfloat16), ("full", 1024, 10, torch.bfloat16)]
        txt = 512
    if args.only:
        cases = [c for c in cases if str(c[1]) == args.only]
    print(f"# bench_sweep on {common.device_name(args.device)}, torch {torch.__version__}; grounding = 80 % of steps")
    print("config  size  steps  grounded_s  reference_s  free_s  grounded/reference  grounded/free")
    built = {}
    for name, size, steps, dtype in cases:
        if name not in built:
            built[name] = common.build_model(name, args.device, dtype)
        base = built[name]
        g_steps = round(0.8 * steps)
        grounded = common.with_adapter(base, name, [PIVOT, *TARGETS], grounding=(0, g_steps))
        free = common.with_adapter(base, name, [PIVOT, *TARGETS], grounding=(0, 0))
        pairs = [common.with_adapter(base, name, [t, PIVOT], grounding=(1, g_steps)) for t in TARGETS]
        run = lambda m, rows: common.run_fn(m, name, rows, size, steps, args.device, dtype, txt)  # noqa: E731
        pair_runs = [run(m, 2) for m in pairs]

        def reference():
            for r in pair_runs:
                r()

        t = common.compare({"grounded": run(grounded, 7), "reference": reference, "free": run(free, 7)}, args.repeats)
        print(f"{name:6s}  {size:4d}  {steps:5d}  {t['grounded']:10.3f}  {t['reference']:11.3f}  {t['free']:6.3f}"
              f"  {t['grounded'] / t['reference']:18.2f}  {t['grounded'] / t['free']:13.2f}", flush=True)


if __name__ == "__main__":
    main()
