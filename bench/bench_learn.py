"""The learning run of tests/test_train_learn.py under several settings and seeds: held-out loss
with the true K and with the rows' K shuffled, the gap, its standard error over the held-out
batches, and the time (issue 23 item 5).

    python scripts/dev.py bench.bench_learn           # the test's setting on 3 seeds, then the others on one
    python scripts/dev.py bench.bench_learn --steps 600 --seeds 3,4,5 --settings test,random_texture

Settings (tests/learn_scenes.py describes the test's):
    test            tiled background, the linear latent encoder, the authors' dropout and swaps, lr 0.1
    random_texture  random 4 px blocks instead of tiles (the effect of blur differs per scene)
    random_vae      the tiny random VAE of the other tests (scaled to FLUX's latent size)
    no_dropout      no caption or K dropout, no swaps (the authors': 0.1, 0.1 and 0.2)
    lr_0.05         learning rate 0.05
"""

from __future__ import annotations

import argparse
import statistics
import time

from ..fixtures import harness
from ..fixtures import learn_scenes as ls  # the learning test's scenes and recipe
from ..fixtures.test_nodes import tiny_nodes

SETTINGS = ("test", "random_texture", "random_vae", "no_dropout", "lr_0.05")


class Mods:
    def __getattr__(self, name):
        module = harness.pack_module({"data": "training.data", "render": "training.render", "recipe": "training.recipe",
                                      "step": "training.step", "trainer": "training.trainer"}[name])
        setattr(self, name, module)
        return module


def random_vae(texture):
    """The tests' tiny random VAE, its latents scaled to about FLUX's size and centred on FLUX's shift."""
    import torch

    vae = harness.tiny_vae(5)
    with torch.no_grad():
        conv = vae.first_stage_model.encoder.conv_out
        conv.weight.mul_(3.0)
        conv.bias.mul_(3.0)
        z = vae.encode(torch.stack([ls.scene(s, texture)[0] for s in range(200, 208)]).movedim(1, -1))
        conv.bias[:16] -= (z.mean(dim=(0, 2, 3)) - 0.1159).to(conv.bias.dtype)
    return vae


def run(mods, setting, seed, steps):
    texture = "random" if setting == "random_texture" else "tiles"
    changes = {"no_dropout": dict(caption_dropout=0.0, k_dropout=0.0, swap_prob=0.0), "lr_0.05": dict(lr=0.05)}.get(setting, {})
    model = harness.tiny_flux(seed=0)
    encoder = random_vae(texture) if setting == "random_vae" else ls.PatchEncoder()
    clip = tiny_nodes.TinyTextEncoder("tiny")
    recipe = ls.recipe(mods, steps, seed=seed, **changes)
    trainer = mods.trainer.Trainer(model, encoder, clip, ls.samples(mods, range(6), texture=texture), recipe)
    batches = ls.held_out(mods, mods.trainer.Trainer, model, encoder, clip, recipe, texture=texture)
    before = ls.losses(mods, trainer.model, trainer.adapter, batches)
    start = time.monotonic()
    trainer.run()
    seconds = time.monotonic() - start
    return before, ls.losses(mods, trainer.model, trainer.adapter, batches), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", default="3,4,5", help="seeds of the test's setting (the others run on the first)")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    args = parser.parse_args()
    harness.quiet_host_logging()
    harness.load_pack()
    mods = Mods()
    seeds = [int(s) for s in args.seeds.split(",")]
    print("| setting | seed | steps | held-out loss true K before -> after | shuffled K after | gap (% of loss) | gap / s.e. | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for setting in args.settings.split(","):
        if setting not in SETTINGS:
            parser.error(f"unknown setting {setting!r}; known: {', '.join(SETTINGS)}")
        rel = []
        for seed in seeds if setting == "test" else seeds[:1]:
            before, after, seconds = run(mods, setting, seed, args.steps)
            rel.append(after.gap / after.true * 100)
            ratio = after.gap / after.gap_se if after.gap_se else float("nan")
            print(f"| {setting} | {seed} | {args.steps} | {before.true:.4f} -> {after.true:.4f} (init gap {before.gap:.1g}) | "
                  f"{after.shuffled:.4f} | {after.gap:.4f} ({rel[-1]:.2f} %) | {ratio:.1f} | {seconds:.1f} |", flush=True)
        if len(rel) > 1:
            print(f"| {setting}: gap over seeds | | | | | {statistics.mean(rel):.2f} % +- {statistics.stdev(rel):.2f} % (sd) | | |", flush=True)


if __name__ == "__main__":
    main()
