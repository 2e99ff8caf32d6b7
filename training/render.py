"""The classical BokehMe renderer (shared/spec/bokeh-training.md section 2.3) and the classical
half of the synthesis pipeline (section 2.2, steps 1-2). Pure torch, no ComfyUI import.

The authors' kernel scatters every source pixel over a square window with float atomics (CUDA
only). Here the same sums are formed as a gather over offsets: for each offset every source adds
its weight into a padded accumulator shifted by that offset. No atomics, any device, the input's
dtype; the order of the additions per target pixel is fixed, so results are deterministic.
"""

from __future__ import annotations

import math

import torch

from ..attention.errors import BokehInputError

GAMMA = 2.2  # BokehDepth fixes gamma (spec 2.1); BokehMe's demo uses 4
GAMMA_RANGE = (1.0, 5.0)  # BokehMe's gamma_min / gamma_max (spec 2.1)
DEFOCUS_SCALE = 10.0  # the defocus map is radius / 10 (spec 2.1 step 3, 2.2 step 2)


def window_radius(radius: torch.Tensor) -> int:
    """R = max_q (floor(|d_q|) + 1): the half side of the largest square window (spec 2.3).
    The renderer makes (2R + 1)^2 passes over the image."""
    if radius.numel() == 0:
        return 0
    return int(torch.floor(radius.detach().abs().max()).item()) + 1


def scatter(image: torch.Tensor, radius: torch.Tensor, progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The classical scatter renderer, exact (spec 2.3).

    image: (B, C, H, W), already gamma-encoded (``gamma_encode``), any float dtype and device.
    radius: (B, 1, H, W) or (B, H, W), the signed blur radius d_q in pixels (positive = nearer than
        the focus plane); cast to the image's dtype and device.
    Returns (bokeh, dilated):
        bokeh (B, C, H, W) = S / W with, for each source q and each offset delta in the square
            window max(|dy|, |dx|) <= floor(|d_q|) + 1 whose target p = q + delta is inside,
            w = (0.5 + 0.5 tanh(4 (|d_q| - |delta|))) / (|d_q|^2 + 0.2), W[p] += w, S[p] += w I[q];
        dilated (B, 1, H, W): trunc(d) at p, raised to trunc(d_q) of every source q whose disc
            (|d_q| >= |delta|) covers p; integer-valued, in the image's dtype.
    progress: optional callable(done, total) after each row of offsets (a progress bar, or a
        check that raises to stop the run).
    """
    if image.ndim != 4:
        raise BokehInputError(f"The renderer's image is {tuple(image.shape)}; expected (B, C, H, W).")
    b, c, h, w = image.shape
    d = radius.to(device=image.device, dtype=image.dtype)
    if d.ndim == 3:
        d = d.unsqueeze(1)
    if d.shape != (b, 1, h, w):
        raise BokehInputError(f"The blur radius map is {tuple(radius.shape)}; expected ({b}, 1, {h}, {w}) to match the image.")
    if not bool(torch.isfinite(d).all()):
        raise BokehInputError("The blur radius map contains NaN or infinite values; expected finite radii in pixels.")
    r = d.abs()
    n = torch.floor(r) + 1  # the window half side per source
    big = window_radius(d)
    denom = r * r + 0.2
    # Channel c of the accumulator holds W, the others S; padded by R so no target falls outside.
    src = torch.cat((image, torch.ones_like(d)), dim=1)
    acc = image.new_zeros((b, c + 1, h + 2 * big, w + 2 * big))
    trunc = torch.trunc(d.detach())  # C int(): toward zero
    r_fixed = r.detach()
    dil = torch.full((b, 1, h + 2 * big, w + 2 * big), -math.inf, dtype=image.dtype, device=image.device)
    for dy in range(-big, big + 1):
        for dx in range(-big, big + 1):
            dist = math.sqrt(dy * dy + dx * dx)
            active = n >= max(abs(dy), abs(dx))
            weight = torch.where(active, (0.5 + 0.5 * torch.tanh(4.0 * (r - dist))) / denom, 0.0)
            ys, xs = big + dy, big + dx
            acc[:, :, ys : ys + h, xs : xs + w] += weight * src
            covered = r_fixed >= dist  # implies active: n = floor(r) + 1 > r >= dist >= max(|dy|, |dx|)
            view = dil[:, :, ys : ys + h, xs : xs + w]
            view.copy_(torch.maximum(view, torch.where(covered, trunc, -math.inf)))
        if progress is not None:
            progress(dy + big + 1, 2 * big + 1)
    acc = acc[:, :, big : big + h, big : big + w]
    dilated = torch.maximum(trunc, dil[:, :, big : big + h, big : big + w])
    # W > 0 everywhere: every pixel scatters onto itself with w >= 0.5 / (r^2 + 0.2).
    return acc[:, :c] / acc[:, c:], dilated


def gamma_encode(image: torch.Tensor, gamma: float = GAMMA) -> torch.Tensor:
    """Linear-light proxy I^gamma of an image in [0, 1] (spec 2.2 step 2), any shape."""
    return image**gamma


def gamma_decode(image: torch.Tensor, gamma: float = GAMMA) -> torch.Tensor:
    """The inverse of ``gamma_encode``: I^(1/gamma)."""
    return image ** (1.0 / gamma)


def classical_render(image: torch.Tensor, defocus: torch.Tensor, gamma: float = GAMMA,
                     defocus_scale: float = DEFOCUS_SCALE, progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The classical bokeh Bc of spec 2.2 steps 1-2 (the "classical-only synthesis").

    image: (B, 3, H, W) in [0, 1]; defocus: (B, 1, H, W), the defocus map D (radius / defocus_scale,
    as ``defocus_map`` returns it). NaN in D counts as 0 (step 1). progress: as ``scatter``.
    Returns (bokeh (B, 3, H, W) in [0, 1], dilated defocus (B, 1, H, W) = Ddil / defocus_scale).
    """
    d = torch.nan_to_num(defocus.to(device=image.device, dtype=image.dtype), nan=0.0)
    bokeh, dilated = scatter(gamma_encode(image, gamma), defocus_scale * d, progress)
    return gamma_decode(bokeh, gamma), dilated / defocus_scale


def render_bokeh(image: torch.Tensor, depth: torch.Tensor, mask: torch.Tensor | None, k, gamma: float = GAMMA,
                 **focus) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth-based classical bokeh, the authors' ``add_bokeh`` without the neural half (spec 2.1 + 2.2).

    image: (B, 3, H, W) in [0, 1]; depth: (B, 1, H, W) metric depth (larger = farther);
    mask: (B, 1, H, W) foreground in [0, 1] or None; k: the blur K (a number or (B,) values).
    ``focus``: options of ``defocus.defocus_map`` (defocus_scale, flat_range, flat_focus).
    Returns (bokeh (B, 3, H, W) in [0, 1], defocus map (B, 1, H, W), radius / defocus_scale).
    """
    from .defocus import defocus_map

    defocus = defocus_map(depth, mask, k, **focus).defocus
    bokeh, _ = classical_render(image, defocus, gamma, focus.get("defocus_scale", DEFOCUS_SCALE))
    return bokeh, defocus
