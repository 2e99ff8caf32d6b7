"""From a depth map and a foreground mask to the signed defocus map (shared/spec/bokeh-training.md
section 2.1: disparity, focus rule, flat-foreground override). Pure torch, no ComfyUI import.

Medians and percentiles are numpy's (the authors' code is numpy): the median of an even count is
the mean of the two middle values, the percentile interpolates linearly between order statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..attention.errors import BokehInputError
from .render import DEFOCUS_SCALE

FLAT_RANGE = 10.0  # depth units (metres in the authors' data): a foreground this shallow is all in focus
FOCUS_PERCENTILE = 96.0  # the nearer 96 % of the foreground decides the focus
MASK_THRESHOLD = 0.5  # a [0, 1] mask above 0.5 = the authors' uint8 mask > 127
AUTHORS = "authors"  # flat foreground: 1/d96 normalised over the foreground's inverse depth (spec 2.1)
IMAGE = "image"  # deviation: 1/d96 normalised over the whole image, the scale of the disparity map


@dataclass
class Defocus:
    defocus: torch.Tensor  # (B, 1, H, W): K (disp - disp_focus) / defocus_scale, NaN/inf -> 0
    disparity: torch.Tensor  # (B, 1, H, W): normalised disparity after the override, 1 = nearest
    focus: torch.Tensor  # (B,): disp_focus
    flat: torch.Tensor  # (B,) bool: the flat-foreground override applied


def median(values: torch.Tensor) -> torch.Tensor:
    """numpy.median of a 1-D tensor (mean of the two middle values for an even count)."""
    v = torch.sort(values.flatten()).values
    n = v.numel()
    if n % 2:
        return v[n // 2]
    return (v[n // 2 - 1] + v[n // 2]) / 2


def percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """numpy.percentile(values, q) with the default linear method, for a 1-D tensor."""
    v = torch.sort(values.flatten()).values
    pos = (v.numel() - 1) * (q / 100.0)
    lo = math.floor(pos)
    hi = min(lo + 1, v.numel() - 1)
    t = pos - lo
    a, b = v[lo], v[hi]
    # numpy's _lerp: from the nearer end, so t = 0 and t = 1 give the order statistics exactly
    return a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t)


def disparity(depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Spec 2.1 step 1, one image. depth: (H, W) metric depth. Returns (disp (H, W), valid (H, W)):
    min-max normalised inverse depth over the valid pixels (finite, > 1e-6), 1 = nearest; invalid
    pixels take the median valid disparity; 0.5 everywhere when nothing is valid or the inverse
    depth has no range."""
    valid = torch.isfinite(depth) & (depth > 1e-6)
    disp = torch.full_like(depth, 0.5)
    if not bool(valid.any()):
        return disp, valid
    inv = 1.0 / depth[valid]
    low, high = inv.min(), inv.max()
    if float(high - low) < 1e-8:
        return disp, valid
    norm = (inv - low) / (high - low + 1e-8)
    disp = torch.full_like(depth, float(median(norm)))
    disp[valid] = norm
    return disp, valid


def focus_disparity(disp: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor | None,
                    flat_range: float | None = FLAT_RANGE, flat_focus: str = AUTHORS):
    """Spec 2.1 step 2, one image. disp, depth, valid: (H, W) from ``disparity``; mask: (H, W) in
    [0, 1] or None (= empty). flat_range: the override applies when the near foreground's depth
    range is <= this (None: never; math.inf: always). flat_focus: AUTHORS (the spec) or IMAGE.
    Returns (disp after the override, disp_focus (0-d tensor), flat: bool)."""
    if flat_focus not in (AUTHORS, IMAGE):
        raise BokehInputError(f"flat_focus is {flat_focus!r}; expected {AUTHORS!r} or {IMAGE!r}.")
    fg = (mask > MASK_THRESHOLD) & valid if mask is not None else None
    if fg is None or not bool(fg.any()):  # no foreground: focus on the median disparity
        return disp, median(disp), False
    d96 = percentile(depth[fg], FOCUS_PERCENTILE)
    near = (depth <= d96) & fg
    if not bool(near.any()):
        return disp, median(disp), False
    dc = disp[near]
    mid = median(dc)
    upper = dc[dc > mid]
    focus = median(upper) if upper.numel() else mid
    span = depth[near].max() - depth[near].min()
    if flat_range is None or not float(span) <= flat_range:
        return disp, focus, False
    inv = 1.0 / (depth[fg] if flat_focus == AUTHORS else depth[valid])
    if flat_focus == IMAGE and float(inv.max() - inv.min()) < 1e-8:
        focus = disp.new_tensor(0.5)  # the disparity map is flat (0.5) too
    else:
        focus = ((1.0 / d96 - inv.min()) / (inv.max() - inv.min() + 1e-8)).clamp(0.0, 1.0)
    disp = disp.clone()
    disp[near] = focus
    return disp, focus, True


MIN_MAP_VALUE = 1.0 / 1024  # a depth-map pixel at 0 is read as this: finite, far (near-bright) or near


def depth_from_map(values: torch.Tensor, near_is_bright: bool) -> torch.Tensor:
    """A relative depth (larger = farther) from a depth map image with values in [0, 1]: depth
    estimators' maps are bright where near (disparity-like), so their inverse is a depth; a map
    bright where far is a depth already. Any shape; 0 is read as MIN_MAP_VALUE so it stays valid."""
    v = values.clamp(min=MIN_MAP_VALUE)
    return 1.0 / v if near_is_bright else v


def _per_image(t: torch.Tensor | None, b: int, h: int, w: int, what: str) -> torch.Tensor | None:
    if t is None:
        return None
    t = t.reshape(t.shape[0], h, w) if t.ndim == 4 and t.shape[1] == 1 else t
    if t.ndim == 2:
        t = t.unsqueeze(0)
    if t.ndim != 3 or t.shape[1:] != (h, w) or t.shape[0] not in (1, b):
        raise BokehInputError(f"The {what} is {tuple(t.shape)}; expected ({b}, 1, {h}, {w}) or (1, {h}, {w}).")
    return t.expand(b, h, w)


def defocus_map(depth: torch.Tensor, mask: torch.Tensor | None, k, defocus_scale: float = DEFOCUS_SCALE,
                flat_range: float | None = FLAT_RANGE, flat_focus: str = AUTHORS, focus: float | None = None) -> Defocus:
    """The signed defocus map of spec 2.1 (steps 1-3), per image.

    depth: (B, 1, H, W) or (B, H, W) metric depth, larger = farther (NaN, inf, <= 1e-6: invalid).
    mask: foreground in [0, 1], same layout (batch 1 broadcasts), or None (no foreground).
    k: the blur K, a number or B values. The blur radius in pixels is K (disp - disp_focus),
    positive for pixels nearer than the focus plane; ``defocus`` holds it / defocus_scale.
    focus: a fixed disp_focus (0 = farthest, 1 = nearest) in place of the focus rule (not the
    spec's: for the render node's manual focus); the mask is then unused.
    """
    if depth.ndim == 4 and depth.shape[1] == 1:
        depth = depth[:, 0]
    if depth.ndim != 3:
        raise BokehInputError(f"The depth map is {tuple(depth.shape)}; expected (B, 1, H, W) or (B, H, W).")
    b, h, w = depth.shape
    mask = _per_image(mask, b, h, w, "foreground mask")
    ks = torch.as_tensor(k, dtype=depth.dtype, device=depth.device).flatten()
    if ks.numel() not in (1, b) or not bool(torch.isfinite(ks).all()):
        raise BokehInputError(f"K is {k!r}; expected one finite number or one per image ({b}).")
    ks = ks.expand(b)
    out_disp, focus_at, flat = torch.empty_like(depth), depth.new_zeros(b), torch.zeros(b, dtype=torch.bool)
    for i in range(b):
        disp, valid = disparity(depth[i])
        if focus is None:
            disp, focus_at[i], flat[i] = focus_disparity(disp, depth[i], valid, None if mask is None else mask[i],
                                                         flat_range, flat_focus)
        else:
            focus_at[i] = focus
        out_disp[i] = disp
    defocus = ks[:, None, None] * (out_disp - focus_at[:, None, None]) / defocus_scale
    defocus = torch.where(torch.isfinite(defocus), defocus, 0.0)
    return Defocus(defocus.unsqueeze(1), out_disp.unsqueeze(1), focus_at, flat)
