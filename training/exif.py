"""K from a photo's EXIF (shared/spec/bokeh-training.md section 3.3, the authors' calc_dof_cond).

K is the thin-lens circle-of-confusion radius in pixels of the image width per 1/m of disparity
difference. EXIF is read with Pillow; the caller decides which file (a dataset folder listed from
ComfyUI's folders, never a path a client typed).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from ..attention.errors import BokehInputError

FULL_FRAME_DIAGONAL_MM = 43.27  # 36 x 24 mm
# EXIF tag ids (Exif IFD 0x8769): the Pillow names are not stable across versions, the ids are.
EXIF_IFD = 0x8769
F_NUMBER, FOCAL_LENGTH, FOCAL_35MM, SUBJECT_DISTANCE = 0x829D, 0x920A, 0xA405, 0x9206


@dataclass(frozen=True)
class Lens:
    """What K needs: f-number N, focal length (mm), its 35-mm equivalent (mm), focus distance s1 (m;
    None when the file does not say), and the image's pixel width and height."""

    f_number: float
    focal_mm: float
    focal_35mm: float
    focus_m: float | None
    width: int
    height: int


def sensor_width_mm(focal_mm: float, focal_35mm: float, width: float, height: float) -> float:
    """The full-frame diagonal scaled by the crop factor, projected on the width with the image's
    aspect (36.0 mm for 3:2 full frame, 37.7 mm for 16:9)."""
    return (focal_mm / focal_35mm) * FULL_FRAME_DIAGONAL_MM / math.sqrt(1.0 + (height / width) ** 2)


def k_from_exif(f_number: float, focal_mm: float, focal_35mm: float | None, focus_m: float, width: int, height: int,
                name: str = "photo") -> float:
    """K = |f^2 s1 / (2 N (s1 - f))| (mm on the sensor) * width_px / sensor width (mm), f = focal_mm / 1000.
    ``focal_35mm`` None or 0 means "same as focal_mm" (the spec's default); ``name`` is for errors."""
    focal_35mm = focal_35mm or focal_mm
    values = {"f-number": f_number, "focal length": focal_mm, "35-mm focal length": focal_35mm,
              "focus distance": focus_m, "width": width, "height": height}
    for what, v in values.items():
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise BokehInputError(f"{name}: the {what} is {v!r}; expected a positive number. Fix the EXIF value or "
                                  f"give K (dof_cond) directly.")
    f = focal_mm / 1000.0
    if abs(focus_m - f) < 1e-9:
        raise BokehInputError(f"{name}: the focus distance {focus_m:g} m equals the focal length; the thin-lens "
                              f"blur is undefined there. Give a focus distance beyond the lens, or K directly.")
    coc_mm = abs(f * f * focus_m / (2.0 * f_number * (focus_m - f))) * 1000.0
    return coc_mm * width / sensor_width_mm(focal_mm, focal_35mm, width, height)


def parse_number(value) -> float | None:
    """A number from an EXIF value: a Pillow rational, a number, or a Flickr-style string such as
    "50 mm", "f/2.8", "1/2" or "2.5 m". None when there is none."""
    if value is None:
        return None
    if isinstance(value, (int, float)) or hasattr(value, "numerator"):
        try:
            v = float(value)
        except (ZeroDivisionError, ValueError, TypeError):
            return None
        return v if math.isfinite(v) else None
    text = str(value).strip().lower()
    text = text[2:] if text.startswith("f/") else text
    m = re.match(r"^([0-9]*\.?[0-9]+)(?:\s*/\s*([0-9]*\.?[0-9]+))?", text)
    if not m:
        return None
    v = float(m.group(1))
    if m.group(2) is not None:
        den = float(m.group(2))
        return v / den if den else None
    return v


def read_lens(path, name: str | None = None) -> Lens:
    """The EXIF values K needs, from an image file (Pillow). Errors name the file by ``name``
    (default: its file name), never echo its bytes."""
    from PIL import Image, UnidentifiedImageError

    name = name or Path(path).name
    try:
        with Image.open(path) as img:
            width, height = img.size
            exif = img.getexif()
    except (OSError, UnidentifiedImageError, ValueError):
        raise BokehInputError(f"{name}: not a readable image. Replace or remove the file.") from None
    tags = dict(exif)
    try:
        tags.update(exif.get_ifd(EXIF_IFD))
    except (KeyError, ValueError, TypeError, OSError):
        pass  # no Exif IFD: only the base tags
    f_number, focal = parse_number(tags.get(F_NUMBER)), parse_number(tags.get(FOCAL_LENGTH))
    if not f_number or not focal:
        missing = " and ".join(w for w, v in (("FNumber", f_number), ("FocalLength", focal)) if not v)
        raise BokehInputError(f"{name}: the EXIF has no {missing}; expected both for K. Give K (dof_cond) for this "
                              f"photo instead.")
    focal_35 = parse_number(tags.get(FOCAL_35MM)) or focal  # 0 = unknown in EXIF; the spec defaults to fmm
    distance = parse_number(tags.get(SUBJECT_DISTANCE))
    focus = distance if distance and math.isfinite(distance) and distance > 0 else None
    return Lens(f_number, focal, focal_35, focus, width, height)


def k_from_file(path, focus_m: float | None = None, name: str | None = None) -> float:
    """K of an image file from its EXIF. ``focus_m`` overrides the EXIF SubjectDistance (rare in
    practice, spec 3.3); without either the error says to give it."""
    name = name or Path(path).name
    lens = read_lens(path, name)
    s1 = focus_m if focus_m is not None else lens.focus_m
    if s1 is None:
        raise BokehInputError(f"{name}: the EXIF has no SubjectDistance (focus distance); expected one for K. Give "
                              f"the focus distance in metres (s1) or K (dof_cond) for this photo.")
    return k_from_exif(lens.f_number, lens.focal_mm, lens.focal_35mm, s1, lens.width, lens.height, name)
