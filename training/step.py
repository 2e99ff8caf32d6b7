"""One training step's loss, a pure function of explicit tensors (issue 23 item 3).

Spec bokeh-training.md 1.5 (steps 3-12): rectified flow, ``x_t = (1 - s) x0 + s e``, target
``e - x0``, plain MSE over the target image's latents (reference tokens dropped), mean over rows.
Everything random (noise with its offset, sigmas, K, dropout, swap decisions) is drawn by the
caller and passed in ``Batch``; nothing here draws a random number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..attention.bokeh import BokehAdapter
from ..attention.errors import BokehInputError
from .binding import TrainAttention, check_swap, checkpoint_patches, ensure_loaded, training_binding, training_mode


@dataclass
class Batch:
    """One batch of B rows. Latents are in the model's space (after ``process_latent_in``).

    latents: (B, C, H, W) clean targets x0.          noise: (B, C, H, W), offset included.
    sigmas: (B,) in (0, 1].                          k_inputs: (B,) network inputs (K/30, or -1.0).
    context: (B, T, D) text embeddings.              pooled: (B, P) pooled text vectors.
    guidance: (B,) FLUX guidance (1.0 in the authors' trainer), or None for models without it.
    reference: optional (B, C, H', W') FLUX.1 Kontext reference latents (appended after the
        target tokens with position ids (1, r, c); dropped from the loss).
    swap: optional (B,) row -> the row whose queries, noise and sigma it takes (grounding).
    swap_blocks: "single" (the authors' trainer) or "all" (Bokeh Diffusion's inference).
    """

    latents: torch.Tensor
    noise: torch.Tensor
    sigmas: torch.Tensor
    k_inputs: torch.Tensor
    context: torch.Tensor
    pooled: torch.Tensor
    guidance: torch.Tensor | None = None
    reference: torch.Tensor | None = None
    swap: torch.Tensor | None = None
    swap_blocks: str = "single"
    extra: dict = field(default_factory=dict)  # provenance for logs (kind of batch, K values); unused here


def _check(batch: Batch) -> int:
    b = batch.latents.shape[0]
    if batch.latents.ndim != 4 or batch.noise.shape != batch.latents.shape:
        raise BokehInputError(f"latents {tuple(batch.latents.shape)} and noise {tuple(batch.noise.shape)} must be one (B, C, H, W) shape.")
    for name in ("sigmas", "k_inputs", "context", "pooled"):
        t = getattr(batch, name)
        if t.shape[0] != b:
            raise BokehInputError(f"batch.{name} has {t.shape[0]} rows; the latents have {b}.")
    if batch.reference is not None and (batch.reference.shape[0] != b or batch.reference.shape[1] != batch.latents.shape[1]):
        raise BokehInputError(f"reference latents {tuple(batch.reference.shape)} do not fit latents {tuple(batch.latents.shape)}.")
    return b


def model_inputs(model, batch: Batch, swap: torch.Tensor | None = None):
    """(x_t, timestep, keyword inputs, target) of the diffusion model for ``batch``, on the
    model's device: x_t and the text in the model's dtype, the timestep float32, as
    BaseModel.apply_model feeds FLUX (its model sampling maps sigma to the timestep: FLUX takes
    sigma itself). ``swap``: checked swap indices (the rows' noise and sigma follow them)."""
    inner = model.model
    device = model.load_device
    dtype = getattr(inner, "manual_cast_dtype", None) or inner.get_dtype()
    x0 = batch.latents.to(device=device, dtype=torch.float32)
    noise = batch.noise.to(device=device, dtype=torch.float32)
    sigmas = batch.sigmas.to(device=device, dtype=torch.float32)
    if swap is not None:
        noise, sigmas = noise[swap], sigmas[swap]
    s = sigmas.view(-1, 1, 1, 1)
    x_t = (1.0 - s) * x0 + s * noise
    kwargs = {"context": batch.context.to(device=device, dtype=dtype), "y": batch.pooled.to(device=device, dtype=dtype)}
    if batch.guidance is not None:
        kwargs["guidance"] = batch.guidance.to(device=device, dtype=dtype)
    if batch.reference is not None:
        kwargs["ref_latents"] = [batch.reference.to(device=device, dtype=dtype)]
    return x_t.to(dtype), inner.model_sampling.timestep(sigmas).float(), kwargs, noise - x0


def predict(model, adapter: BokehAdapter, batch: Batch, gradient_checkpointing: bool = False, _target: list | None = None):
    """The diffusion model's output (B, C, H, W) for ``batch`` with ``adapter`` (``model``: a FLUX
    ModelPatcher from training.binding.bind_for_training). Differentiable in the adapter's
    parameters; the base model is frozen.

    A swapped row takes the swap row's noise and sigma (spec 1.5 steps 3-4) and, inside the
    grounded blocks, its queries; its K, its target and its bokeh token stay its own (1.10).
    """
    binding = training_binding(model, adapter)
    rows = _check(batch)
    ensure_loaded(model, binding)
    dm = model.model.diffusion_model
    swap = check_swap(batch.swap, rows, batch.swap_blocks, model.load_device)
    x_t, t, kwargs, target = model_inputs(model, batch, swap)
    if _target is not None:
        _target.append(target)
    biases = adapter.bokeh_biases(batch.k_inputs.to(device=model.load_device, dtype=torch.float32))
    to = {"optimized_attention_override": TrainAttention(binding, biases, swap, batch.swap_blocks)}
    if gradient_checkpointing:
        to["patches_replace"] = {"dit": checkpoint_patches(dm)}
    with training_mode():
        return dm(x_t, t, transformer_options=to, **kwargs)


def adapter_loss(model, adapter: BokehAdapter, batch: Batch, gradient_checkpointing: bool = False) -> torch.Tensor:
    """The float32 loss of ``batch``: mean over rows of the mean squared error between the
    prediction and ``noise - latents`` (spec 1.5 step 12; no weighting, no mask)."""
    target = []
    out = predict(model, adapter, batch, gradient_checkpointing, target)
    err = (out.float() - target[0]) ** 2
    return err.mean(dim=(1, 2, 3)).mean()
