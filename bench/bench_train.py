"""Step time (and on a GPU peak memory) of one adapter training step: the loss of training/step.py,
its backward and an AdamW step, with and without gradient checkpointing.

    python scripts/dev.py bench.bench_train                      # CPU, tiny FLUX, float32 (the tests' size)
    python scripts/dev.py bench.bench_train --device cuda        # full FLUX.1 architecture, random bf16 weights, 512^2

GPU mode follows the recipe's memory plan (spec bokeh-training.md 1.6): bf16 base, float32 adapter
(rank 128, every block), gradients and AdamW state; 4 rows (the authors' batch per GPU) at 512 x
512 (1024 image tokens) with 512 text tokens (T5 padded as the authors do), the photo layout adds
1024 reference tokens (--reference). Prints the median seconds per step and torch's peak
allocated memory per case.
"""

from __future__ import annotations

import argparse
import statistics
import time

from . import common


def training_modules():
    import types

    from ..training import adapter_io, binding, step

    return types.SimpleNamespace(step=step, binding=binding, io=adapter_io)


def make_batch(T, cfg, rows, size, txt_tokens, reference, device):
    import torch

    g = torch.Generator().manual_seed(0)
    lat = (rows, 16, size // 8, size // 8)
    return T.step.Batch(
        latents=torch.randn(lat, generator=g), noise=torch.randn(lat, generator=g), sigmas=torch.rand(rows, generator=g),
        k_inputs=torch.rand(rows, generator=g), context=torch.randn(rows, txt_tokens, cfg["context_in_dim"], generator=g),
        pooled=torch.randn(rows, cfg["vec_in_dim"], generator=g), guidance=torch.ones(rows),
        reference=torch.randn(lat, generator=g) if reference else None,
        swap=None if reference else torch.tensor([0] * rows), swap_blocks="single")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--config", default=None, choices=sorted(common.CONFIGS), help="default: tiny on CPU, full on CUDA")
    parser.add_argument("--size", type=int, default=None, help="image side in pixels (default: 32 on CPU, 512 on CUDA)")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--txt-tokens", type=int, default=None, help="default: 8 on CPU, 512 on CUDA")
    parser.add_argument("--reference", action="store_true", help="photo layout: Kontext reference tokens (else a grounded group)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per case (default: 20 on CPU, 5 on CUDA)")
    args = parser.parse_args()
    gpu = args.device == "cuda"
    name = args.config or ("full" if gpu else "tiny")
    size = args.size or (512 if gpu else 32)
    txt = args.txt_tokens or (512 if gpu else 8)
    steps = args.steps or (5 if gpu else 20)

    common.harness.boot(cpu=not gpu)
    import torch

    T = training_modules()
    cfg = common.CONFIGS[name]
    model = common.build_model(name, args.device, torch.bfloat16 if gpu else torch.float32)
    n_blocks = cfg["depth"] + cfg["depth_single_blocks"]
    small = name == "tiny"
    adapter = T.io.new_adapter(cfg["hidden_size"], range(n_blocks), rank=4 if small else 128, context=16 if small else 768,
                               embed_hidden=8 if small else 64, flavour="photo" if args.reference else "text", device=args.device)
    with torch.no_grad():  # non-zero up weights: the step's cost does not depend on them, its arithmetic does
        for p in adapter.parameters():
            p.normal_(0, 0.02)
    bound = T.binding.bind_for_training(model, adapter)
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=1e-4, weight_decay=0.01)
    batch = make_batch(T, cfg, args.rows, size, txt, args.reference, args.device)
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    print(f"config {name}, {args.device}, {args.rows} rows at {size}x{size}, {txt} text tokens, "
          f"{'photo (reference tokens)' if args.reference else 'grounded group'}; adapter "
          f"{sum(p.numel() for p in adapter.parameters()) / 1e6:.2f} M parameters")
    if gpu:
        print("device:", torch.cuda.get_device_name())
    for checkpointing in (False, True):
        def one():
            loss = T.step.adapter_loss(bound, adapter, batch, gradient_checkpointing=checkpointing)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        try:
            one()  # warm-up (loads the model, allocates the optimiser state)
            sync()
            if gpu:
                torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(steps):
                start = time.perf_counter()
                one()
                sync()
                times.append(time.perf_counter() - start)
        except torch.OutOfMemoryError:
            optimizer.zero_grad(set_to_none=True)
            print(f"checkpointing {'on ' if checkpointing else 'off'}: out of memory")
            torch.cuda.empty_cache()
            continue
        peak = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if gpu else ""
        print(f"checkpointing {'on ' if checkpointing else 'off'}: {statistics.median(times) * 1000:.1f} ms/step "
              f"(median of {steps}){peak}")


if __name__ == "__main__":
    main()
