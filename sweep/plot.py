"""A picture of how blur follows K: sharpness against blur level, the pivot marked, the verdict in
the title; and the training loss curve (Train Bokeh Adapter's plot) on the same axes helpers.
Drawn with Pillow (which ComfyUI ships), returned as an IMAGE tensor."""

from __future__ import annotations

import math

import numpy as np
import torch

WIDTH, HEIGHT = 720, 440
MARGIN = dict(left=70, right=24, top=74, bottom=56)
BACK, AXES, GRID, LINE, POINT, PIVOT, TEXT = (22, 22, 26), (150, 150, 160), (48, 48, 56), (90, 150, 230), (120, 180, 255), (250, 180, 60), (230, 230, 235)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed-size default font
        return ImageFont.load_default()


def _ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Round tick values covering low..high."""
    if high <= low:
        return [low]
    raw = (high - low) / max(1, count - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(low / step) * step
    return [start + i * step for i in range(int(math.ceil((high - start) / step)) + 1)]


def _label(value: float, step: float) -> str:
    """A tick label with as many decimals as the tick step needs (0.0025 -> 4), so neighbouring
    ticks never read the same."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    decimals += 1 if step > 0 and round(step / 10 ** math.floor(math.log10(step)), 6) == 2.5 else 0
    return f"{value:.{decimals}f}"


def sweep_plot(ks: list[float], sharpness: list[float], pivot: int | None, title: str, subtitle: str,
               min_span: float = 0.0) -> torch.Tensor:
    """ks, sharpness: one value per image; pivot: index of the pivot image (or None). The y-axis
    spans at least ``min_span`` (the meter's noise level x 5), so differences within measurement
    noise show as the small wiggles they are. Returns (1, HEIGHT, WIDTH, 3) floats in 0..1."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (WIDTH, HEIGHT), BACK)
    draw = ImageDraw.Draw(img)
    x0, x1 = MARGIN["left"], WIDTH - MARGIN["right"]
    y0, y1 = MARGIN["top"], HEIGHT - MARGIN["bottom"]
    kx = _ticks(min(ks), max(ks)) if ks else [0.0]
    low, high = (min(sharpness), max(sharpness)) if sharpness else (0.0, 0.0)
    if high - low < min_span:
        middle = (low + high) / 2
        low, high = middle - min_span / 2, middle + min_span / 2
    sy = _ticks(low, high) if sharpness else [0.0]
    klo, khi = kx[0], max(kx[-1], kx[0] + 1e-6)
    slo, shi = sy[0], max(sy[-1], sy[0] + 1e-6)

    def px(k, s):
        return x0 + (k - klo) / (khi - klo) * (x1 - x0), y1 - (s - slo) / (shi - slo) * (y1 - y0)

    small, big = _font(13), _font(17)
    for k in kx:
        x, _ = px(k, slo)
        draw.line([(x, y0), (x, y1)], fill=GRID)
        draw.text((x, y1 + 6), f"{k:g}", fill=TEXT, font=small, anchor="ma")
    for s in sy:
        _, y = px(klo, s)
        draw.line([(x0, y), (x1, y)], fill=GRID)
        draw.text((x0 - 8, y), _label(s, sy[1] - sy[0] if len(sy) > 1 else 0.0), fill=TEXT, font=small, anchor="rm")
    draw.rectangle([x0, y0, x1, y1], outline=AXES)
    draw.text(((x0 + x1) / 2, HEIGHT - 20), "blur level K", fill=TEXT, font=small, anchor="mm")
    draw.text((x0, y0 - 4), "sharpness (higher = sharper)", fill=AXES, font=small, anchor="ld")
    draw.text((WIDTH / 2, 14), title, fill=TEXT, font=big, anchor="ma")
    draw.text((WIDTH / 2, 38), subtitle, fill=TEXT, font=small, anchor="ma")

    order = sorted(range(len(ks)), key=lambda i: ks[i])
    points = [px(ks[i], sharpness[i]) for i in order]
    if len(points) > 1:
        draw.line(points, fill=LINE, width=2)
    for i in order:
        x, y = px(ks[i], sharpness[i])
        if i == pivot:
            draw.ellipse([x - 8, y - 8, x + 8, y + 8], outline=PIVOT, width=3)
            draw.text((x, y - 12), "pivot", fill=PIVOT, font=small, anchor="md")
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=POINT)
    pixels = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).unsqueeze(0)


def loss_plot(losses: list[float], title: str) -> torch.Tensor:
    """Loss per step (thin) and its running mean over 5 % of the steps (thick): (1, H, W, 3)."""
    from PIL import Image, ImageDraw

    w, h, left, right, top, bottom = 720, 400, 70, 24, 50, 50
    img = Image.new("RGB", (w, h), (22, 22, 26))
    draw = ImageDraw.Draw(img)
    finite = [v for v in losses if np.isfinite(v)] or [0.0]
    ys = _ticks(min(finite), max(finite))
    lo, hi = ys[0], max(ys[-1], ys[0] + 1e-6)
    n = max(2, len(losses))
    xs = _ticks(1, n)

    def px(step, value):
        return left + (step - 1) / (n - 1) * (w - left - right), h - bottom - (value - lo) / (hi - lo) * (h - top - bottom)

    small = _font(13)
    for y in ys:
        _, py = px(1, y)
        draw.line([(left, py), (w - right, py)], fill=(48, 48, 56))
        draw.text((left - 8, py), _label(y, ys[1] - ys[0] if len(ys) > 1 else 0.0), fill=(230, 230, 235), font=small, anchor="rm")
    for x in xs:
        qx, _ = px(x, lo)
        draw.text((qx, h - bottom + 6), f"{x:g}", fill=(230, 230, 235), font=small, anchor="ma")
    draw.rectangle([left, top, w - right, h - bottom], outline=(150, 150, 160))
    draw.text((w / 2, 16), title, fill=(230, 230, 235), font=_font(17), anchor="ma")
    draw.text(((left + w - right) / 2, h - 18), "step", fill=(230, 230, 235), font=small, anchor="mm")
    if len(losses) > 1:
        draw.line([px(i + 1, v) for i, v in enumerate(losses)], fill=(70, 100, 150), width=1)
        k = max(1, len(losses) // 20)
        mean = np.convolve(np.asarray(losses, dtype=np.float64), np.ones(k) / k, mode="valid")
        draw.line([px(i + k, v) for i, v in enumerate(mean)], fill=(120, 180, 255), width=3)
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).unsqueeze(0)
