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


def name_by_k(out_dir: Path, prompt: dict, ks: list[float], pivot_row: int | None) -> list[str]:
    """Rename what the SaveImage nodes of ``prompt`` wrote into ``out_dir`` (ComfyUI's
    <prefix>_00001_.png, ...): the images as image_name() with their K, the contact sheet as
    <prefix>.png. Returns every file name of the run's images, in order."""
    names, sheets = [], []
    for node in prompt.values():
        if node["class_type"] != "SaveImage":
            continue
        prefix = str(node["inputs"]["filename_prefix"])
        source = node["inputs"].get("images", [None])[0]
        saved = sorted(p for p in out_dir.iterdir() if re.fullmatch(re.escape(prefix) + r"_\d{5,}_\.png", p.name))
        if prompt.get(source, {}).get("class_type") == "BokehContactSheet" and len(saved) == 1:
            new = [f"{prefix}.png"]
        elif len(saved) == len(ks):
            new = [image_name(prefix, i, k, i == pivot_row) for i, k in enumerate(ks)]
        else:  # not one image per K: keep ComfyUI's names
            new = [p.name for p in saved]
        for old, name in zip(saved, new):
            old.rename(out_dir / name)
        (sheets if len(new) == 1 and len(ks) > 1 else names).extend(new)
    return names + sheets


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
