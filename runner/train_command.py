"""Headless training of a Bokeh adapter, in-process through ComfyUI's own loaders and FLUX.

    python scripts/bokeh_train.py --folder my_photos --unet flux1-kontext-dev.safetensors \
        --t5 t5xxl_fp16.safetensors --clip-l clip_l.safetensors --vae ae.safetensors --out my_bokeh.safetensors
    python scripts/bokeh_train.py --manifest data/manifest.csv --flavour text --unet flux1-dev.safetensors ...
    python scripts/bokeh_train.py --check --folder my_photos   # tiny random models: proves data and install

Model names are files in ComfyUI's model folders (diffusion_models, text_encoders, vae). The
adapter goes to models/bokeh_diffusion/<out> with its resume state beside it (<out>.state) and
a loss log (<out>.loss.csv). Training settings: --set name=value for any field of
training/recipe.py (the authors' values by default), e.g. --set steps=2000 --set max_grad_norm=1.0.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path

from ..attention.errors import BokehError
from . import inprocess

log = logging.getLogger("bokeh_train")


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--folder", type=Path, help="a folder of images with captions, depth maps, masks or K (training/data.py)")
    data.add_argument("--manifest", type=Path, help="a CSV manifest with the authors' columns (spec 3.2)")
    p.add_argument("--size", type=int, default=512, help="square training size (the authors: 512)")
    p.add_argument("--flavour", choices=["photo", "text"], default="photo",
                   help="photo: FLUX.1 Kontext, I2I + T2I (BokehDepth); text: FLUX.1-dev, T2I (Bokeh Diffusion)")
    p.add_argument("--unet", help="FLUX model file in models/diffusion_models")
    p.add_argument("--weight-dtype", default="default", help="UNETLoader's weight_dtype (default, fp8_e4m3fn, ...)")
    p.add_argument("--t5", help="T5-XXL file in models/text_encoders")
    p.add_argument("--clip-l", help="CLIP-L file in models/text_encoders")
    p.add_argument("--vae", help="FLUX VAE file in models/vae")
    p.add_argument("--out", default="bokeh_trained.safetensors", help="adapter file name in models/bokeh_diffusion")
    p.add_argument("--out-dir", type=Path, help="folder for the adapter (default: ComfyUI's models/bokeh_diffusion)")
    p.add_argument("--resume", action="store_true", help="continue from <out>.state")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a training setting (JSON value)")
    p.add_argument("--check", action="store_true", help="tiny random models instead of FLUX (a quick dry run)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU")
    return p


def settings(pairs, flavour: str) -> dict:
    out = {"flavour": flavour}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair!r}: expected NAME=VALUE")
        try:
            out[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[name.strip()] = value
    return out


def models(args):
    """(model, clip, vae, base name) from ComfyUI's loaders, or tiny random ones with --check."""
    if args.check:
        from ..fixtures import tiny_models
        from ..fixtures.test_nodes import tiny_nodes

        return tiny_models.tiny_flux(0), tiny_nodes.TinyTextEncoder("tiny"), tiny_models.tiny_vae(0), "tiny random FLUX (--check)"
    missing = [flag for flag, v in (("--unet", args.unet), ("--t5", args.t5), ("--clip-l", args.clip_l), ("--vae", args.vae)) if not v]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)} (file names in ComfyUI's model folders), or use --check")
    import nodes

    model = nodes.UNETLoader().load_unet(args.unet, args.weight_dtype)[0]
    clip = nodes.DualCLIPLoader().load_clip(args.t5, args.clip_l, "flux")[0]
    vae = nodes.VAELoader().load_vae(args.vae)[0]
    return model, clip, vae, args.unet


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    inprocess.boot(cpu=args.cpu or args.check)
    inprocess.load_pack_quietly(logging.INFO)
    import folder_paths
    from tqdm import tqdm

    from ..training import data
    from ..training import recipe as recipe_mod
    from ..training import trainer as trainer_mod

    try:
        recipe = recipe_mod.Recipe.from_dict(settings(args.set, args.flavour))
        samples = data.from_folder(args.folder, args.size) if args.folder else data.from_manifest(args.manifest, args.size)
        model, clip, vae, base = models(args)
        trainer = trainer_mod.Trainer(model, vae, clip, samples, recipe, base=base)
        out = (args.out_dir or Path(folder_paths.get_folder_paths("bokeh_diffusion")[0])) / Path(args.out).name
        if args.resume:
            trainer.resume(out)
        log.info("Training on %d samples (%d sharp with depth, %d with K) into %s", len(samples),
                 sum(s.sharp for s in samples), sum(s.k is not None for s in samples), out)
        bar = tqdm(total=recipe.steps, initial=trainer.step, unit="step")
        log_path = out.with_name(out.name + ".loss.csv")
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", newline="") as f:
            writer = csv.writer(f)
            if f.tell() == 0:
                writer.writerow(["step", "loss", "batch", "lr"])

            def progress(step, total, loss):
                writer.writerow([step, f"{loss:.6f}", trainer.kinds[-1], f"{trainer.scheduler.get_last_lr()[0]:.3g}"])
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")

            trainer.run(out=out, progress=progress)
        bar.close()
        log.info("Saved %s (%d steps); loss log %s", out, trainer.step, log_path)
    except BokehError as e:
        log.error("%s", e)
        return 2
    return 0

