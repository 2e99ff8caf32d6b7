"""Wall time of a 12-target blur sweep through the runner (scripts/bokeh_sweep.py --servers) on
one loopback ComfyUI vs two, and the runner's own overhead. CPU, the --check graph on tiny
random models (fixtures/test_nodes installed in each server, as the tests do).

    python scripts/dev.py bench.bench_shard [--size 256] [--steps 8] [--repeats 3]

Every timed sweep has a new seed, so the servers render it anew (ComfyUI answers a repeated
prompt from its cache); the model-building nodes stay cached, as in a user's second run. The
one- and two-server sweeps are interleaved and the median is kept. Overhead = a sweep repeated
with the same seed: the servers answer from their cache, so its wall time is the runner's
work (probe, submit, websocket, /history, /view, PNG decode, sheet, meter, files).

The CPU stands in for GPUs the way a multi-GPU box is shared: the one-server sweep runs on a
ComfyUI with every core, the two-server sweep on two ComfyUIs with half the cores each (torch
threads; without that, two servers' thread pools fight over the same cores). Expect little gain
where the cores are few. One server per GPU is the case the runner is for.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ..fixtures import harness
from ..runner import shard as shard_sweep
from ..runner import sweep_command as bokeh_sweep
from ..runner.model_files import ADAPTER

TARGETS = "0, 2, 4, 6, 8, 10, 12, 15, 18, 21, 24, 28"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    opts = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_shard_"))
    bases = [harness.server_base(root / name, adapters={ADAPTER: 41}) for name in ("whole", "half1", "half2")]
    half = str(max(1, (os.cpu_count() or 2) // 2))
    envs = [{}] + [{"OMP_NUM_THREADS": half, "MKL_NUM_THREADS": half}] * 2
    runs = iter(range(10**6))

    def sweep(urls, seed) -> float:
        out = root / f"out{next(runs)}"
        args = bokeh_sweep.parse_args(["--check", "--steps", str(opts.steps), "--width", str(opts.size), "--height",
                                       str(opts.size), "--targets", TARGETS, "--seed", str(seed), "--output", str(out)])
        start = time.perf_counter()
        result = shard_sweep.sweep(urls, lambda defs: bokeh_sweep.remote_prompt(args, defs), out, progress=False)
        assert len(result.images) == 13 and len(result.shards) == len(urls)
        return time.perf_counter() - start

    with harness.comfy_servers(bases, envs) as (whole, a, b):
        one, two = [whole.url], [a.url, b.url]
        sweep(two, 1)  # warm-up: each server builds its models and runs its first batches
        sweep(one, 2)
        times = {1: [], 2: []}
        for r in range(opts.repeats):
            times[1].append(sweep(one, 100 + 2 * r))
            times[2].append(sweep(two, 101 + 2 * r))
        cached = {}
        for n, urls in ((1, one), (2, two)):  # a server caches its last prompt only: each sweep twice in a row
            sweep(urls, 7 + n)
            cached[n] = sweep(urls, 7 + n)
        import asyncio

        import aiohttp
        import comfy_client

        async def about():
            async with aiohttp.ClientSession() as session:
                return await comfy_client.ComfyServer(a.url, session).about()

        host = asyncio.run(about())
    wall = {n: statistics.median(t) for n, t in times.items()}
    print(f"# bench_shard: 12-target sweep, tiny FLUX (--check graph), {opts.size}x{opts.size}, {opts.steps} steps; "
          f"{host}; {os.cpu_count()} CPU cores (two servers: {half} thread(s) each); median of {opts.repeats}")
    print("servers  shards  wall_s  runs_s")
    for n in (1, 2):
        print(f"{n:7d}  {n:6d}  {wall[n]:6.2f}  {' '.join(f'{t:.2f}' for t in times[n])}")
    print(f"ratio 2 servers / 1 server: {wall[2] / wall[1]:.2f}")
    print(f"runner overhead (the same sweep again, answered from the servers' caches): "
          f"1 server {cached[1]:.2f} s, 2 servers {cached[2]:.2f} s")


if __name__ == "__main__":
    main()
