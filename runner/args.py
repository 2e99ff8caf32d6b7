"""The headless runner's command line (scripts/bokeh_sweep.py): its options, and the check of every
value before anything loads. Values the nodes take are checked by the nodes' own checks
(sweep/checks.py, sweep/levels.py, loaded without ComfyUI), the ranges of the widgets they fill
are the widgets' (KSampler, FluxGuidance, EmptySD3LatentImage, Bokeh Pivot Batch). A mistake is
one line naming the option, what was given and what is accepted; exit code 2."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from .model_files import ADAPTER, AE, CLIP_L, FLUX_CKPT, FLUX_UNET, KONTEXT_UNET, PHOTO_ADAPTER, T5

DEFAULT_PROMPT = "a portrait of a woman in a sunlit garden, roses in the foreground and background, 35mm photograph"
DEFAULT_TARGETS = "0, 4, 8, 12, 18, 28"
PHOTO_TARGETS = "1, 6, 11, 16, 21, 26, 30"  # the reference's stack (bokehdepth-photo.md section 3)
PHOTO_SIZES = {"square": "512 x 512 (reference)", "aspect": "aspect kept, about 0.26 MP"}  # nodes/photo.py
DEFAULT_OUTPUT = Path("output") / "bokeh_sweep"
MODEL_OPTIONS = {"unet": FLUX_UNET, "t5": T5, "clip_l": CLIP_L, "vae": AE, "checkpoint": None, "adapter": None, "kontext": KONTEXT_UNET}
# The widgets the runner fills (ComfyUI refuses values outside them when the prompt is queued).
MAX_STEPS = 10000  # KSampler steps, Pivot Batch grounding_steps
MAX_SEED = 0xFFFFFFFFFFFFFFFF  # KSampler seed
MAX_GUIDANCE = 100.0  # FluxGuidance
MAX_SIDE = 16384  # EmptySD3LatentImage (nodes.MAX_RESOLUTION)
SIDE_STEP = 16  # EmptySD3LatentImage's step: FLUX works on 2 x 2 patches of the 8x smaller latent
PHOTO_FORMATS = ("PNG", "JPEG", "WEBP")

DESCRIPTION = """Headless blur sweep with the Bokeh adapter on FLUX.1: renders the bundled grounded-sweep
workflow (a pivot image and one image per target blur level, the same scene) through ComfyUI in
this process, or shares it out over running ComfyUIs (--servers), or puts bokeh on a photo at
each blur level (--photo). Writes the images (K in each name), a contact sheet, blur_meter.txt
and blur_plot.png into a new folder."""

EPILOG = """examples:
  bokeh_sweep.py --prompt "a cat on a sofa" --targets "0, 8, 16, 28"
  bokeh_sweep.py --photo me.jpg --targets "1, 10, 20, 30"
  bokeh_sweep.py --check                      # tiny random models: proves the install (images are noise)
  bokeh_sweep.py --servers http://127.0.0.1:8188,http://127.0.0.1:8189

exit codes: 0 written, 1 the run failed, 2 a mistake in the command line or missing model files,
130 stopped with Ctrl-C."""


class UsageError(Exception):
    """A value on the command line that cannot be used; str() is the one line to print."""

    def __init__(self, option: str, given, accepted: str):
        if isinstance(given, (int, float)):
            shown = f"{given:g}"
        else:
            shown = repr(given if len(str(given)) <= 200 else str(given)[:197] + "...")
        super().__init__(f"{option} {shown}: {accepted}")


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, not argparse's usage block
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 1 <= value <= 86400:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 1 to 86400")
    return value


def parser() -> Parser:
    p = Parser(prog="bokeh_sweep.py", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt", metavar="TEXT", default=DEFAULT_PROMPT, help=f"the scene (default: {DEFAULT_PROMPT!r})")
    p.add_argument("--pivot", metavar="K", type=float, default=15.0, help="blur level K of the pivot image, 0 (sharp) to 30 (default: 15)")
    p.add_argument("--targets", metavar="LEVELS", default=None, help=f"target blur levels, e.g. '0, 8, 16' (default: '{DEFAULT_TARGETS}'; "
                   f"with --photo '{PHOTO_TARGETS}')")
    p.add_argument("--grounding", metavar="SHARE", type=float, default=0.8, help="share of the steps grounded on the pivot, 0 to 1 (default: 0.8, "
                   "24 of 30 steps)")
    p.add_argument("--grounding-steps", metavar="N", type=int, default=-1, help="exact number of grounded steps, wins over the share when set "
                   "(default: -1, use --grounding)")
    p.add_argument("--steps", metavar="N", type=int, default=None, help="sampler steps (default: 30; with --photo 50)")
    p.add_argument("--seed", metavar="N", type=int, default=65578, help="noise seed (default: 65578)")
    p.add_argument("--guidance", metavar="G", type=float, default=None, help="FLUX guidance (default: 3.0; with --photo 7.0)")
    p.add_argument("--width", metavar="PX", type=int, default=512, help=f"image width, a multiple of {SIDE_STEP} (default: 512)")
    p.add_argument("--height", metavar="PX", type=int, default=512, help=f"image height, a multiple of {SIDE_STEP} (default: 512)")
    p.add_argument("--output", metavar="DIR", default=None, help=f"an empty or new folder for this run's files (default: a new folder "
                   f"{DEFAULT_OUTPUT}/<date>_<time> per run)")
    p.add_argument("--models", metavar="DIR", default=None, help="folder of model files, in ComfyUI's subfolders (diffusion_models, "
                   "text_encoders, vae, checkpoints, bokeh_diffusion) (default: models/ in this clone; the ComfyUI's "
                   "own models when the pack is installed in its custom_nodes)")
    p.add_argument("--unet", metavar="FILE", default=None, help=f"FLUX.1-dev diffusion model: a file name in diffusion_models or a path (default: {FLUX_UNET})")
    p.add_argument("--t5", metavar="FILE", default=None, help=f"T5-XXL text encoder: a name in text_encoders or a path (default: {T5})")
    p.add_argument("--clip-l", metavar="FILE", dest="clip_l", default=None, help=f"CLIP-L text encoder: a name in text_encoders or a path (default: {CLIP_L})")
    p.add_argument("--vae", metavar="FILE", default=None, help=f"FLUX VAE: a name in vae or a path (default: {AE})")
    p.add_argument("--checkpoint", metavar="FILE", default=None, help=f"a single-file FLUX checkpoint instead of the four files above "
                   f"(e.g. {FLUX_CKPT}): a name in checkpoints or a path")
    p.add_argument("--adapter", metavar="FILE", default=None, help=f"Bokeh adapter: a name in bokeh_diffusion or a path (default: {ADAPTER}; "
                   f"with --photo {PHOTO_ADAPTER})")
    p.add_argument("--photo", metavar="FILE", default=None, help="bokeh on this photo (a PNG, JPEG or WebP file): one image per target blur "
                   "level with the BokehDepth photo adapter on FLUX.1 Kontext; --prompt, --pivot and grounding do not apply")
    p.add_argument("--kontext", metavar="FILE", default=None, help=f"with --photo: FLUX.1 Kontext [dev] diffusion model, a name or a path (default: {KONTEXT_UNET})")
    p.add_argument("--photo-size", dest="photo_size", choices=sorted(PHOTO_SIZES), default="square",
                   help="with --photo: 'square' renders 512 x 512 as the reference does, 'aspect' keeps the photo's "
                   "aspect at about 0.26 MP (default: square)")
    p.add_argument("--check", action="store_true", help="run the same graph on tiny random models: proves the install; "
                   "the images are noise")
    p.add_argument("--cpu", action="store_true", help="run on the CPU (automatic when no GPU is usable; --check always does)")
    p.add_argument("--servers", metavar="URLS", default=None, help="URL[,URL...] of running ComfyUIs with this pack and the same models: "
                   "the targets are shared out over them (models are names in their model folders; --check needs "
                   "the test-only tiny nodes there: scripts/tiny_server.py)")
    p.add_argument("--stall-timeout", metavar="SECONDS", dest="stall_timeout", type=_seconds, default=600.0,
                   help="with --servers: give a server's shard to another server when its run shows no progress "
                   "(no step, no node, no output) for this many seconds; allow for a model load (default: 600)")
    return p


def _whole(value: int, option: str, low: int, high: int, what: str) -> None:
    if not low <= value <= high:
        raise UsageError(option, value, f"expected {what} from {low} to {high}")


def _pack_check(option: str, given, errors, check_fn, *values):
    """``check_fn(*values)``, one of the nodes' checks; its message, after the option and value."""
    try:
        return check_fn(*values)
    except errors as e:
        raise UsageError(option, given, str(e)) from None


def _model_path(option: str, given: str) -> None:
    """A model given as a path (not a bare name) must be a regular file."""
    path = Path(given).expanduser()
    if not (path.is_absolute() or os.sep in given or "/" in given):
        return
    if not path.exists():
        raise UsageError(option, given, "no such file; give a path to the model file, or its name in the model folder")
    if not path.is_file():
        raise UsageError(option, given, "is not a regular file (a folder?); give the model file itself")


def _photo(given: str) -> None:
    from PIL import Image, UnidentifiedImageError

    path = Path(given).expanduser()
    if not path.is_file():
        raise UsageError("--photo", given, "no such file; --photo takes a PNG, JPEG or WebP file" if not path.exists()
                         else "is not a regular file; --photo takes a PNG, JPEG or WebP file")
    try:
        with Image.open(path) as img:
            fmt = img.format
            img.verify()  # reads the whole file's structure without decoding it
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError):
        raise UsageError("--photo", given, "is not an image that can be read; --photo takes a PNG, JPEG or WebP file") from None
    if fmt not in PHOTO_FORMATS:
        raise UsageError("--photo", given, f"is a {fmt} image; --photo takes a PNG, JPEG or WebP file")


def _output(given: str | None) -> None:
    if given is None:
        return
    path = Path(given).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError("--output", given, "is a file; give an empty or new folder")
    if path.is_dir() and any(path.iterdir()):
        raise UsageError("--output", given, "holds files already (an earlier run?); give an empty or new folder, or leave "
                         f"--output out: each run then gets its own new folder under {DEFAULT_OUTPUT}")


def check(args) -> None:
    """Every value, before anything loads; UsageError for the first that cannot be used.
    ``pack_module(name)`` imports a pure module of the pack (sweep.checks, sweep.levels)."""
    from ..attention import k_levels
    from ..attention.errors import BokehError
    from ..sweep import checks
    from ..sweep import levels as levels_mod
    flavour, k_range = k_levels.PHOTO if args.photo else k_levels.TEXT, k_levels.K_RANGE
    if args.servers is not None:
        from . import client as comfy_client

        try:
            comfy_client.parse_servers(args.servers)
        except ValueError as e:
            raise UsageError("--servers", args.servers, str(e)) from None
    if args.servers and args.photo:
        raise UsageError("--photo", args.photo, "--servers shares out a grounded sweep (a pivot batch); --photo runs "
                         "here: leave one of them out")
    if args.check and not args.servers:
        for dest in MODEL_OPTIONS:
            if getattr(args, dest) is not None:
                option = "--" + dest.replace("_", "-")
                raise UsageError(option, getattr(args, dest), "--check runs on tiny random models and reads no model "
                                 f"file; leave {option} out (or leave --check out to use it)")
    if not (math.isfinite(args.pivot) and 0 <= args.pivot <= k_range):
        raise UsageError("--pivot", args.pivot, f"expected a blur level from 0 (sharp) to {k_range:g} (strongest blur)")
    _pack_check("--pivot", args.pivot, BokehError, checks.check_blur, args.pivot, "pivot blur")
    if args.targets is not None:
        levels = _pack_check("--targets", args.targets, BokehError, levels_mod.parse_levels, args.targets, "targets")
        if not levels:
            raise UsageError("--targets", args.targets, "lists no blur level; e.g. --targets '0, 8, 16, 28'")
        for k in levels:
            _pack_check("--targets", args.targets, BokehError, checks.check_blur, k, "target blur level", flavour)
    _pack_check("--grounding", args.grounding, BokehError, checks.check_fraction, args.grounding, "The grounding share")
    if not -1 <= args.grounding_steps <= MAX_STEPS:
        raise UsageError("--grounding-steps", args.grounding_steps, f"expected -1 (use --grounding) or a number of steps from 0 to {MAX_STEPS}")
    if args.steps is not None:
        _whole(args.steps, "--steps", 1, MAX_STEPS, "a number of steps")
    _whole(args.seed, "--seed", 0, MAX_SEED, "a seed")
    if args.guidance is not None and not (math.isfinite(args.guidance) and 0 <= args.guidance <= MAX_GUIDANCE):
        raise UsageError("--guidance", args.guidance, f"expected a FLUX guidance from 0 to {MAX_GUIDANCE:g} (3.0 is usual)")
    for option, value in (("--width", args.width), ("--height", args.height)):
        if not SIDE_STEP <= value <= MAX_SIDE or value % SIDE_STEP:
            raise UsageError(option, value, f"expected a multiple of {SIDE_STEP} from {SIDE_STEP} to {MAX_SIDE} "
                             f"(FLUX renders in {SIDE_STEP}-pixel blocks; e.g. {max(SIDE_STEP, min(MAX_SIDE, value // SIDE_STEP * SIDE_STEP))})")
    if args.photo and not args.servers:
        _photo(args.photo)
    for dest in MODEL_OPTIONS:
        given = getattr(args, dest)
        if given is not None and not args.servers:
            _model_path("--" + dest.replace("_", "-"), given)
        elif given is not None and ("/" in given or os.sep in given):
            raise UsageError("--" + dest.replace("_", "-"), given, "with --servers, give the name of a file in each "
                             "server's model folder, not a path")
    if args.models is not None and not Path(args.models).expanduser().is_dir():
        raise UsageError("--models", args.models, "is not a folder; give the folder that holds diffusion_models, text_encoders, ...")
    _output(args.output)


def parse(argv=None, check_args: bool = True):
    """The parsed and checked arguments; prints the one line and exits 2 on a mistake."""
    p = parser()
    args = p.parse_args(argv)
    if check_args:
        try:
            check(args)
        except UsageError as e:
            print(f"{p.prog}: {e}", file=sys.stderr)
            raise SystemExit(2) from None
    return args
