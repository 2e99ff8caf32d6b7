"""What the headless runner writes, in both modes (in process, --servers): one new folder per run,
file names that say which K each image holds, and the --check notice on the report and the plot."""

from __future__ import annotations

import re
import time
from pathlib import Path

from .args import DEFAULT_OUTPUT

CHECK_NOTE = ("--check: these images are noise from TINY RANDOM models, so the blur verdict above means nothing; "
              "this run only proves that ComfyUI, the pack and the graph work on this machine.")
REPORT = "blur_meter.txt"
PLOT = "blur_plot.png"


def run_folder(output: str | None) -> Path:
    """The folder of this run (not made yet): --output as given (checked empty or new), or a new
    ``output/bokeh_sweep/<date>_<time>`` folder."""
    if output is not None:
        return Path(output).expanduser().resolve()
    base = (DEFAULT_OUTPUT / time.strftime("%Y-%m-%d_%H%M%S")).resolve()
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}_{n}")
    return folder


def image_name(prefix: str, row: int, k: float, pivot: bool = False) -> str:
    """'sweep_00_k15_pivot.png', 'sweep_01_k0.png', 'photo_stack_03_k12.5.png': the row first (so
    the names sort in the sweep's order), then its K."""
    return f"{prefix}_{row:02}_k{k:g}{'_pivot' if pivot else ''}.png"


def write_sweep(out_dir: Path, images, ks: list[float], pivot_row: int | None, prefixes: dict, columns: int = 0,
                note: str = "", prompts: list | None = None) -> tuple[list[str], str]:
    """The one writer of a finished run's folder, in process and over servers: per row
    <sweep>_NN_k<K>[_pivot].png (the graph that rendered it as the PNG's "prompt" text, as
    ComfyUI's SaveImage writes it), <sheet>.png, blur_meter.txt (``note`` last) and blur_plot.png,
    the sheet, report and plot made by sweep.outputs.sweep_outputs as the nodes make them.
    ``images``: (rows, H, W, 3), a float tensor in 0..1 (in process: measured as the nodes measure
    it) or uint8 (the servers' PNGs); ``prefixes``: "sweep" / "sheet" -> file name prefix.
    Returns (the names written, in order; the report)."""
    import json

    import numpy as np
    import torch
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from ..sweep.outputs import sweep_outputs

    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images).float() / 255.0
    outputs = sweep_outputs(images, ks, pivot_row, columns)
    report = outputs.report + (f"\n\n{note}" if note else "")
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for i, (image, k) in enumerate(zip(images, ks)):
        info = PngInfo()
        if prompts:
            info.add_text("prompt", json.dumps(prompts[min(i, len(prompts) - 1)]))
        names.append(image_name(prefixes["sweep"], i, k, i == pivot_row))
        Image.fromarray(_uint8(image)).save(out_dir / names[-1], pnginfo=info)
    names.append(f"{prefixes['sheet']}.png")
    Image.fromarray(_uint8(outputs.sheet[0])).save(out_dir / names[-1])
    plot = _uint8(outputs.plot[0])
    Image.fromarray(stamp_check(plot) if note else plot).save(out_dir / PLOT)
    (out_dir / REPORT).write_text(report + "\n")
    return names + [PLOT, REPORT], report


def _uint8(image):
    """An image (H, W, 3) in 0..1 -> uint8, quantised as ComfyUI's SaveImage does (x 255, clipped, truncated)."""
    import numpy as np

    return np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8)


def stamp_check(plot):
    """The --check notice across the top of a plot ((H, W, 3) uint8 array) -> a new array."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(plot)
    draw = ImageDraw.Draw(img)
    top = img.height * 3 // 4 - 24  # inside the plot area, below the title and the verdict
    draw.rectangle([img.width // 8, top, img.width * 7 // 8, top + 48], fill=(120, 20, 20))
    try:
        font = ImageFont.load_default(size=15)
    except TypeError:  # Pillow < 10.1: one fixed-size default font
        font = ImageFont.load_default()
    draw.text((img.width / 2, top + 6), "--check: TINY RANDOM MODELS, the images are noise", fill=(255, 255, 255), font=font, anchor="ma")
    draw.text((img.width / 2, top + 26), "the verdict above means nothing", fill=(255, 255, 255), font=font, anchor="ma")
    return np.asarray(img)


def what_was_written(out_dir: Path) -> tuple[list[str], list[str]]:
    """(files in the run's folder, what a whole run writes that is not there) after a stop."""
    written = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    missing = [f for f in (REPORT, PLOT) if f not in written]
    if not any("sheet" in f for f in written):
        missing.insert(0, "the contact sheet")
    if not any(f.endswith(".png") and "sheet" not in f and f != PLOT for f in written):
        missing.insert(0, "the images")
    return written, missing
