"""Shared pieces of the benchmarks: models with random weights, timed model-evaluation loops.

A "run" is what KSampler asks of the model with euler + simple: one evaluation per step on
the FLUX schedule (sample_sigmas), minus the sampler's own bookkeeping, so the ratios measure
the model and the pack's patch. Runs of a comparison are interleaved and the median is kept.
"""

from __future__ import annotations

import statistics
import time
import types

from ..fixtures import harness

CONFIGS = {"tiny": harness.TINY, "mid": harness.MID, "full": harness.FULL}


def pack():
    """The pack's modules the benchmarks drive (imported once the host is booted)."""
    from ..attention import binding, bokeh, families, patch
    from ..weights import keys

    return types.SimpleNamespace(binding=binding, patch=patch, keys=keys, families=families, bokeh=bokeh)


def build_model(name: str, device: str, dtype):
    """FLUX of config ``name`` with random weights made on ``device`` (no 48 GB CPU detour)."""
    import torch
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    cfg = harness.flux_config(**CONFIGS[name])
    model_conf = comfy.supported_models.Flux(cfg)
    model_conf.set_inference_dtype(dtype, None)
    model = model_conf.get_model({}, device=torch.device(device))
    g = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for pname, p in model.diffusion_model.named_parameters():
            # RMS norm weights: "scale" up to ComfyUI 0.13, torch.nn.RMSNorm's "weight" from 0.14 on
            if pname.endswith(".scale") or (p.ndim == 1 and "norm" in pname and pname.endswith(".weight")):
                p.fill_(1.0)
            elif p.ndim >= 2:
                p.normal_(0, p[0].numel() ** -0.5, generator=g)
            else:
                p.normal_(0, 0.02, generator=g)
    model.diffusion_model.to(dtype)
    dev = torch.device(device)
    # The host's own patcher class (ModelPatcherDynamic where Dynamic VRAM is enabled, 0.16+).
    patcher_class = getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)
    return patcher_class(model, load_device=dev, offload_device=dev if device != "cpu" else mm.unet_offload_device())


def adapter_for(name: str, dtype, device):
    """An adapter of the released layout for config ``name`` (rank 128, context 768, every block)."""
    import torch

    P = pack()
    cfg = CONFIGS[name]
    n = cfg["depth"] + cfg["depth_single_blocks"]
    rank = 128 if name == "full" else 16
    shapes = {"embedding_layer.0.weight": (64, 1), "embedding_layer.0.bias": (64,),
              "embedding_layer.2.weight": (768, 64), "embedding_layer.2.bias": (768,)}
    for i in range(n):
        for pname in ("to_q_adp", "to_k_adp", "to_k_bokeh", "to_v_bokeh"):
            shapes[f"adapter_modules.{i}.{pname}.down.weight"] = (rank, cfg["hidden_size"] if pname.endswith("_adp") else 768)
            shapes[f"adapter_modules.{i}.{pname}.up.weight"] = (cfg["hidden_size"], rank)
    dims, _ = P.keys.infer_dims(shapes)
    module = P.bokeh.BokehAdapter(dims, device=device, dtype=dtype)
    g = torch.Generator(device=device).manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.02, generator=g)
    module.requires_grad_(False)
    block_map = P.families.host_block_map(dims, cfg["depth"], cfg["depth_single_blocks"])
    return module, block_map


_owned_patchers: dict = {}  # the benchmark's adapters live for the whole run


def with_adapter(model, name, k_values, grounding=None):
    P = pack()
    dm = model.model.diffusion_model
    p = next(dm.parameters())
    module, block_map = adapter_for(name, p.dtype, p.device)
    out = P.patch.apply_adapter(model, module, _owned_patchers, block_map, k_values[:1])
    if len(k_values) > 1 or grounding is not None:
        g = None if grounding is None else P.binding.Grounding(pivot=grounding[0], fraction=0.8, steps=grounding[1])
        out = P.patch.rebind(out, k_values=list(k_values), grounding=g)
    return out


def flux_schedule(steps: int, tokens: int):
    """The sigmas of euler + simple on FLUX with the resolution shift (ModelSamplingFlux 1.15 / 0.5)."""
    import math

    import torch

    mu = 0.5 + (1.15 - 0.5) * (tokens - 256) / (4096 - 256)
    t = torch.linspace(1.0, 0.0, steps + 1)[:-1]
    sig = math.exp(mu) / (math.exp(mu) + (1 / t - 1))
    return torch.cat([sig, torch.zeros(1)])


def inputs(name, rows, size, device, dtype, txt_tokens):
    import torch

    cfg = CONFIGS[name]
    g = torch.Generator().manual_seed(2)
    x = torch.randn(rows, 16, size // 8, size // 8, generator=g).to(device, dtype)
    ctx = torch.randn(rows, txt_tokens, cfg["context_in_dim"], generator=g).to(device, dtype)
    y = torch.randn(rows, cfg["vec_in_dim"], generator=g).to(device, dtype)
    return x, ctx, y


def run_fn(model, name, rows, size, steps, device, dtype, txt_tokens):
    """A callable that performs one sampling run (``steps`` evaluations) of ``model``."""
    import torch

    x, ctx, y = inputs(name, rows, size, device, dtype, txt_tokens)
    sched = flux_schedule(steps, (size // 16) ** 2).to(device)
    guidance = torch.full((rows,), 3.0, device=device, dtype=dtype)
    base_to = harness.sampling_transformer_options(model)
    dm = model.model.diffusion_model

    def run():
        harness.load_for_inference(model)  # what KSampler does first: patch this clone in
        with torch.no_grad():
            for i in range(steps):
                t = sched[i].expand(rows).to(dtype)
                to = dict(base_to, cond_or_uncond=[0], sigmas=t, sample_sigmas=sched)
                dm(x, t, ctx, y=y, guidance=guidance, transformer_options=to)
        if device != "cpu":
            torch.cuda.synchronize()
    return run


def compare(runs: dict, repeats: int, warmup: int = 1) -> dict:
    """Median seconds of each callable, runs interleaved."""
    times = {k: [] for k in runs}
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    for _ in range(repeats):
        for k, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def device_name(device: str) -> str:
    import platform

    import torch

    if device == "cpu":
        return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return torch.cuda.get_device_name(0)
