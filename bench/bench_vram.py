"""Peak VRAM and time of FLUX sampling with and without the Bokeh adapter, with ComfyUI's Dynamic
VRAM on or off (ComfyUI 0.16+ on NVIDIA; e.g. the 0.30.0 host). GPU only; one setting per process,
since Dynamic VRAM is chosen before any model exists (as main.py does).

    python scripts/dev.py bench.bench_vram --dynamic on     # bench/gpu.sh runs both
    python scripts/dev.py bench.bench_vram --dynamic off

Prints, per case: median seconds of a sampling run (full FLUX.1 architecture, random bf16
weights), torch's peak allocated memory, and the device memory in use after the run.
"""

from __future__ import annotations

import argparse

from . import common


def enable_dynamic_vram() -> str:
    """What main.py does when comfy-aimdo works (ComfyUI 0.16+). Returns what happened."""
    import comfy.cli_args
    import comfy.model_management as mm
    import comfy.model_patcher

    if not hasattr(comfy.model_patcher, "ModelPatcherDynamic"):
        return "not in this ComfyUI (before 0.16)"
    import comfy.memory_management
    try:
        import comfy_aimdo.control
    except ImportError:
        return "comfy-aimdo is not installed"
    devices = mm.get_all_torch_devices() if hasattr(mm, "get_all_torch_devices") else [mm.get_torch_device()]
    headroom = int(getattr(comfy.cli_args.args, "vram_headroom", 0) * 1024**3)
    try:
        ok = comfy_aimdo.control.init_devices((d.index, headroom) for d in devices)
    except TypeError:  # comfy-aimdo 0.4.9 protocol
        ok = comfy_aimdo.control.init_devices(d.index for d in devices)
    if not ok:
        return "comfy-aimdo did not start on this device"
    comfy.model_patcher.CoreModelPatcher = comfy.model_patcher.ModelPatcherDynamic
    comfy.memory_management.aimdo_enabled = True
    return "on"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dynamic", choices=["on", "off"], default="off")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    common.harness.boot(cpu=False)
    import torch
    import comfy.model_management as mm

    state = enable_dynamic_vram() if args.dynamic == "on" else "off"
    print(f"# bench_vram on {common.device_name('cuda')}, torch {torch.__version__}; Dynamic VRAM: {state}")
    print("case     size  steps  median_s  peak_alloc_GiB  in_use_after_GiB")
    base = common.build_model("full", "cuda", torch.bfloat16)
    models = {"base": base, "adapter": common.with_adapter(base, "full", [12.0])}
    for name, model in models.items():
        mm.unload_all_models()
        mm.soft_empty_cache()
        torch.cuda.reset_peak_memory_stats()
        run = common.run_fn(model, "full", 1, args.size, args.steps, "cuda", torch.bfloat16, 512)
        t = common.compare({name: run}, args.repeats)[name]
        free, total = torch.cuda.mem_get_info()
        print(f"{name:7s}  {args.size:4d}  {args.steps:5d}  {t:8.3f}  {torch.cuda.max_memory_allocated() / 2**30:14.2f}"
              f"  {(total - free) / 2**30:16.2f}", flush=True)


if __name__ == "__main__":
    main()
