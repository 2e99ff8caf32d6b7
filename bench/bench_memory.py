"""Adapter memory: load and apply 10 different adapter files in a row, as a ComfyUI server does
(one PromptExecutor, its caches carrying over between prompts), then drop them. Prints how many
adapter weight sets are alive and how much the process grew.

    python scripts/dev.py bench.bench_memory               # 10 files of about 70 MB each, tiny FLUX, CPU

Target (issue 8): at most one adapter alive after the loop (the one the last prompt used, held by
ComfyUI's output cache and the pack's one-entry file cache), none after dropping, RSS growth
within noise (far below one file's size).
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import warnings
from pathlib import Path

from ..fixtures import harness


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def alive(classes) -> int:
    """Objects of ``classes`` alive after a full collection."""
    gc.collect()
    with warnings.catch_warnings():  # isinstance on some torch globals warns
        warnings.simplefilter("ignore")
        return sum(1 for o in gc.get_objects() if isinstance(o, classes))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--context", type=int, default=131072, help="bokeh context size: sets each file's size")
    args = ap.parse_args()

    harness.quiet_host_logging()
    harness.load_pack()
    import torch

    bokeh = harness.pack_module("attention.bokeh")
    folder = harness.pack_module("weights.folder")
    cfg = harness.TINY
    blocks = range(cfg["depth"] + cfg["depth_single_blocks"])
    models = Path(tempfile.mkdtemp(prefix="bokeh_bench_memory_"))
    names = []
    for i in range(args.files):
        sd = harness.random_adapter_sd(cfg["hidden_size"], blocks, rank=16, context=args.context, seed=100 + i, scale=0.05)
        path = harness.write_adapter(models, sd, name=f"bench_memory_{i}.safetensors")
        names.append(path.name)
    size_mb = path.stat().st_size / 2**20
    print(f"# bench_memory: {args.files} adapter files of {size_mb:.1f} MB, tiny FLUX, 1 sampling step each, "
          f"torch {torch.__version__}, CPU")

    executor = harness.new_executor()
    print("prompt  adapters_alive  rss_mb  growth_mb")
    start = None
    for i, name in enumerate(names):
        result = harness.run_prompt(harness.tiny_graph(name, steps=1), executor=executor)
        assert result.ok, result.errors
        del result
        n, rss = alive(bokeh.BokehAdapter), rss_mb()
        start = rss if start is None else start
        print(f"{i + 1:6d}  {n:14d}  {rss:6.0f}  {rss - start:+9.1f}", flush=True)
    in_loop = alive(bokeh.BokehAdapter)

    del executor  # the server's caches go (as when the outputs are evicted)
    folder._cache.clear()
    import comfy.model_management as mm

    mm.unload_all_models()
    mm.cleanup_models()
    n, rss = alive((bokeh.BokehAdapter, bokeh.LowRank)), rss_mb()
    print(f"after the loop: {in_loop} adapter(s) alive; after dropping: {n} adapter objects (adapters and their "
          f"low-rank pairs) alive; RSS growth over the loop {rss - start:+.1f} MB (one file = {size_mb:.1f} MB)")


if __name__ == "__main__":
    main()
