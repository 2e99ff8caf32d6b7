"""Writes the template browser's thumbnails (workflows/<name>.jpg): drawn illustrations of what each
workflow does, labelled as illustrations. They are never model output and do not pretend to be.

    python scripts/dev.py tools.make_thumbnails      # any Python with Pillow (the venv of scripts/setup.sh has it)
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

OUT = Path(__file__).resolve().parent.parent / "workflows"
SIZE = (512, 384)
INK, DIM, ACCENT = (235, 235, 240), (150, 150, 160), (250, 180, 60)


def font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def scene(w: int, h: int, blur: float, shift: int = 0, seed: int = 7) -> Image.Image:
    """A drawn scene: lights in the background (blurred by ``blur``) and a sharp flower in front."""
    rng = random.Random(seed)
    back = Image.new("RGB", (w, h), (28, 44, 58))
    d = ImageDraw.Draw(back)
    for _ in range(26):
        x, y, r = rng.randrange(w), rng.randrange(int(h * 0.7)), rng.randrange(2, 6)
        colour = rng.choice([(255, 210, 120), (255, 170, 90), (180, 220, 255), (255, 240, 200)])
        d.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    d.rectangle([0, int(h * 0.72), w, h], fill=(40, 70, 46))
    if blur > 0:
        back = back.filter(ImageFilter.GaussianBlur(blur))
    front = ImageDraw.Draw(back)
    cx, cy = w // 2 + shift, int(h * 0.55)
    front.line([(cx, cy), (cx, h)], fill=(60, 130, 70), width=3)
    for i in range(6):
        a = i * math.pi / 3
        px, py = cx + 11 * math.cos(a), cy + 11 * math.sin(a)
        front.ellipse([px - 8, py - 8, px + 8, py + 8], fill=(230, 90, 120))
    front.ellipse([cx - 6, cy - 6, cx + 6, cy + 6], fill=(250, 220, 90))
    return back


def sheet(title: str, caption: str, panels: list[tuple[str, float, int]], pivot: int | None = None) -> Image.Image:
    """Panels of (label, blur, horizontal shift of the subject) in a row under a title."""
    img = Image.new("RGB", SIZE, (18, 18, 22))
    d = ImageDraw.Draw(img)
    d.text((SIZE[0] // 2, 22), title, fill=INK, font=font(22), anchor="mm")
    n = len(panels)
    gap, top = 8, 60
    pw = (SIZE[0] - gap * (n + 1)) // n
    ph = min(220, int(pw * 1.5))
    for i, (label, blur, shift) in enumerate(panels):
        x = gap + i * (pw + gap)
        img.paste(scene(pw, ph, blur, shift), (x, top))
        colour = ACCENT if i == pivot else INK
        if i == pivot:
            d.rectangle([x - 3, top - 3, x + pw + 2, top + ph + 2], outline=ACCENT, width=3)
        d.text((x + pw // 2, top + ph + 16), label, fill=colour, font=font(15), anchor="mm")
    d.text((SIZE[0] // 2, SIZE[1] - 56), caption, fill=INK, font=font(15), anchor="mm")
    d.text((SIZE[0] // 2, SIZE[1] - 24), "illustration, not model output", fill=DIM, font=font(13), anchor="mm")
    return img


def single() -> Image.Image:
    img = Image.new("RGB", SIZE, (18, 18, 22))
    d = ImageDraw.Draw(img)
    d.text((SIZE[0] // 2, 22), "One image, one Blur Level", fill=INK, font=font(22), anchor="mm")
    img.paste(scene(300, 220, 5.0), (106, 48))
    x0, x1, y = 96, 416, 300
    d.line([(x0, y), (x1, y)], fill=DIM, width=4)
    knob = x0 + (x1 - x0) * 20 / 30
    d.ellipse([knob - 9, y - 9, knob + 9, y + 9], fill=ACCENT)
    d.text((x0, y + 18), "0 sharp", fill=INK, font=font(13), anchor="lm")
    d.text((x1, y + 18), "30 bokeh", fill=INK, font=font(13), anchor="rm")
    d.text((SIZE[0] // 2, SIZE[1] - 24), "illustration, not model output", fill=DIM, font=font(13), anchor="mm")
    return img


def photo_page(title: str, caption: str, blurs: list[tuple[str, float]]) -> Image.Image:
    """The user's photo (left, sharp) and the same photo with more background blur (right)."""
    img = Image.new("RGB", SIZE, (18, 18, 22))
    d = ImageDraw.Draw(img)
    d.text((SIZE[0] // 2, 22), title, fill=INK, font=font(22), anchor="mm")
    panels = [("your photo", 0.0)] + blurs
    n, gap, top = len(panels), 10, 60
    pw = (SIZE[0] - gap * (n + 1)) // n
    ph = min(220, int(pw * 1.4))
    for i, (label, blur) in enumerate(panels):
        x = gap + i * (pw + gap)
        img.paste(scene(pw, ph, blur, seed=11), (x, top))
        if i == 0:
            d.rectangle([x - 3, top - 3, x + pw + 2, top + ph + 2], outline=DIM, width=2)
        d.text((x + pw // 2, top + ph + 16), label, fill=ACCENT if i == 0 else INK, font=font(15), anchor="mm")
    d.text((SIZE[0] // 2, SIZE[1] - 56), caption, fill=INK, font=font(15), anchor="mm")
    d.text((SIZE[0] // 2, SIZE[1] - 24), "illustration, not model output", fill=DIM, font=font(13), anchor="mm")
    return img


def main():
    levels = [("K 0", 0.0), ("K 8", 1.5), ("K 15", 3.0), ("K 22", 4.5), ("K 28", 6.0)]
    grounded = [(label, blur, 0) for label, blur in levels]
    drifting = [(label, blur, shift) for (label, blur), shift in zip(levels, (-14, 9, -4, 16, -10))]
    pages = {
        "bokeh_single_image": single(),
        "bokeh_grounded_sweep": sheet("Grounded blur sweep", "one scene, blur from sharp to creamy (pivot K 15)", grounded, pivot=2),
        "bokeh_grounded_sweep_checkpoint": sheet("Grounded sweep, one checkpoint file", "as the grounded sweep, from a single-file FLUX checkpoint", grounded, pivot=2),
        "bokeh_grounded_sweep_distributed": sheet("Grounded sweep on several GPUs", "ComfyUI-Distributed: master and workers share the targets",
                                                  grounded, pivot=2),
        "bokeh_list_sweep": sheet("One run per blur level", "no grounding: the scene may drift between levels", drifting),
        "bokeh_photo": photo_page("Bokeh on your photo", "FLUX.1 Kontext + photo adapter: background blur K 10", [("K 10", 3.0)]),
        "bokeh_photo_stack": photo_page("Blur stack of your photo", "one image per K, the subject kept sharp",
                                        [("K 1", 0.3), ("K 11", 2.0), ("K 21", 4.0), ("K 30", 6.0)]),
        "bokeh_train": photo_page("Train your own bokeh adapter", "your photos + depth -> an adapter, then K 15 on a photo", [("K 15", 3.0)]),
        "bokeh_classical_render": photo_page("Classical bokeh from depth", "photo + depth map, no model: the "
                                             "training data's renderer", [("K 15", 3.0)]),
    }
    for name, img in pages.items():
        img.save(OUT / f"{name}.jpg", quality=85)
    print("wrote", ", ".join(f"{n}.jpg" for n in pages))


if __name__ == "__main__":
    main()
