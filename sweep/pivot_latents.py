"""The latent of a pivot batch (Bokeh Pivot Batch): one image latent repeated into [pivot,
target 1..N], every row with the same noise. Pure torch, no ComfyUI."""

from __future__ import annotations

import torch

from ..attention.errors import BokehInputError


def one_mask(mask) -> torch.Tensor:
    """The noise mask of the one input image, shared by every row: (H, W) as it is, or the first
    of (B, H, W) / (B, 1, H, W)."""
    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3, 4) or mask.numel() == 0:
        found = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise BokehInputError(f"The latent's noise mask is {found}; expected a mask (H, W), (B, H, W) or (B, 1, H, W).")
    return mask if mask.ndim == 2 or mask.shape[0] == 1 else mask[:1]


def pivot_latent(latent, rows: int) -> dict:
    """latent: a LATENT dict holding one image, samples (1, C, H, W); returns a new dict whose
    samples are that image repeated ``rows`` times (B = rows), every row with the input's
    batch_index (equal batch_index = equal noise, comfy.sample.prepare_noise) and the input's
    noise mask reduced to one image. Other keys are kept; the input is not changed."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4:
        found = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
        raise BokehInputError(
            f"The latent is {found}; Bokeh Pivot Batch needs one FLUX image latent (1, 16, height/8, width/8), "
            "e.g. from EmptySD3LatentImage or VAE Encode."
        )
    if samples.shape[0] != 1:
        raise BokehInputError(
            f"The latent holds {samples.shape[0]} images; Bokeh Pivot Batch needs exactly one (batch_size 1) "
            "and makes the batch itself."
        )
    out = {k: v for k, v in latent.items() if k not in ("samples", "batch_index", "noise_mask")}
    out["samples"] = samples.repeat(rows, *([1] * (samples.ndim - 1)))
    index = (latent.get("batch_index") or [0])[0]
    out["batch_index"] = [index] * rows
    mask = latent.get("noise_mask")
    if mask is not None:
        out["noise_mask"] = one_mask(mask)
    return out
