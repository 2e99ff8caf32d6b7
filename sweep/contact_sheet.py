"""Contact sheet: an IMAGE batch laid out in a grid with a label strip under each cell."""

from __future__ import annotations

import math

import numpy as np
import torch


def auto_columns(count: int, h: int, w: int) -> int:
    """Columns for ``count`` cells of h x w: near a square sheet (sqrt(count * h / w)), one more or
    one fewer when that leaves fewer empty cells in the last row (7 cells: 4 + 3, not 3 + 3 + 1);
    on a tie, the wider sheet (screens are wide)."""
    ideal = min(count, max(1, math.ceil(math.sqrt(count * h / w))))
    options = range(max(1, ideal - 1), min(count, ideal + 1) + 1)
    return min(options, key=lambda c: (math.ceil(count / c) * c - count, abs(c - ideal), -c))


def contact_sheet(images: torch.Tensor, labels: list[str], columns: int = 0, strip: int = 0) -> torch.Tensor:
    """images: (B, H, W, 3) -> (1, rows*(H+strip), cols*W, 3), each label drawn under its cell."""
    from PIL import Image, ImageDraw, ImageFont  # Pillow comes with ComfyUI

    b, h, w, c = images.shape
    cols = columns if columns > 0 else auto_columns(b, h, w)
    rows = math.ceil(b / cols)
    strip = strip or max(14, h // 12)
    try:
        font = ImageFont.load_default(size=max(10, int(strip * 0.7)))
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    sheet = Image.new("RGB", (cols * w, rows * (h + strip)), (16, 16, 16))
    draw = ImageDraw.Draw(sheet)
    pixels = (images.detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    for i in range(b):
        x, y = (i % cols) * w, (i // cols) * (h + strip)
        sheet.paste(Image.fromarray(pixels[i][..., :3]), (x, y))
        draw.text((x + 4, y + h + max(1, strip // 8)), labels[i] if i < len(labels) else f"#{i}", fill=(235, 235, 235), font=font)
    out = torch.from_numpy(np.asarray(sheet, dtype=np.float32) / 255.0)
    return out.unsqueeze(0).to(images.device)
