"""Training samples from a folder or a CSV manifest (spec bokeh-training.md 3.1-3.2, 1.11).

A folder holds images (.png .jpg .jpeg .webp) and, beside each ``NAME.ext``:
  NAME.txt             captions, one per line (optional);
  NAME.depth.npy|.npz  metric depth (float, larger = farther; .npz key "depth"): a sharp photo,
                       used for bokeh renders;
  NAME.mask.png        foreground mask (optional; > 50 % = foreground);
  NAME.k.txt           K (dof_cond) of a defocused photo; else read from EXIF (needs the focus
                       distance), for photos without depth;
  NAME.target.png      a real paired target (used only with the paired_targets option).
A CSV manifest has the authors' columns (3.2); paths are relative to the manifest's folder.

Images are resized so the short side is ``size`` (area filter; the mask nearest) and centre
cropped to size x size (1.11). Bad data raises BokehInputError naming the file.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..attention.errors import BokehInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
SIDE_SUFFIXES = (".mask", ".target", ".depth")
MIN_SIDE = 16  # one FLUX latent patch


@dataclass
class Sample:
    name: str  # how logs and errors call it (the file's name in its dataset)
    image: torch.Tensor  # (3, S, S) in [0, 1]
    depth: torch.Tensor | None = None  # (1, S, S) metric depth
    mask: torch.Tensor | None = None  # (1, S, S) in {0, 1}
    captions: tuple = ()
    k: float | None = None  # K (dof_cond) in pixels per 1/m of disparity
    sharp: bool = False  # a source for renders (suitable_for_synthetic)
    target: torch.Tensor | None = None  # (3, S, S) real paired target
    extra: dict = field(default_factory=dict)


def _crop(t: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """(C, H, W) -> (C, size, size): short side to ``size`` (ceil), centre crop (offset round)."""
    _, h, w = t.shape
    s = size / min(h, w)
    nh, nw = max(size, math.ceil(h * s)), max(size, math.ceil(w * s))
    t = F.interpolate(t[None].float(), size=(nh, nw), mode=mode)[0]
    top, left = round((nh - size) / 2), round((nw - size) / 2)
    return t[:, top:top + size, left:left + size]


def read_image(path: Path, name: str, gray: bool = False) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("L" if gray else "RGB"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise BokehInputError(f"{name}: file not found. Fix the path or remove the row.") from None
    except (OSError, UnidentifiedImageError, ValueError):
        raise BokehInputError(f"{name}: not a readable image. Replace or remove the file.") from None
    t = torch.from_numpy(arr.copy())
    return t[None] if gray else t.permute(2, 0, 1)


def read_depth(path: Path, name: str) -> torch.Tensor:
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "depth" not in z:
                    raise BokehInputError(f"{name}: no array 'depth' in the .npz; expected the metric depth under 'depth'.")
                arr = z["depth"]
        else:
            arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise BokehInputError(f"{name}: depth map not found. Add it, or remove the row (a photo without depth needs K).") from None
    except (OSError, ValueError):
        raise BokehInputError(f"{name}: not a readable .npy/.npz depth map (numpy arrays only, no pickles).") from None
    arr = np.squeeze(np.asarray(arr))
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise BokehInputError(f"{name}: depth of shape {arr.shape} ({arr.dtype}); expected one H x W array of numbers.")
    t = torch.from_numpy(arr.astype(np.float32))
    if not bool((torch.isfinite(t) & (t > 0)).any()):
        raise BokehInputError(f"{name}: the depth map has no finite positive value (NaN, inf or <= 0 everywhere). "
                              "Recompute the depth map.")
    return t[None]


def _same_shape(img: torch.Tensor, other: torch.Tensor, name: str, what: str) -> None:
    (h, w), (oh, ow) = img.shape[-2:], other.shape[-2:]
    if abs(h / w - oh / ow) > 0.01 * (h / w):
        raise BokehInputError(f"{name}: the {what} is {ow}x{oh} but the image is {w}x{h}; expected the same aspect "
                              "ratio (the same size, or a scaled copy).")


def build_sample(name, image_path: Path, size: int, depth_path=None, mask_path=None, target_path=None, captions=(),
                 k=None, sharp=None) -> Sample:
    image = read_image(image_path, name)
    if min(image.shape[-2:]) < MIN_SIDE:
        w, h = image.shape[-1], image.shape[-2]
        raise BokehInputError(f"{name}: image of {w}x{h} pixels; expected at least {MIN_SIDE} on each side.")
    depth = mask = target = None
    if depth_path is not None:
        raw = read_depth(depth_path, Path(depth_path).name)
        _same_shape(image, raw, name, f"depth map {Path(depth_path).name}")
        # invalid depth (NaN, inf, <= 0) stays invalid through the resize: spec 2.1 handles it
        depth = _crop(torch.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0), size, "area")
    if mask_path is not None:
        raw = read_image(mask_path, Path(mask_path).name, gray=True)
        _same_shape(image, raw, name, f"mask {Path(mask_path).name}")
        mask = (_crop(raw, size, "nearest") > 0.5).float()
    if target_path is not None:
        raw = read_image(target_path, Path(target_path).name)
        _same_shape(image, raw, name, f"target {Path(target_path).name}")
        target = _crop(raw, size, "area").clamp(0, 1)
    if depth is None and k is None:
        raise BokehInputError(f"{name}: no depth map and no K. A sharp photo needs its depth map (for renders); a "
                              "defocused photo needs K (dof_cond, or EXIF with the focus distance).")
    return Sample(name=name, image=_crop(image, size, "area").clamp(0, 1), depth=depth, mask=mask,
                  captions=tuple(c for c in captions if c), k=k, sharp=depth is not None if sharp is None else sharp,
                  target=target)


def _side(image: Path, tag: str, suffixes) -> Path | None:
    for suffix in suffixes:
        p = image.with_name(image.stem + tag + suffix)
        if p.is_file():
            return p
    return None


def _read_k(path: Path) -> float:
    try:
        k = float(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        raise BokehInputError(f"{path.name}: expected one number (K, dof_cond).") from None
    if not math.isfinite(k) or k < 0:
        raise BokehInputError(f"{path.name}: K {k} is not a finite number >= 0.")
    return k


def from_folder(folder, size: int = 512) -> list[Sample]:
    """Every image of ``folder`` (not its subfolders) as a Sample; see the module docstring."""
    from .exif import k_from_file

    folder = Path(folder)
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                    and not p.stem.lower().endswith(SIDE_SUFFIXES)) if folder.is_dir() else []
    if not images:
        raise BokehInputError(f"Dataset folder {folder.name!r} has no images ({', '.join(IMAGE_SUFFIXES)}). Put the "
                              "training photos there (see the README's Training section).")
    samples = []
    for p in images:
        text = p.with_suffix(".txt")
        captions = text.read_text(encoding="utf-8", errors="replace").splitlines() if text.is_file() else ()
        depth = _side(p, ".depth", (".npy", ".npz"))
        k_file = _side(p, ".k", (".txt",))
        k = _read_k(k_file) if k_file else (None if depth is not None else k_from_file(p))
        samples.append(build_sample(p.name, p, size, depth_path=depth, mask_path=_side(p, ".mask", (".png",)),
                                    target_path=_side(p, ".target", IMAGE_SUFFIXES), captions=captions, k=k))
    return samples


def _flag(value: str, default: bool) -> bool:
    v = (value or "").strip().lower()
    return default if not v else v in ("1", "true", "yes", "y")


def _number(row: dict, key: str, where: str) -> float | None:
    raw = (row.get(key) or "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise BokehInputError(f"{where}: column {key} is {raw[:20]!r}; expected a number.") from None


def from_manifest(path, size: int = 512, inside: bool = False) -> list[Sample]:
    """Samples from a CSV manifest with the authors' columns (spec 3.2). ``inside``: refuse paths
    outside the manifest's folder (for manifests a client may have supplied)."""
    from .exif import k_from_exif

    path = Path(path)
    base = path.parent.resolve()
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error):
        raise BokehInputError(f"{path.name}: not a readable CSV manifest.") from None
    if not rows or "input_image_path" not in rows[0]:
        raise BokehInputError(f"{path.name}: no rows, or no input_image_path column (the authors' manifest columns, spec 3.2).")

    def resolve(value, where):
        if not (value or "").strip():
            return None
        p = (base / value.strip()).resolve()
        if inside and base not in p.parents:
            raise BokehInputError(f"{where}: path {value.strip()[:60]!r} leaves the dataset folder; use paths inside it.")
        return p

    samples = []
    for i, row in enumerate(rows, start=2):
        where = f"{path.name} line {i}"
        image = resolve(row.get("input_image_path"), where)
        if image is None:
            raise BokehInputError(f"{where}: input_image_path is empty.")
        k = _number(row, "dof_cond", where)
        lens = [_number(row, c, where) for c in ("N", "fmm", "f35mm", "s1")]
        if k is None and None not in (lens[0], lens[1], lens[3]):
            w, h = _number(row, "image_width", where), _number(row, "image_height", where)
            if not w or not h:
                h, w = read_image(image, where).shape[-2:]
            k = k_from_exif(lens[0], lens[1], lens[2], lens[3], int(w), int(h), where)
        target = resolve(row.get("target_image_path"), where)
        sharp = _flag(row.get("suitable_for_synthetic"), target is None)
        depth = resolve(row.get("depth_map_path"), where)
        samples.append(build_sample(f"{image.name} ({where})", image, size, depth_path=depth,
                                    mask_path=resolve(row.get("fg_mask_path"), where), target_path=target,
                                    captions=(row.get("captions") or "").split("|"), k=k, sharp=sharp and depth is not None))
    return samples
