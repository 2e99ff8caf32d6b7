"""The training recipe: every setting of the authors' trainer (spec bokeh-training.md 1.1, 1.5-1.10)
as a default, and every deviation from its defects as an option (1.12).

The authors' behaviour, kept by default:
- ``max_grad_norm=None``: the released trainer's clipping is a no-op (1.12-1); a number clips.
- ``schedule_speed=1``: the intended cosine. The authors' 4-GPU run stepped the schedule 4x per
  optimiser step (1.6): ``schedule_speed=4`` reproduces that bouncing schedule.
- ``no_depth="identity"``: an I2I sample without depth trains "output = input" (1.12-4);
  ``"skip"`` leaves such samples out of I2I batches.
- ``paired_targets=False``: I2I targets are always re-rendered from the input (1.12-4); True uses
  a sample's own target image (and its K) where it has one.
- ``k_levels=0``: K continuous; N > 1 draws K from N levels so renders can be cached (small
  sets, slow machines).
- ``flat_focus="authors"``: a flat foreground's focus normalised over the foreground's inverse
  depth (spec 2.1); ``"image"`` over the whole image's (the disparity map's own scale).
- ``real_k="minmax"``: real photos' EXIF K min-max normalised over the set (1.8); ``"k30"`` uses
  K / 30, the axis of the renders and of inference (1.12-5).
- ``i2i_prompts="authors"``: an I2I row keeps its caption with probability i2i_caption_keep, else
  one of the authors' four training templates (1.5 step 9e); ``"inference"`` uses the one prompt
  the photo adapter is sampled with (bokehdepth-photo.md 2) instead of the four.
- ``vae_latents="sample"``: latents are a draw from the VAE's posterior, from the trainer's
  generator (1.5 step 2, 1.12-6); ``"mean"`` uses the posterior's mean, as inference encodes.
- ``i2i_mix="epoch"``: per epoch exactly int(steps_per_epoch (1 - i2i_ratio)) T2I steps, the rest
  I2I, in random order (1.7); ``"step"`` draws each step's kind with probability i2i_ratio.
  An epoch, as the authors count it with one process (1.6): ceil(real photos / batch_size) or one
  step per sharp photo (one grounded group a batch), whichever is more, plus ceil(I2I samples /
  batch_size) (training/batches.py ``epoch_steps``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..attention.bokeh import PHOTO, TEXT
from ..attention.errors import BokehInputError

OPTIMIZERS = ("adamw", "prodigy")
# The largest value of each setting whose work or memory grows with it: settings come from the
# node's Settings text too, which any client of a server can send.
LIMITS = {"steps": 1_000_000, "batch_size": 64, "group_size": 16, "rank": 1024, "context": 4096, "embed_hidden": 4096,
          "k_levels": 256, "warmup": 1_000_000, "save_every": 1_000_000, "schedule_speed": 64}


@dataclass
class Recipe:
    flavour: str = PHOTO  # PHOTO: FLUX.1 Kontext, I2I + T2I steps; TEXT: FLUX.1-dev, T2I only (spec 5)
    steps: int = 1000
    batch_size: int = 4  # rows of an I2I or real T2I batch (authors: 4 per GPU)
    group_size: int = 4  # rows of a synthetic group: the photo + group_size - 1 renders
    rank: int = 128
    alpha: float | None = None  # None = alpha == rank (scale 1, as released)
    context: int = 768  # width of the K embedding (bokeh context)
    embed_hidden: int = 64
    optimizer: str = "adamw"  # "prodigy" (the authors') needs the prodigyopt package
    lr: float | None = None  # None: 1e-4 for AdamW, 1.0 for Prodigy (1.6)
    weight_decay: float = 0.01
    warmup: int = 100
    schedule_speed: float = 1.0
    max_grad_norm: float | None = None
    noise_offset: float = 0.05
    k_min: float = 1.0
    k_max: float = 30.0
    k_levels: int = 0  # 0: K continuous (authors); N: N evenly spaced levels, each render made and encoded once
    caption_dropout: float = 0.1
    k_dropout: float = 0.1
    swap_prob: float = 0.2
    swap_blocks: str = "single"  # "all": also ground in the double blocks (Bokeh Diffusion's inference)
    guidance: float = 1.0
    i2i_ratio: float = 0.5  # share of I2I steps (photo flavour only)
    real_ratio: float = 0.5  # share of real-photo batches among T2I steps
    i2i_caption_keep: float = 0.35
    i2i_prompts: str = "authors"  # I2I templates: "authors" (their four training wordings) or "inference" (the sampling prompt)
    vae_latents: str = "sample"  # "sample": a posterior draw (authors' trainer); "mean": the posterior mean (inference's encoding)
    i2i_mix: str = "epoch"  # "epoch": exact I2I/T2I counts per epoch, shuffled (authors); "step": a draw per step
    real_k: str = "minmax"
    no_depth: str = "identity"
    paired_targets: bool = False
    flat_focus: str = "authors"  # the renderer's flat-foreground focus rule (training/defocus.py): "authors" or "image"
    gradient_checkpointing: bool = True
    seed: int = 0
    save_every: int = 0  # steps between saves (0: only at the end)

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1.0 if self.optimizer == "prodigy" else 1e-4)

    def check(self) -> "Recipe":
        problems = [problem for f in dataclasses.fields(self) if (problem := _type_problem(f.name, getattr(self, f.name), f.default))]
        if problems:  # the checks below compare numbers
            raise BokehInputError("Training settings not usable: " + "; ".join(problems) + ".")
        problems = [f"{name} {getattr(self, name)} (at most {most})" for name, most in LIMITS.items() if getattr(self, name) > most]
        if self.flavour not in (PHOTO, TEXT):
            problems.append(f"flavour {self.flavour!r} (expected {PHOTO!r} or {TEXT!r})")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer {self.optimizer!r} (expected one of {', '.join(OPTIMIZERS)})")
        if self.steps < 1 or self.batch_size < 1 or self.group_size < 2 or self.rank < 1:
            problems.append("steps, batch_size and rank must be >= 1 and group_size >= 2")
        if self.k_levels < 0 or self.k_levels == 1:
            problems.append(f"k_levels {self.k_levels} (expected 0 for continuous K, or 2 or more levels)")
        if not (0 < self.k_min <= self.k_max):
            problems.append(f"K range {self.k_min}..{self.k_max} (expected 0 < k_min <= k_max)")
        for name in ("caption_dropout", "k_dropout", "swap_prob", "i2i_ratio", "real_ratio", "i2i_caption_keep"):
            value = getattr(self, name)
            if not (0.0 <= value <= 1.0):
                problems.append(f"{name} {value} (expected 0..1)")
        if self.swap_blocks not in ("single", "all") or self.real_k not in ("minmax", "k30") or self.no_depth not in ("identity", "skip") \
                or self.flat_focus not in ("authors", "image"):
            problems.append("swap_blocks is 'single' or 'all', real_k 'minmax' or 'k30', no_depth 'identity' or 'skip', flat_focus 'authors' or 'image'")
        choices = {"i2i_prompts": ("authors", "inference"), "vae_latents": ("sample", "mean"), "i2i_mix": ("epoch", "step")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                problems.append(f"{name} {getattr(self, name)!r} (expected {' or '.join(repr(a) for a in allowed)})")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            problems.append(f"max_grad_norm {self.max_grad_norm} (expected > 0, or None for no clipping)")
        if problems:
            raise BokehInputError("Training settings not usable: " + "; ".join(problems) + ".")
        return self

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Recipe":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BokehInputError(f"Unknown training settings {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        return cls(**values).check()


def _type_problem(name: str, value, default) -> str | None:
    """What is wrong with ``value``'s type for a setting whose default is ``default``, or None."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if isinstance(default, bool):
        ok, wanted = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, wanted = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif isinstance(default, float) or default is None:
        ok, wanted = number or (default is None and value is None), "a number" + (" or null" if default is None else "")
    else:
        ok, wanted = isinstance(value, str), "text"
    return None if ok else f"{name} {value!r} (expected {wanted})"


def lr_multiplier(step: int, warmup: int, total: int, speed: float = 1.0) -> float:
    """diffusers' cosine-with-warm-up multiplier at optimiser step ``step`` (spec 1.6): k / warmup
    during warm-up (0 at the first step), then 0.5 (1 + cos(pi progress)). ``speed`` > 1 steps
    the schedule that many times per optimiser step (the authors' 4-process run: 4), past
    ``total`` the cosine keeps turning, as it did for them."""
    s = step * speed
    if s < warmup:
        return s / max(1, warmup)
    progress = (s - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
