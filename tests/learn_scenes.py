"""The learning run of tests/test_train_learn.py and bench/bench_learn.py: synthetic scenes, a
linear latent encoder, the recipe of the bounded CPU run and the held-out true-K / shuffled-K
losses (issue 23 item 5; spec bokeh-training.md 4.6).

Why these choices (measured; bench/bench_learn.py prints the table):
- Scenes: a flat grey disc (depth 1, in focus) before a tiled background (a checkerboard of 4 px
  squares, two grey levels drawn per scene, depth 20), rendered by the pack's renderer. The tiles
  are aligned with the latent grid, so what blur does to them (the pattern fades to its mean)
  is the same in every scene: the base model does not need to see the scene to predict it.
  With a random texture the effect of blur differs per scene and only a base that can denoise
  (a trained one) can apply it; the tiny random base cannot, and the gap stays at noise level.
- Latents: a fixed linear encoder in ComfyUI's VAE convention (``encode(pixels) -> latents``):
  grey 2 x 2 cell means, pixel-unshuffled by 4 into FLUX's 16 channels at 1/8 of the size. A
  trained VAE keeps an image's layout (a blurred image gives a smoothed latent); the tiny random
  VAE of the other tests scrambles it (with it the gap stays at noise level, tiles or not; on
  random textures the part of the K effect in its latents that one bias per image can express
  is under 1 % of the effect).
- Recipe: the text-to-image recipe (real photos and grounded render groups, the authors' caption
  and K dropout and swaps) with K on two levels (1 and 8) and a learning rate for a 400-step run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SIZE = 32  # pixels; latents 4 x 4, 4 image tokens
K_MAX = 8.0  # blur radius up to 8 px: the 4 px tiles fade to their mean
CHECK = 4  # tile side in pixels
CAPTION = ("a ball in front of a tiled wall",)
LATENT_SCALE = 2.0  # model-space latent = 4 (grey - 0.5): the sharp tiles have about unit variance, as FLUX latents


def scene(seed: int, texture: str = "tiles"):
    """(image (3, S, S), depth (1, S, S), subject mask (1, S, S)) for ``seed``: a grey disc of
    random radius and level at the centre, at depth 1, before a background at depth 20 that is
    a checkerboard of two random grey levels ("tiles") or random 4 px blocks ("random")."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    dark, light = 0.3 * float(torch.rand((), generator=g)), 0.7 + 0.3 * float(torch.rand((), generator=g))
    if texture == "tiles":
        bg = torch.where((y // CHECK + x // CHECK) % 2 == 0, dark, light).float()
    else:
        cells = torch.rand(SIZE // CHECK, SIZE // CHECK, generator=g) > 0.5
        bg = torch.where(cells, light, dark).float().repeat_interleave(CHECK, 0).repeat_interleave(CHECK, 1)
    radius = SIZE * (0.15 + 0.1 * float(torch.rand((), generator=g)))
    level = 0.3 + 0.4 * float(torch.rand((), generator=g))
    disc = (((y - SIZE / 2) ** 2 + (x - SIZE / 2) ** 2) < radius**2).float()
    image = bg * (1 - disc) + level * disc
    return image.expand(3, -1, -1).clone(), (20.0 - 19.0 * disc)[None], disc[None]


class PatchEncoder:
    """A fixed linear latent encoder with the VAE interface the trainer uses (``encode`` of
    (B, H, W, 3) pixels in [0, 1] -> (B, 16, H / 8, W / 8) latents before the model's
    ``process_latent_in``): channel j of a latent pixel is the mean grey of the 2 x 2 cell j of
    its 8 x 8 patch. Blur in the image is blur in the latents."""

    def __init__(self, scale: float = LATENT_SCALE, shift: float = 0.1159, factor: float = 0.3611):
        self.scale, self.shift, self.factor = scale, shift, factor  # FLUX's latent format (process_latent_in)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        grey = pixels[..., :3].float().mean(-1)[:, None]
        cells = torch.nn.functional.pixel_unshuffle(torch.nn.functional.avg_pool2d(grey, 2), 4)
        return self.scale * 2 * (cells - 0.5) / self.factor + self.shift


def samples(mods, seeds, k_seed=None, texture="tiles"):
    """Per scene: the sharp photo with depth (render groups) and two "real" photos, rendered
    here at known K (the text-to-image real batches): K 1 and K_MAX, or with ``k_seed`` two
    draws from {1, K_MAX} (held-out scenes)."""
    out = []
    for s in seeds:
        image, depth, mask = scene(s, texture)
        out.append(mods.data.Sample(name=f"scene{s}", image=image, depth=depth, mask=mask, captions=CAPTION, sharp=True))
        if k_seed is None:
            ks = torch.tensor([1.0, K_MAX])
        else:
            ks = torch.where(torch.rand(2, generator=torch.Generator().manual_seed(k_seed + s)) < 0.5, 1.0, K_MAX)
        renders = mods.render.render_bokeh(image.expand(2, -1, -1, -1), depth.expand(2, -1, -1, -1), mask.expand(2, -1, -1, -1),
                                           ks, flat_focus="image")[0].clamp(0, 1)
        out += [mods.data.Sample(name=f"scene{s}-k{float(k):g}-{i}", image=r, captions=CAPTION, k=float(k))
                for i, (r, k) in enumerate(zip(renders, ks))]
    return out


def recipe(mods, steps: int, seed: int, **changes):
    """The text-to-image recipe (spec 5) at its defaults except: tiny sizes (rank 4, context 16),
    K on two levels up to K_MAX with K / 30 for both kinds ("k30"), "image" focus (the authors'
    rule puts a flat subject's focus on the background, spec 2.1), latents as encoded (the linear
    encoder has no posterior to sample), and a learning rate for a short run (0.1, no warm-up)."""
    values = dict(flavour="text", steps=steps, rank=4, context=16, embed_hidden=8, lr=0.1, warmup=0, k_max=K_MAX, k_levels=2,
                  real_k="k30", flat_focus="image", vae_latents="mean", gradient_checkpointing=False, seed=seed)
    values.update(changes)
    return mods.recipe.Recipe(**values)


def held_out(mods, trainer_class, model, encoder, clip, rec, texture="tiles", batches=16):
    """``batches`` fixed "real" batches of 4 rows from 4 new scenes: noise, sigmas and captions
    drawn once; the true-K and shuffled-K losses are taken on the same batches."""
    held = trainer_class(model, encoder, clip, samples(mods, range(100, 104), k_seed=7, texture=texture), rec)
    g = torch.Generator().manual_seed(99)
    return [held.maker.make(g, kind="real") for _ in range(batches)]


@dataclass
class Losses:
    true: float  # mean held-out loss with each row's own K
    shuffled: float  # the same batches, K rolled by one row
    gap_se: float  # standard error of the per-batch paired gap (shuffled - true)

    @property
    def gap(self) -> float:
        return self.shuffled - self.true


def losses(mods, model, adapter, batches) -> Losses:
    true, shuffled = [], []
    with torch.no_grad():
        for batch in batches:
            rolled = mods.step.Batch(**{**batch.__dict__, "k_inputs": batch.k_inputs.roll(1)})
            true.append(float(mods.step.adapter_loss(model, adapter, batch)))
            shuffled.append(float(mods.step.adapter_loss(model, adapter, rolled)))
    gaps = torch.tensor(shuffled, dtype=torch.float64) - torch.tensor(true, dtype=torch.float64)
    return Losses(true=sum(true) / len(true), shuffled=sum(shuffled) / len(shuffled), gap_se=float(gaps.std() / len(gaps) ** 0.5))
