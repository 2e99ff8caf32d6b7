"""Wall time of a 12-target grounded sweep shared out with ComfyUI-Distributed: one participant
(the master alone, Participants 1) vs three (the master and two workers, Participants 3), on
loopback ComfyUIs with one torch thread each, and the overhead of dispatch and collection. CPU,
the bundled workflow bokeh_grounded_sweep_distributed.json on the tiny random models of
fixtures/test_nodes (installed in each server, as the tests do), the real extension from
../shared/thirdparty/.

    python scripts/dev.py bench.bench_distributed [--preset tiny|mid] [--size 256] [--steps 8] [--repeats 3]

The tiny model's steps cost about the same for 5 rows as for 13 (per-call overhead dominates),
so sharing rows out gains little there; the mid model (hidden 768, 18 blocks; its own random
adapter) is compute-bound, as FLUX is on a GPU.

Wall time = from POST /distributed/queue on the master to the master's prompt finished (images
gathered, checked, colour-matched, sheet, meter, saved). Every timed sweep has a new seed, so
every participant renders it anew; the model-building nodes stay cached, as in a user's second
run. One- and three-participant sweeps are interleaved and the median is kept. Overhead = a sweep
repeated with the same seed: every participant answers the sampling from its cache, and what is
left is dispatch (probe, prompt copies, POST to each worker), the workers' PNG upload, the
collection, Gather and the finishing nodes; minus the same for one participant, it is the cost
of sharing out.

One thread per server: three participants on a machine with fewer than three cores share them,
so expect at best cores/3 of the work per participant at the same time. One participant per GPU
is the case the engine is for.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


from ..fixtures import distributed_pack, harness
from ..runner.model_files import ADAPTER

TARGETS = "0, 2, 4, 6, 8, 10, 12, 15, 18, 21, 24, 28"
WORKERS = ["w1", "w2"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=["tiny", "mid"], default="tiny")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    opts = ap.parse_args()
    try:
        distributed_pack.thirdparty.unpack(distributed_pack.FOLDER)
    except distributed_pack.thirdparty.Missing as e:
        sys.exit(f"bench_distributed: {e}")
    root = Path(tempfile.mkdtemp(prefix="bench_distributed_"))
    bases = [harness.server_base(root / name, adapters={ADAPTER: 41} if opts.preset == "tiny" else None)
             for name in ("master", *WORKERS)]
    if opts.preset == "mid":  # an adapter that fits the mid model, the same file on every server
        from safetensors.torch import save_file

        cfg = harness.MID
        sd = harness.random_adapter_sd(cfg["hidden_size"], range(cfg["depth"] + cfg["depth_single_blocks"]), seed=41)
        for base in bases:
            (base / "models" / "bokeh_diffusion").mkdir(parents=True)
            save_file({k: v.contiguous() for k, v in sd.items()}, str(base / "models" / "bokeh_diffusion" / ADAPTER))
    extensions = [distributed_pack.install(b / "custom_nodes") for b in bases]
    one_thread = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    envs = [one_thread] + [{**one_thread, "COMFYUI_IS_WORKER": "1"}] * len(WORKERS)

    with harness.comfy_servers(bases, envs) as (master, *workers):
        ports = [int(w.url.rsplit(":", 1)[1]) for w in workers]
        distributed_pack.write_master_config(extensions[0], list(zip(WORKERS, ports)), timeout_s=120)
        defs = distributed_pack.remote_defs(master.url)

        def sweep(participants, seed) -> float:
            prompt = distributed_pack.sweep_prompt(defs, TARGETS, participants, opts.steps, opts.size, seed, opts.preset)
            start = time.perf_counter()
            body = distributed_pack.queue(master.url, prompt, WORKERS if participants > 1 else [])
            entry = distributed_pack.wait(master.url, body["prompt_id"], timeout=1800)
            took = time.perf_counter() - start
            if entry["status"].get("status_str") != "success":
                raise RuntimeError(f"the sweep failed: {entry['status']}")
            return took

        sweep(3, 1)  # warm-up: each server builds its models and runs its first batches
        sweep(1, 2)
        times = {1: [], 3: []}
        for r in range(opts.repeats):
            times[1].append(sweep(1, 100 + 2 * r))
            times[3].append(sweep(3, 101 + 2 * r))
        cached = {}
        for n in (1, 3):  # a server caches its last prompt only: each sweep twice in a row
            sweep(n, 7 + n)
            cached[n] = sweep(n, 7 + n)
    wall = {n: statistics.median(t) for n, t in times.items()}
    print(f"# bench_distributed: 12-target grounded sweep, {opts.preset} FLUX, {opts.size}x{opts.size}, {opts.steps} steps; "
          f"ComfyUI-Distributed 1.4.4 on loopback, 1 torch thread per server; {os.cpu_count()} CPU cores; median of {opts.repeats}")
    print("participants  wall_s  runs_s")
    for n in (1, 3):
        print(f"{n:12d}  {wall[n]:6.2f}  {' '.join(f'{t:.2f}' for t in times[n])}")
    print(f"ratio 3 participants / 1: {wall[3] / wall[1]:.2f}")
    print(f"the same sweep again (sampling from the caches): 1 participant {cached[1]:.2f} s, 3 participants "
          f"{cached[3]:.2f} s; dispatch and collection cost {cached[3] - cached[1]:.2f} s per sweep")


if __name__ == "__main__":
    main()
