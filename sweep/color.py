"""Colour transfer after decoding (spec section 4): Reinhard statistics matching in CIE Lab.

Pure torch + kornia, on the images' own device and dtype. Images are ComfyUI IMAGE tensors,
(B, H, W, 3) floats in 0..1.
"""

from __future__ import annotations

import kornia
import torch


def _lab(images: torch.Tensor) -> torch.Tensor:
    return kornia.color.rgb_to_lab(images.movedim(-1, 1).clamp(0.0, 1.0))


def match_lab(images: torch.Tensor, reference: torch.Tensor, match_std: bool = False) -> torch.Tensor:
    """Shift each image's whole-image Lab mean to the reference's (and, with ``match_std``,
    scale by std_ref / std_img, skipped where std_img < 1e-6); clip to 0..1.

    images: (B, H, W, 3); reference: (H', W', 3) or (1, H', W', 3). Returns (B, H, W, 3).
    """
    ref = _lab(reference.reshape(1, *reference.shape[-3:]).to(images))
    lab = _lab(images)
    mean_i = lab.mean(dim=(2, 3), keepdim=True)
    mean_r = ref.mean(dim=(2, 3), keepdim=True)
    if match_std:
        std_i = lab.std(dim=(2, 3), keepdim=True, unbiased=False)
        std_r = ref.std(dim=(2, 3), keepdim=True, unbiased=False)
        scale = torch.where(std_i < 1e-6, torch.ones_like(std_i), std_r / std_i.clamp_min(1e-6))
        lab = (lab - mean_i) * scale + mean_r
    else:
        lab = lab - mean_i + mean_r
    rgb = kornia.color.lab_to_rgb(lab, clip=True)
    return rgb.clamp(0.0, 1.0).movedim(1, -1).to(images.dtype)


def lab_means(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) -> (B, 3) whole-image Lab means."""
    return _lab(images).mean(dim=(2, 3))
