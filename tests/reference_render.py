"""An independent reference for the bokeh synthesis, written from shared/spec/bokeh-training.md
(sections 2.1, 2.3 and 3.3) in plain Python and numpy, float64. It calls none of the pack's code:
a match is evidence, not a tautology."""

from __future__ import annotations

import math

import numpy as np


def scatter_loop(image, radius):
    """The kernel of spec 2.3, transcribed literally: every source pixel q scatters over its square
    window. image: (C, H, W) array, already gamma-encoded; radius: (H, W) signed, in pixels.
    Returns (bokeh (C, H, W), dilated (H, W)), float64."""
    image = np.asarray(image, dtype=np.float64)
    radius = np.asarray(radius, dtype=np.float64)
    c, h, w = image.shape
    weights = np.zeros((h, w))
    sums = np.zeros((c, h, w))
    dilated = np.array([[float(int(radius[y, x])) for x in range(w)] for y in range(h)])  # C int()
    for qy in range(h):
        for qx in range(w):
            d = radius[qy, qx]
            r = abs(d)
            n = math.floor(r) + 1
            for dy in range(-n, n + 1):
                for dx in range(-n, n + 1):
                    py, px = qy + dy, qx + dx
                    if not (0 <= py < h and 0 <= px < w):
                        continue
                    dist = math.sqrt(dy * dy + dx * dx)
                    wt = (0.5 + 0.5 * math.tanh(4.0 * (r - dist))) / (r * r + 0.2)
                    weights[py, px] += wt
                    for ch in range(c):
                        sums[ch, py, px] += wt * image[ch, qy, qx]
                    if r >= dist:
                        dilated[py, px] = max(dilated[py, px], float(int(d)))
    return sums / weights, dilated


def defocus_np(depth, mask, k, defocus_scale=10.0, flat_range=10.0):
    """Spec 2.1 steps 1-3 for one image with numpy. depth: (H, W); mask: (H, W) uint8 or None.
    Returns (defocus (H, W), disp_focus, flat)."""
    depth = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 1e-6)
    disp = np.full(depth.shape, 0.5)
    if valid.any():
        inv = 1.0 / depth[valid]
        if inv.max() - inv.min() >= 1e-8:
            norm = (inv - inv.min()) / (inv.max() - inv.min() + 1e-8)
            disp[:] = np.median(norm)
            disp[valid] = norm
    fg = np.zeros(depth.shape, bool) if mask is None else (np.asarray(mask) > 127) & valid
    flat = False
    if not fg.any():
        focus = np.median(disp)
    else:
        d96 = np.percentile(depth[fg], 96)
        near = (depth <= d96) & fg
        if not near.any():
            focus = np.median(disp)
        else:
            dc = disp[near]
            upper = dc[dc > np.median(dc)]
            focus = np.median(upper) if upper.size else np.median(dc)
            if depth[near].max() - depth[near].min() <= flat_range:
                inv_fg = 1.0 / depth[fg]
                focus = np.clip((1.0 / d96 - inv_fg.min()) / (inv_fg.max() - inv_fg.min() + 1e-8), 0.0, 1.0)
                disp[near] = focus
                flat = True
    defocus = k * (disp - focus) / defocus_scale
    defocus[~np.isfinite(defocus)] = 0.0
    return defocus, float(focus), flat


def k_exif(n, fmm, f35mm, s1, width, height):
    """K of spec 3.3: the circle-of-confusion radius in pixels of the image width per 1/m of
    disparity. Returns (K, sensor width in mm)."""
    f = fmm / 1000.0
    coc_mm = abs(f * f * s1 / (2.0 * n * (s1 - f))) * 1000.0
    sensor_mm = (fmm / f35mm) * 43.27 / math.sqrt(1.0 + (height / width) ** 2)
    return coc_mm * width / sensor_mm, sensor_mm
