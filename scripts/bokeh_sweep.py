"""Headless blur sweep: runs the bundled grounded-sweep workflow in-process through ComfyUI.

    python scripts/bokeh_sweep.py --prompt "a cat on a sofa" --targets "0, 8, 16, 28"
    python scripts/bokeh_sweep.py --photo me.jpg --targets "1, 10, 20, 30"   # bokeh on a photo
    python scripts/bokeh_sweep.py --check          # tiny random models: proves the install
    python scripts/bokeh_sweep.py --servers http://127.0.0.1:8188,http://127.0.0.1:8189   # one ComfyUI per GPU

Models are found through ComfyUI's model folders (models/diffusion_models, text_encoders,
vae, bokeh_diffusion, and extra_model_paths.yaml), or given as paths. Writes the images, a
contact sheet and the blur-meter report to --output.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import inprocess  # noqa: E402
import workflow_api  # noqa: E402
from model_files import ADAPTER, AE, CLIP_L, FLUX_CKPT, FLUX_UNET, KONTEXT_UNET, PHOTO_ADAPTER, T5, WHERE_TO_GET  # noqa: E402

WORKFLOW = REPO / "workflows" / "bokeh_grounded_sweep.json"
CKPT_WORKFLOW = REPO / "workflows" / "bokeh_grounded_sweep_checkpoint.json"
PHOTO_WORKFLOW = REPO / "workflows" / "bokeh_photo_stack.json"
PHOTO_TARGETS = "1, 6, 11, 16, 21, 26, 30"  # the reference's stack (bokehdepth-photo.md section 3)
PHOTO_SIZES = {"square": "512 x 512 (reference)", "aspect": "aspect kept, about 0.26 MP"}  # nodes/photo.py

LOADERS = {  # class_type -> [(input name, model folder, argparse dest)]
    "UNETLoader": [("unet_name", "diffusion_models", "unet")],  # "kontext" with --photo (see main)
    "DualCLIPLoader": [("clip_name1", "text_encoders", "t5"), ("clip_name2", "text_encoders", "clip_l")],
    "VAELoader": [("vae_name", "vae", "vae")],
    "CheckpointLoaderSimple": [("ckpt_name", "checkpoints", "checkpoint")],
    "BokehAdapterLoader": [("adapter_name", "bokeh_diffusion", "adapter")],
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--prompt", default="a portrait of a woman in a sunlit garden, roses in the foreground and background, 35mm photograph")
    p.add_argument("--pivot", type=float, default=15.0, help="pivot blur level K (0..30)")
    p.add_argument("--targets", default=None, help="target blur levels (default '0, 4, 8, 12, 18, 28'; with --photo "
                   f"'{PHOTO_TARGETS}')")
    p.add_argument("--grounding", type=float, default=0.8, help="share of the steps grounded on the pivot (0.8 of 30 = 24)")
    p.add_argument("--grounding-steps", type=int, default=-1, help="exact number of grounded steps; overrides --grounding (-1: use it)")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default 30; with --photo 50)")
    p.add_argument("--seed", type=int, default=65578)
    p.add_argument("--guidance", type=float, default=None, help="FLUX guidance (default 3.0; with --photo 7.0)")
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--output", default="output/bokeh_sweep", help="folder for images, contact sheet and report")
    p.add_argument("--unet", default=FLUX_UNET, help="FLUX.1-dev diffusion model: a name in models/diffusion_models or a path")
    p.add_argument("--t5", default=T5, help="T5-XXL text encoder: name in models/text_encoders or a path")
    p.add_argument("--clip-l", dest="clip_l", default=CLIP_L, help="CLIP-L text encoder: name or path")
    p.add_argument("--vae", default=AE, help="FLUX VAE: name in models/vae or a path")
    p.add_argument("--checkpoint", default=None, help=f"use a single-file FLUX checkpoint instead (e.g. {FLUX_CKPT}): name or path")
    p.add_argument("--adapter", default=None, help=f"Bokeh adapter: name in models/bokeh_diffusion or a path (default {ADAPTER}; "
                   f"with --photo {PHOTO_ADAPTER})")
    p.add_argument("--photo", default=None, help="bokeh on this photo (a PNG/JPEG path): one image per target blur level "
                   "with the BokehDepth photo adapter on FLUX.1 Kontext; --prompt, --pivot and grounding do not apply")
    p.add_argument("--kontext", default=KONTEXT_UNET, help="with --photo: FLUX.1 Kontext [dev] diffusion model, name or path")
    p.add_argument("--photo-size", dest="photo_size", choices=sorted(PHOTO_SIZES), default="square",
                   help="with --photo: render at 512 x 512 as the reference does, or at the photo's aspect (about 0.26 MP)")
    p.add_argument("--check", action="store_true", help="run the same graph on tiny random models (images are noise)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU (automatic when no GPU is usable; --check always does)")
    p.add_argument("--servers", default=None, help="URL[,URL...] of running ComfyUIs with this pack and the same models: "
                   "the targets are shared out over them (models are names in their model folders; --check needs "
                   "the test-only tiny nodes there)")
    p.add_argument("--stall-timeout", dest="stall_timeout", type=_seconds, default=600.0,
                   help="with --servers: give a server's shard to another server when its run shows no progress "
                   "(no step, no node, no output) for this many seconds; allow for a model load")
    return p.parse_args(argv)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 1 <= value <= 86400:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 1 to 86400")
    return value


def resolve_models(prompt, args, folder_paths) -> list[str]:
    """Point each loader at the user's file; return a line per missing file."""
    missing = []
    for key, node in prompt.items():
        for name, folder, dest in LOADERS.get(node["class_type"], []):
            given = getattr(args, dest)
            if given is None:
                continue
            path = Path(given).expanduser()
            if path.is_absolute() or os.sep in given:
                if path.is_file():
                    # First in the folder list, so a same-named file in models/<folder> cannot win.
                    folder_paths.add_model_folder_path(folder, str(path.parent.resolve()), is_default=True)
                    node["inputs"][name] = path.name
                    found = folder_paths.get_full_path(folder, path.name)
                    if found is None or Path(found).resolve() != path.resolve():
                        missing.append(f"  {given}: ComfyUI does not list it in models/{folder} (wrong extension?)")
                else:
                    missing.append(f"  {given}: no such file ({WHERE_TO_GET[folder]})")
                continue
            node["inputs"][name] = given
            if folder_paths.get_full_path(folder, given) is None:
                where = folder_paths.get_folder_paths(folder)
                missing.append(f"  {given}\n      goes in: {where[0] if where else 'models/' + folder}\n      get it: {WHERE_TO_GET[folder]}")
    return missing


def remote_prompt(args, node_classes) -> dict:
    """The sweep's API prompt for --servers, from a server's node definitions. Models are names
    in each server's model folders (a path on this machine means nothing there); --check swaps
    them for the test-only tiny nodes, which the servers must have, and the adapter by name."""
    import shard_sweep

    prompt = workflow_api.ui_to_api(workflow_api.load(CKPT_WORKFLOW if args.checkpoint else WORKFLOW), node_classes)
    configure(prompt, args)
    if args.check:
        prompt = workflow_api.swap_for_tiny_models(prompt)
    for node in prompt.values():
        for name, folder, dest in LOADERS.get(node["class_type"], []):
            given = getattr(args, dest)
            if given is not None and ("/" in given or os.sep in given):
                raise shard_sweep.SweepError(f"--{dest.replace('_', '-')} {given}: with --servers, give the name of a "
                                             f"file in each server's models/{folder}, not a path")
            if given is not None:
                node["inputs"][name] = given
    return prompt


def configure(prompt, args):
    def set_input(kind, **values):
        for k in workflow_api.find(prompt, kind):
            prompt[k]["inputs"].update({name: v for name, v in values.items() if v is not None})

    set_input("KSampler", seed=args.seed, steps=args.steps)
    set_input("FluxGuidance", guidance=args.guidance)
    if args.photo:
        set_input("LoadImage", image=Path(args.photo).name)
        set_input("BokehBlurLevels", levels=args.targets or PHOTO_TARGETS)
        set_input("BokehPhotoResize", size=PHOTO_SIZES[args.photo_size])
        return
    set_input("CLIPTextEncode", text=args.prompt)
    set_input("EmptySD3LatentImage", width=args.width, height=args.height)
    set_input("ModelSamplingFlux", width=args.width, height=args.height)
    set_input("BokehApplyAdapter", blur_level=args.pivot)
    set_input("BokehPivotBatch", pivot_blur=args.pivot, targets=args.targets or "0, 4, 8, 12, 18, 28", grounding=args.grounding,
              grounding_steps=args.grounding_steps)


def use_photo(path: str, folder_paths) -> str | None:
    """Make ``path`` the photo LoadImage reads (its folder becomes ComfyUI's input folder for this
    run); returns why it cannot be used, or None."""
    photo = Path(path).expanduser()
    if not photo.is_file():
        return f"  {path}: no such file (--photo takes a PNG or JPEG)"
    folder_paths.set_input_directory(str(photo.parent.resolve()))
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    out_dir = Path(args.output).resolve()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.servers and args.photo:
        print("--servers shares out a grounded sweep (a pivot batch); --photo runs here: leave one of them out.", file=sys.stderr)
        return 2
    if args.servers:  # the servers run the graph: no ComfyUI in this process
        import shard_sweep

        return shard_sweep.main(args, lambda node_classes: remote_prompt(args, node_classes))
    import torch

    inprocess.boot(cpu=args.check or args.cpu or not torch.cuda.is_available())
    # ComfyUI logs its optional nodes' import failures (audio without torchaudio) as warnings
    # with tracebacks; they do not concern a blur sweep.
    logging.getLogger().setLevel(logging.ERROR)
    inprocess.load_pack()
    logging.getLogger().setLevel(logging.WARNING)
    import folder_paths

    if args.photo:
        args.unet = args.kontext
        args.adapter = args.adapter or PHOTO_ADAPTER
        problem = use_photo(args.photo, folder_paths)
        if problem:
            print(problem, file=sys.stderr)
            return 2
    args.adapter = args.adapter or ADAPTER
    workflow = workflow_api.load(PHOTO_WORKFLOW if args.photo else CKPT_WORKFLOW if args.checkpoint else WORKFLOW)
    prompt = workflow_api.ui_to_api(workflow)
    configure(prompt, args)
    if args.check:
        import tempfile

        import tiny_models
        import tiny_nodes

        tiny_nodes.register_test_nodes()
        cfg = tiny_models.TINY
        tmp = Path(tempfile.mkdtemp(prefix="bokeh_check_"))
        sd = tiny_models.random_adapter_sd(cfg["hidden_size"], range(cfg["depth"] + cfg["depth_single_blocks"]), seed=1)
        name = f"bokeh_check_tiny_random_{tmp.name}.safetensors"  # never the name of a user's real file
        if args.photo:  # the photo adapter as released: a torch zip, *_dof keys, module. prefix
            sd = {"module." + k.replace("_bokeh.", "_dof."): v for k, v in sd.items()}
            name = name.replace(".safetensors", ".bin")
        tiny_models.write_adapter(tmp, sd, name=name)
        for k in workflow_api.find(prompt, "BokehAdapterLoader"):
            prompt[k]["inputs"]["adapter_name"] = name
        prompt = workflow_api.swap_for_tiny_models(prompt)
        print(f"--check: running the {'photo-stack' if args.photo else 'grounded-sweep'} graph on TINY RANDOM models. The images are noise; "
              "this only proves that ComfyUI, the pack and the graph work on this machine.", flush=True)
    else:
        missing = resolve_models(prompt, args, folder_paths)
        if missing:
            print("Missing model files:\n" + "\n".join(missing), file=sys.stderr)
            print("\nPut them in the folders above (or pass paths: --unet, --t5, --clip-l, --vae, --checkpoint, "
                  "--adapter), or try the installation with --check.", file=sys.stderr)
            return 2

    out_dir.mkdir(parents=True, exist_ok=True)
    folder_paths.set_output_directory(str(out_dir))
    for k in workflow_api.find(prompt, "SaveImage"):
        prefix = prompt[k]["inputs"]["filename_prefix"]
        prompt[k]["inputs"]["filename_prefix"] = prefix.split("/")[-1]
    os.environ.pop("TQDM_DISABLE", None)
    start = time.time()
    result = inprocess.run_prompt(prompt)
    if not result.ok:
        err = result.errors
        print(f"ComfyUI stopped: {err.get('exception_type', '')}: {err.get('exception_message') or err}", file=sys.stderr)
        return 1
    (meter,) = workflow_api.find(prompt, "BokehBlurMeter")
    report = result.outputs[meter][0][0]
    (out_dir / "blur_meter.txt").write_text(report + "\n")
    import numpy as np
    from PIL import Image

    plot = result.outputs[meter][2][0][0]
    Image.fromarray((plot.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)).save(out_dir / "blur_plot.png")
    files = sorted(p.name for p in out_dir.glob("*.png"))
    print(f"\nDone in {time.time() - start:.1f} s. Wrote to {out_dir}:\n  " + "\n  ".join(files + ["blur_meter.txt"]))
    print("\n" + report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
