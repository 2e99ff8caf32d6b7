"""What training inside ComfyUI's executor needs of the host's model, beyond the headless trainer.

ComfyUI runs every node under ``torch.inference_mode()``, so a model loaded by a loader node holds
inference tensors: autograd refuses to save them for backward ("Inference tensors cannot be
saved for backward"), and the adapter's gradients flow through every frozen matmul. Core's Train
LoRA node (0.33) re-runs the loader outside inference mode (``clone(force_deepcopy=True)``), a
second copy of the model that hosts before 0.30 cannot make. Here the frozen weights are made
ordinary tensors in place instead, one tensor at a time (peak memory: one tensor more), with the
same values, so inference on the model afterwards gives the same results.

After training, the bound clone (its q/k norms and input-copying norms are object patches on the
shared FLUX module) is unloaded explicitly: left to the garbage collector, the host's loaded-model
list would hand its patched module to the next sampling of the base model.
"""

from __future__ import annotations

import torch
from torch import nn


def trainable(model):
    """``model`` (a FLUX ModelPatcher) ready for autograd: the diffusion model's inference
    parameters and buffers replaced by ordinary tensors with the same values, in place. Returns
    the patcher to train (a non-dynamic one where the host loaded it with Dynamic VRAM, as core's
    Train LoRA does) and the number of tensors replaced."""
    with torch.inference_mode(False):
        if getattr(model, "is_dynamic", lambda: False)():
            model = model.clone(disable_dynamic=True)  # the host's own non-dynamic copy (0.16+, NVIDIA)
        replaced = 0
        # Weights the host pinned in CPU memory (partial loads) stay: they reach the device only
        # as copies made while training runs (outside inference mode), and unpinning needs the
        # pinned tensor itself. (Not exercised by the CPU tests: no pinning there.)
        pinned = getattr(model, "pinned", None) or set()
        for path, module in model.model.diffusion_model.named_modules():
            prefix = f"diffusion_model.{path}." if path else "diffusion_model."
            for name, p in list(module._parameters.items()):
                if p is not None and p.is_inference() and prefix + name not in pinned:
                    module._parameters[name] = nn.Parameter(p.clone(), requires_grad=False)
                    replaced += 1
            for name, b in list(module._buffers.items()):
                if b is not None and b.is_inference():
                    module._buffers[name] = b.clone()
                    replaced += 1
    return model, replaced


def release(model) -> None:
    """Unload the training clone ``model`` (from training.binding.bind_for_training) if the host
    holds it loaded: its object patches come off the shared module now."""
    import comfy.model_management as mm

    for i in reversed(range(len(mm.current_loaded_models))):
        loaded = mm.current_loaded_models[i]
        if loaded.model is model:
            loaded.model_unload()
            mm.current_loaded_models.pop(i)
