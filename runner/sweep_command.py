"""Headless blur sweep: runs the bundled grounded-sweep workflow in-process through ComfyUI.

    python scripts/bokeh_sweep.py --prompt "a cat on a sofa" --targets "0, 8, 16, 28"
    python scripts/bokeh_sweep.py --photo me.jpg --targets "1, 10, 20, 30"   # bokeh on a photo
    python scripts/bokeh_sweep.py --check          # tiny random models: proves the install
    python scripts/bokeh_sweep.py --servers http://127.0.0.1:8188,http://127.0.0.1:8189   # one ComfyUI per GPU

Models are found in models/ of this clone (or --models; the ComfyUI's own models when the pack
is installed in its custom_nodes), in ComfyUI's model folders and its extra_model_paths.yaml, or
given as paths. Every option is checked before anything loads (runner/args.py). Writes the
images (K in each name), a contact sheet and the blur-meter report to a new folder.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path

from ..sweep.levels import parse_levels
from . import args as sweep_args
from . import files as sweep_files
from . import inprocess, workflow_api
from .args import DEFAULT_TARGETS, PHOTO_SIZES, PHOTO_TARGETS
from .model_files import ADAPTER, AE, CLIP_L, FLUX_UNET, KONTEXT_UNET, PHOTO_ADAPTER, T5, where_to_get

REPO = Path(__file__).resolve().parent.parent

WORKFLOW = REPO / "workflows" / "bokeh_grounded_sweep.json"
CKPT_WORKFLOW = REPO / "workflows" / "bokeh_grounded_sweep_checkpoint.json"
PHOTO_WORKFLOW = REPO / "workflows" / "bokeh_photo_stack.json"
MODEL_FOLDERS = ("diffusion_models", "text_encoders", "vae", "checkpoints", "bokeh_diffusion")

LOADERS = {  # class_type -> [(input name, model folder, argparse dest)]
    "UNETLoader": [("unet_name", "diffusion_models", "unet")],  # "kontext" with --photo (see main)
    "DualCLIPLoader": [("clip_name1", "text_encoders", "t5"), ("clip_name2", "text_encoders", "clip_l")],
    "VAELoader": [("vae_name", "vae", "vae")],
    "CheckpointLoaderSimple": [("ckpt_name", "checkpoints", "checkpoint")],
    "BokehAdapterLoader": [("adapter_name", "bokeh_diffusion", "adapter")],
}


def parse_args(argv=None):
    """The options as parsed (unchecked: main checks them); see runner/args.py."""
    return sweep_args.parser().parse_args(argv)


def resolve_models(prompt, args, folder_paths, models_dir: Path | None = None) -> list[str]:
    """Point each loader at the user's file; return a line per missing file: where it goes (the
    folder of ``models_dir``, else the ComfyUI's folder of that kind under its current name) and
    where that file comes from."""
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
                        missing.append(f"  {given}: ComfyUI does not list it in {folder} (wrong extension?)")
                else:
                    missing.append(f"  {given}: no such file ({where_to_get(path.name, folder)})")
                continue
            node["inputs"][name] = given
            if folder_paths.get_full_path(folder, given) is None:
                missing.append(f"  {given}\n      goes in: {model_folder(folder, folder_paths, models_dir)}\n"
                               f"      get it: {where_to_get(given, folder)}")
    return missing


def model_folder(folder: str, folder_paths, models_dir: Path | None) -> str:
    """Where a missing file of ``folder`` goes: ``models_dir/folder`` (made, so the user sees it),
    else the first of the ComfyUI's folders of that kind that has the current name
    (diffusion_models, not the legacy unet)."""
    if models_dir is not None:
        (models_dir / folder).mkdir(parents=True, exist_ok=True)
        return str(models_dir / folder)
    paths = folder_paths.get_folder_paths(folder)
    return next((p for p in paths if Path(p).name == folder), paths[0] if paths else "models/" + folder)


def use_model_folders(args, folder_paths, root: Path) -> Path | None:
    """The model folders of this run, through ComfyUI's own mechanisms: the host's
    extra_model_paths.yaml (read as ComfyUI's main.py reads it), and, unless the pack is installed
    in that ComfyUI's custom_nodes (then its models are the user's), ``--models`` or models/ of
    this clone as the first folder of each kind (an extra_model_paths.yaml entry with
    is_default does the same). Returns that folder, or None."""
    import utils.extra_config

    yaml_path = root / "extra_model_paths.yaml"
    if yaml_path.is_file():
        utils.extra_config.load_extra_path_config(str(yaml_path))
    installed = REPO.parent.name == "custom_nodes" and REPO.parent.parent.resolve() == root.resolve()
    if args.models is None and installed:
        return None
    base = Path(args.models).expanduser().resolve() if args.models else REPO / "models"
    for folder in MODEL_FOLDERS:
        folder_paths.add_model_folder_path(folder, str(base / folder), is_default=True)
    return base


def remote_prompt(args, node_classes) -> dict:
    """The sweep's API prompt for --servers, from a server's node definitions. Models are names
    in each server's model folders (a path on this machine means nothing there); --check swaps
    them for the test-only tiny nodes, which the servers must have, and the adapter by name."""
    from . import shard as shard_sweep

    prompt = workflow_api.ui_to_api(workflow_api.load(CKPT_WORKFLOW if args.checkpoint else WORKFLOW), node_classes)
    configure(prompt, args)
    if args.check:
        from ..fixtures.test_nodes.tiny_nodes import swap_for_tiny_models

        prompt = swap_for_tiny_models(prompt)
    missing = []
    for node in prompt.values():
        for name, folder, dest in LOADERS.get(node["class_type"], []):
            given = getattr(args, dest)
            if given is not None and ("/" in given or os.sep in given):
                raise shard_sweep.SweepError(f"--{dest.replace('_', '-')} {given}: with --servers, give the name of a "
                                             f"file in each server's models/{folder}, not a path")
            if given is not None:
                node["inputs"][name] = given
            node_def = node_classes.get(node["class_type"])
            offered = node_def.options(name) if hasattr(node_def, "options") else None
            if offered is not None and node["inputs"].get(name) not in offered:
                missing.append((node["inputs"].get(name), folder))
    if missing:
        raise shard_sweep.MissingModels(missing)
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
    set_input("BokehPivotBatch", pivot_blur=args.pivot, targets=args.targets or DEFAULT_TARGETS, grounding=args.grounding,
              grounding_steps=args.grounding_steps)


class _QuietTracebacks(logging.Filter):
    """Leaves out ComfyUI's own error log of a failed node (execution.py logs the exception and
    its traceback): the runner prints the error in one line, with the traceback only when it is
    not one of the pack's errors (a bug, not a user's mistake)."""

    def filter(self, record):
        return not (record.levelno >= logging.ERROR and record.module == "execution")


class _CtrlC:
    """While a prompt runs: the first Ctrl-C stops it as ComfyUI's own interrupt does
    (comfy.model_management.interrupt_current_processing: the sampler stops at its next model
    layer or step, the executor ends the prompt with "execution_interrupted"); a second one stops
    at once. asyncio.run leaves a handler of ours in place (it only replaces Python's default)."""

    def __enter__(self):
        import comfy.model_management as mm
        import comfy.utils

        self.pressed = False
        if getattr(comfy.utils, "PROGRESS_BAR_HOOK", None) is None:  # main.py's hook checks at every step too
            comfy.utils.set_progress_bar_global_hook(lambda *a, **k: mm.throw_exception_if_processing_interrupted())
            self.hook = True
        else:
            self.hook = False

        def handler(signum, frame):
            if self.pressed:
                raise KeyboardInterrupt
            self.pressed = True
            print("\nStopping the sampler (Ctrl-C again to stop at once) ...", file=sys.stderr, flush=True)
            mm.interrupt_current_processing(True)

        self.previous = signal.signal(signal.SIGINT, handler)
        self.quiet = _QuietTracebacks()
        for h in logging.getLogger().handlers:
            h.addFilter(self.quiet)
        return self

    def __exit__(self, *exc):
        import comfy.utils

        signal.signal(signal.SIGINT, self.previous)
        if self.hook:
            comfy.utils.set_progress_bar_global_hook(None)
        for h in logging.getLogger().handlers:
            h.removeFilter(self.quiet)
        return False


def stopped_message(out_dir: Path, made: bool, where: str = "") -> str:
    """What a stopped run tells the user: what is in its folder and what is not; the folder is
    removed when the run ``made`` it and it stayed empty."""
    written, missing = sweep_files.what_was_written(out_dir)
    if not written:
        if made and out_dir.is_dir():
            out_dir.rmdir()
        return f"Stopped{where}. Nothing was written."
    return (f"Stopped{where}. Written to {out_dir} before the stop: {', '.join(written)}. "
            f"Not written: {', '.join(missing) or '-'}.")


def failure_message(errors: dict) -> str:
    """One line for a prompt ComfyUI refused or a node that failed; the traceback first when the
    error is not one of the pack's (BokehError: a message made for the user)."""
    from . import client as comfy_client

    if "exception_type" not in errors:  # refused by validation
        return "ComfyUI refused the graph: " + comfy_client.prompt_error(errors)
    kind = str(errors.get("exception_type", "")).rsplit(".", 1)[-1]  # no module path (a temp folder)
    line = f"ComfyUI stopped in node {errors.get('node_id')}: {kind}: {errors.get('exception_message', '').strip()}"
    if kind.startswith("Bokeh"):
        return line
    return "".join(errors.get("traceback") or []) + line


def take_savers(prompt) -> tuple[dict, list, int]:
    """Take the graph's SaveImage nodes out of ``prompt``: the run's folder is written by
    runner/files.py write_sweep, as a run over servers writes it. Returns the file prefixes
    ("sweep", "sheet": the SaveImage prefixes' last part), the link [node, output] that gives
    the sweep's images, and the contact sheet's columns."""
    sheets = workflow_api.find(prompt, "BokehContactSheet")
    prefixes, source = {"sheet": "sheet"}, None
    for key in workflow_api.find(prompt, "SaveImage"):
        node = prompt.pop(key)
        prefix = str(node["inputs"]["filename_prefix"]).split("/")[-1]
        if node["inputs"]["images"][0] in sheets:
            prefixes["sheet"] = prefix
        else:
            prefixes["sweep"], source = prefix, node["inputs"]["images"]
    if source is None:
        raise RuntimeError("the sweep graph saves no images (a SaveImage fed by the sweep is expected)")
    columns = int(prompt[sheets[0]]["inputs"].get("columns", 0)) if sheets else 0
    return prefixes, source, columns


def local_ks(args, parse_levels) -> tuple[list[float], int | None]:
    """K per image of a local run and the pivot's row (None for a photo stack)."""
    if args.photo:
        return parse_levels(args.targets or PHOTO_TARGETS, "targets"), None
    return [args.pivot, *parse_levels(args.targets or DEFAULT_TARGETS, "targets")], 0


def main(argv=None) -> int:
    state = {}
    try:
        return _main(argv, state)
    except KeyboardInterrupt:  # before the prompt ran, or a second Ctrl-C
        out_dir = state.get("out")
        print("\n" + (stopped_message(out_dir, state["made"]) if out_dir is not None else "Stopped. Nothing was written."),
              file=sys.stderr)
        return 130


def _main(argv, state) -> int:
    from . import shard as shard_sweep

    args = sweep_args.parse(argv)  # exits 2 with one line on a mistake
    out_dir = sweep_files.run_folder(args.output)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.servers:  # the servers run the graph: no ComfyUI in this process
        args.output = str(out_dir)
        return shard_sweep.main(args, lambda node_classes: remote_prompt(args, node_classes))
    import torch

    root = inprocess.boot(cpu=args.check or args.cpu or not torch.cuda.is_available())
    inprocess.load_pack_quietly()
    import folder_paths

    models_dir = use_model_folders(args, folder_paths, root)
    if args.photo:
        args.unet = args.kontext or KONTEXT_UNET
        args.adapter = args.adapter or PHOTO_ADAPTER
        # The photo's folder becomes ComfyUI's input folder for this run (LoadImage reads it by name).
        folder_paths.set_input_directory(str(Path(args.photo).expanduser().parent.resolve()))
    for dest, default in (("unet", FLUX_UNET), ("t5", T5), ("clip_l", CLIP_L), ("vae", AE), ("adapter", ADAPTER)):
        setattr(args, dest, getattr(args, dest) or default)
    workflow = workflow_api.load(PHOTO_WORKFLOW if args.photo else CKPT_WORKFLOW if args.checkpoint else WORKFLOW)
    prompt = workflow_api.ui_to_api(workflow)
    configure(prompt, args)
    if args.check:
        import tempfile

        from ..fixtures import tiny_models
        from ..fixtures.test_nodes import tiny_nodes

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
        prompt = tiny_nodes.swap_for_tiny_models(prompt)
        print(f"--check: running the {'photo-stack' if args.photo else 'grounded-sweep'} graph on TINY RANDOM models. The images are noise; "
              "this only proves that ComfyUI, the pack and the graph work on this machine.", flush=True)
    else:
        missing = resolve_models(prompt, args, folder_paths, models_dir)
        if missing:
            print("Missing model files:\n" + "\n".join(missing), file=sys.stderr)
            print("\nPut them in the folders above (or pass paths: --unet, --t5, --clip-l, --vae, --checkpoint, "
                  "--adapter, or a folder: --models), or try the installation with --check.", file=sys.stderr)
            return 2

    state["made"] = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    state["out"] = out_dir
    prefixes, source, columns = take_savers(prompt)
    os.environ.pop("TQDM_DISABLE", None)
    start = time.time()
    with _CtrlC():
        result = inprocess.run_prompt(prompt)
    stop = next((data for event, data in result.messages if event == "execution_interrupted"), None)
    if stop is not None:
        print("\n" + stopped_message(out_dir, state["made"], f" during {stop.get('node_type')} (node {stop.get('node_id')})"), file=sys.stderr)
        return 130
    if not result.ok:
        print(failure_message(result.errors), file=sys.stderr)
        return 1
    ks, pivot_row = local_ks(args, parse_levels)
    images = torch.cat(list(result.outputs[source[0]][source[1]]))  # what the graph's sweep SaveImage was given
    files, report = sweep_files.write_sweep(out_dir, images, ks, pivot_row, prefixes, columns,
                                            sweep_files.CHECK_NOTE if args.check else "", [prompt])
    print(f"\nDone in {time.time() - start:.1f} s. Wrote to {out_dir}:\n  " + "\n  ".join(files))
    print("\n" + report)
    return 0


