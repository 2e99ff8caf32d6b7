"""Every random decision of a training step, drawn from one torch.Generator, turned into an
explicit ``step.Batch`` (spec bokeh-training.md 1.5, 1.7-1.10).

Three kinds of batch:
- ``i2i`` (photo flavour): reference = the sharp photo, target = its bokeh render at K ~ U(k_min,
  k_max), network input K / k_max, caption kept with probability 0.35 else one of the authors'
  four K templates (i2i_caption);
- ``real`` (T2I): defocused photos with their EXIF K (min-max normalised, or K / 30);
- ``group`` (T2I synthetic): one sharp photo and group_size - 1 renders of it, one caption, each
  row grounded on a random pivot with probability swap_prob (noise and sigma follow the swap).
"""

from __future__ import annotations

import logging
import math

import torch

from ..attention.bokeh import K_RANGE, UNCOND_INPUT
from ..attention.errors import BokehInputError
from .data import Sample
from .recipe import Recipe
from .step import Batch

log = logging.getLogger(__name__)

# The I2I captions (spec 1.5 step 9e): the authors' trainer fills one of four wordings, chosen
# uniformly, with K to two decimals (BokehDepth train_flux_I2I.py:1362-1379, MIT; the words are
# data the adapter learnt from). Their K is the bf16 network input times K_max, clamped at 0,
# so it can differ from K in the second decimal; here it is K itself.
I2I_TEMPLATES = (
    "Set dof_cond = {value} (stronger background defocus), no changes to composition, lighting, or colors.",
    "Increase dof_cond to {value} to enhance background blur; preserve subject sharpness and keep composition, "
    "lighting, colors unchanged.",
    "Apply dof_cond = {value} for stronger bokeh; keep the main subject crisp, do not alter composition, lighting, "
    "or color tone.",
    "Use dof_cond = {value} to intensify background defocus; maintain original framing, lighting, and color fidelity.",
)
# bokehdepth-photo.md section 2: the prompt the photo adapter is sampled with (the option i2i_prompts="inference").
INFERENCE_PROMPT = ("Set dof_cond = {value} (stronger background defocus); preserve subject sharpness; "
                    "keep composition, lighting, and colors unchanged.")


class BatchMaker:
    """Turns samples into batches. ``vae``: a ComfyUI VAE; ``clip``: a text encoder with
    ``tokenize`` / ``encode_from_tokens_scheduled`` (comfy.sd.CLIP); ``model``: the FLUX
    ModelPatcher (its latent format). Text encodings and the photos' latents are computed once
    and cached (they do not change between steps)."""

    def __init__(self, samples: list[Sample], vae, clip, model, recipe: Recipe, render=None):
        self.recipe = recipe
        self.vae, self.clip, self.model = vae, clip, model
        self.render = render
        # sharp photos with depth: render sources for groups and I2I; pairs (a target photo) join
        # the I2I pool with their own target and K (paired_targets) or, as the authors' trainer
        # does, re-rendered from zero depth (identity, spec 1.12-4) unless no_depth="skip";
        # defocused photos with K and no target: the real T2I batches.
        self.sharp = [s for s in samples if s.sharp and s.depth is not None]
        pairs = [s for s in samples if s.target is not None and not (s.sharp and s.depth is not None)]
        self.i2i = self.sharp + [s for s in pairs if (recipe.paired_targets and s.k is not None) or recipe.no_depth == "identity"]
        self.real = [s for s in samples if not s.sharp and s.k is not None and s.target is None]
        if not self.sharp and not self.real and not self.i2i:
            raise BokehInputError("No usable training samples: sharp photos with depth (for renders) or photos with a K value are needed.")
        ks = [s.k for s in self.real]
        self.k_range = (min(ks), max(ks)) if ks else (0.0, 0.0)
        self._text: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._latents: dict = {}  # photo name, or (name, K level) -> encode()'s result for one image
        self.schedule: torch.Tensor | None = None  # this epoch's I2I (1) / T2I (0) steps (i2i_mix "epoch")

    # -- random draws ------------------------------------------------------------------
    @staticmethod
    def _u(g) -> float:
        return float(torch.rand((), generator=g))

    def _pick(self, pool, g):
        return pool[int(torch.randint(len(pool), (), generator=g))]

    def _caption(self, sample: Sample, g) -> str:
        if self._u(g) < self.recipe.caption_dropout or not sample.captions:
            return ""
        return self._pick(sample.captions, g)

    def _k_input(self, value: float, g) -> float:
        return UNCOND_INPUT if self._u(g) < self.recipe.k_dropout else value

    def epoch_steps(self) -> int:
        """Steps of one epoch as the authors' trainer counts them with one process (spec 1.6): the
        longer T2I loader (real photos in batches of batch_size; sharp photos one grounded group a
        batch, as released) plus the I2I loader (photo flavour), loaders keeping a short last batch."""
        r = self.recipe
        t2i = max(math.ceil(len(self.real) / r.batch_size), len(self.sharp))
        i2i = math.ceil(len(self.i2i) / r.batch_size) if r.flavour == "photo" else 0
        return max(1, t2i + i2i)

    def _epoch_i2i(self, g, step: int) -> bool:
        """Whether step ``step`` is I2I under the per-epoch schedule (spec 1.7): at an epoch's first
        step, int(n (1 - i2i_ratio)) T2I and the rest I2I, shuffled."""
        n = self.epoch_steps()
        if step % n == 0 or self.schedule is None or len(self.schedule) != n:
            t2i = int(n * (1.0 - self.recipe.i2i_ratio))
            order = torch.randperm(n, generator=g)
            self.schedule = (order >= t2i).to(torch.int8)  # the first t2i of a shuffled range are T2I
        return bool(self.schedule[step % n])

    def kind(self, g, step: int | None = None) -> str:
        """The next batch's kind. ``step`` (the optimiser step) selects the per-epoch schedule
        (i2i_mix "epoch"); without it, or with "step", each step is drawn with i2i_ratio."""
        r = self.recipe
        if r.flavour == "photo" and self.i2i:
            if r.i2i_mix == "epoch" and step is not None and (self.sharp or self.real):
                if self._epoch_i2i(g, step):
                    return "i2i"
            elif self._u(g) < r.i2i_ratio or not (self.sharp or self.real):
                return "i2i"
        real = self._u(g) < r.real_ratio
        if (real and self.real) or not self.sharp:
            if not self.real:
                raise BokehInputError("No samples for text-to-image steps: add sharp photos with depth or photos with K.")
            return "real"
        return "group"

    # -- encoders ------------------------------------------------------------------------
    def text(self, caption: str) -> tuple[torch.Tensor, torch.Tensor]:
        hit = self._text.get(caption)
        if hit is None:
            cond = self.clip.encode_from_tokens_scheduled(self.clip.tokenize(caption))
            hit = self._text[caption] = (cond[0][0][0].detach().float().cpu(), cond[0][1]["pooled_output"][0].detach().float().cpu())
        return hit

    def encode(self, images: torch.Tensor):
        """images: (B, 3, H, W) in [0, 1] -> what ``draw`` turns into latents: with vae_latents
        "mean" the latents in the model's space (the VAE's output: its posterior's mean, as
        inference encodes); with "sample" the posterior's (mean, std) before the latent format,
        float32 on the CPU (read from the host's own regulariser, spec 1.5 step 2)."""
        if self.recipe.vae_latents == "mean":
            with torch.no_grad():
                lat = self.vae.encode(images.movedim(1, -1)[..., :3])
                return self.model.model.process_latent_in(lat).float().cpu()
        return posterior(self.vae, images)

    def draw(self, entry, g=None) -> torch.Tensor:
        """Latents in the model's space from ``encode``'s result: "mean" as it is; "sample" a draw
        mean + std * e, e ~ N(0, 1) from ``g`` (no ``g``: the mean), through the latent format."""
        if self.recipe.vae_latents == "mean":
            return entry
        mean, std = entry
        raw = mean if g is None else mean + std * torch.randn(mean.shape, generator=g)
        with torch.no_grad():
            return self.model.model.process_latent_in(raw).float().cpu()

    def latents(self, images: torch.Tensor, g=None) -> torch.Tensor:
        return self.draw(self.encode(images), g)

    def _photo(self, sample: Sample):
        hit = self._latents.get(sample.name)
        if hit is None:
            hit = self._latents[sample.name] = _row(self.encode(sample.image[None]), 0)
        return hit

    def photo_latent(self, sample: Sample, g=None) -> torch.Tensor:
        """The photo's latent (its encoding cached): a fresh posterior draw from ``g`` each call."""
        return self.draw(self._photo(sample), g)

    def draw_k(self, g) -> float:
        """K ~ U(k_min, k_max) (spec 1.8), or one of ``k_levels`` evenly spaced levels."""
        r = self.recipe
        if r.k_levels:
            return self.levels()[int(torch.randint(r.k_levels, (), generator=g))]
        return self._u(g) * (r.k_max - r.k_min) + r.k_min

    def renders(self, samples: list[Sample], ks: list[float]) -> torch.Tensor:
        """Bokeh renders of ``samples`` at ``ks`` in one batched call: (N, 3, H, W) in [0, 1]. A
        sample without depth renders from zero depth (the authors' identity target, spec 1.12-4);
        one without a mask has no foreground."""
        if self.render is None:
            from .render import render_bokeh as render
        else:
            render = self.render
        image = torch.stack([s.image for s in samples])
        depth = torch.stack([s.depth if s.depth is not None else torch.zeros_like(s.image[:1]) for s in samples])
        mask = torch.stack([s.mask if s.mask is not None else torch.zeros_like(s.image[:1]) for s in samples])
        k = torch.tensor(ks, dtype=torch.float32)
        return render(image, depth, mask, k, flat_focus=self.recipe.flat_focus)[0].clamp(0, 1)

    def levels(self) -> list[float]:
        r = self.recipe
        return [r.k_min + (r.k_max - r.k_min) * i / max(1, r.k_levels - 1) for i in range(r.k_levels)]

    def render_latents(self, samples: list[Sample], ks: list[float], g=None) -> torch.Tensor:
        """Latents of the renders. With ``k_levels`` a sample's renders at every level are made and
        encoded in one call the first time one is needed, so a latent never depends on which
        batch asked first (the encoder's rounding depends on the batch shape)."""
        if not self.recipe.k_levels:
            return self.latents(self.renders(samples, ks), g)
        levels = self.levels()
        for s in samples:
            if (s.name, round(levels[0], 6)) not in self._latents:
                made = self.encode(self.renders([s] * len(levels), levels))
                self._latents.update({(s.name, round(k, 6)): _row(made, i) for i, k in enumerate(levels)})
        return torch.stack([self.draw(self._latents[(s.name, round(k, 6))], g) for s, k in zip(samples, ks)])

    def prerender(self) -> None:
        """Encode every photo, and with ``k_levels`` every render, now (batched per sample)."""
        for s in self.i2i + self.real:
            self._photo(s)
        if self.recipe.k_levels:
            levels = self.levels()
            for s in self.sharp:
                self.render_latents([s], levels[:1])

    # -- batches -------------------------------------------------------------------------
    def make(self, g, kind: str | None = None, step: int | None = None) -> Batch:
        """The next batch, every draw from ``g``; ``step``: the optimiser step (see ``kind``)."""
        kind = kind or self.kind(g, step)
        r = self.recipe
        swap, reference = None, None
        if kind == "group":
            sample = self._pick(self.sharp, g)
            captions = [self._caption(sample, g)] * r.group_size
            ks = [self.draw_k(g) for _ in range(r.group_size - 1)]
            photo_k = sample.k / K_RANGE if sample.k is not None else 0.0  # raw K / 30 (spec 1.8)
            inputs = [self._k_input(v, g) for v in [photo_k] + [k / K_RANGE for k in ks]]
            targets = torch.cat([self.photo_latent(sample, g)[None], self.render_latents([sample] * len(ks), ks, g)])
            if r.swap_prob > 0:
                pivot = int(torch.randint(r.group_size, (), generator=g))
                swap = torch.tensor([pivot if self._u(g) < r.swap_prob else i for i in range(r.group_size)])
        elif kind == "real":
            rows = [self._pick(self.real, g) for _ in range(r.batch_size)]
            captions = [self._caption(s, g) for s in rows]
            lo, hi = self.k_range
            values = [(s.k - lo) / (hi - lo + 1e-8) if r.real_k == "minmax" else s.k / K_RANGE for s in rows]
            inputs = [self._k_input(v, g) for v in values]
            targets = torch.stack([self.photo_latent(s, g) for s in rows])
        elif kind == "i2i":
            rows = [self._pick(self.i2i, g) for _ in range(r.batch_size)]
            paired = [r.paired_targets and s.target is not None and s.k is not None for s in rows]
            ks = [s.k if p else self.draw_k(g) for s, p in zip(rows, paired)]
            render = [i for i, p in enumerate(paired) if not p]
            made = dict(zip(render, self.render_latents([rows[i] for i in render], [ks[i] for i in render], g))) if render else {}
            targets = torch.stack([made[i] if i in made else self.latents(rows[i].target[None], g)[0] for i in range(len(rows))])
            inputs = [k / r.k_max for k in ks]  # K / K_max, never dropped (spec 1.8: the trainer overwrites the dropout)
            captions = [self.i2i_caption(self._caption(s, g), k, g) for s, k in zip(rows, ks)]
            reference = torch.stack([self.photo_latent(s, g) for s in rows])
        else:
            raise BokehInputError(f"Unknown batch kind {kind!r}.")
        b = targets.shape[0]
        noise = torch.randn(targets.shape, generator=g) + r.noise_offset * torch.randn(b, targets.shape[1], 1, 1, generator=g)
        # sigma uniform on {0.001, ..., 1.000}: the FLUX scheduler's timesteps without shift (spec 1.5 step 4)
        sigmas = (1000 - torch.floor(1000 * torch.rand(b, generator=g))) / 1000
        context, pooled = self._texts(captions)
        return Batch(latents=targets, noise=noise, sigmas=sigmas, k_inputs=torch.tensor(inputs, dtype=torch.float32),
                     context=context, pooled=pooled, guidance=torch.full((b,), float(r.guidance)), reference=reference,
                     swap=swap, swap_blocks=r.swap_blocks, extra={"kind": kind})

    def i2i_caption(self, caption: str, k: float, g) -> str:
        """Spec 1.5 step 9e: a non-empty caption is kept with probability i2i_caption_keep; else
        (and always for an empty one) a template with K to two decimals, one of the authors' four
        chosen uniformly (i2i_prompts "authors") or the sampling prompt ("inference")."""
        r = self.recipe
        if caption.strip() and self._u(g) < r.i2i_caption_keep:
            return caption
        value = f"{k:.2f}"
        if r.i2i_prompts == "inference":
            return INFERENCE_PROMPT.format(value=value)
        return I2I_TEMPLATES[int(torch.randint(len(I2I_TEMPLATES), (), generator=g))].format(value=value)

    def _texts(self, captions):
        encoded = [self.text(c) for c in captions]
        longest = max(c.shape[0] for c, _ in encoded)
        # Captions of one batch may encode to different lengths (T5 pads to 256 tokens in ComfyUI's
        # FLUX; longer captions run past it): pad with the encoding's last (padding) token, as the
        # authors' fixed 512-token padding does.
        contexts = [torch.cat([c, c[-1:].expand(longest - c.shape[0], -1)]) for c, _ in encoded]
        return torch.stack(contexts), torch.stack([p for _, p in encoded])


def _row(entry, i: int):
    """Row ``i`` of ``BatchMaker.encode``'s result (a tensor, or a (mean, std) pair)."""
    return tuple(t[i] for t in entry) if isinstance(entry, tuple) else entry[i]


def posterior(vae, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The VAE posterior's (mean, std) for images (B, 3, H, W) in [0, 1], float32 on the CPU,
    before the latent format. ComfyUI's VAE.encode returns the posterior's mode, the output of
    its first-stage model's DiagonalGaussianRegularizer (sample=False on every supported host);
    the regulariser's input, the moments, is read with a forward hook while the host encodes as
    usual, and split by the host's own DiagonalGaussianDistribution."""
    from comfy.ldm.modules.distributions.distributions import DiagonalGaussianDistribution

    regulariser = getattr(getattr(vae, "first_stage_model", None), "regularization", None)
    if type(regulariser).__name__ != "DiagonalGaussianRegularizer":
        raise BokehInputError(f"This VAE ({type(getattr(vae, 'first_stage_model', vae)).__name__}) has no Gaussian posterior "
                              "to sample; set vae_latents=mean.")
    moments = []
    hook = regulariser.register_forward_hook(lambda module, args, out: moments.append(args[0].detach()))
    try:
        with torch.no_grad():
            lat = vae.encode(images.movedim(1, -1)[..., :3])
    finally:
        hook.remove()
    dists = [DiagonalGaussianDistribution(m) for m in moments]
    mean = torch.cat([d.mean for d in dists]).float().cpu() if dists else None
    # the encoding must be the posterior's mean itself (no tiling, no transform after the regulariser)
    if mean is None or mean.shape != lat.shape or not torch.equal(mean, lat.float().cpu()):
        raise BokehInputError("This VAE's encoding is not its posterior's mean (tiled, or transformed after it); "
                              "set vae_latents=mean.")
    return mean, torch.cat([d.std for d in dists]).float().cpu()
