"""Writes what the frontend reads of the pack's nodes, from the live V3 schemas:
- locales/en/nodeDefs.json: labels, descriptions and tooltips, so the frontend shows the same
  labels whether it reads V3 display names (newer frontends) or only the locale file (ComfyUI
  0.3.75's frontend 1.32.9);
- web/docs/<NodeId>.md: the node documentation panel's page (what the node does, a small
  example, then its inputs and outputs as tables made from the same schema).

    python scripts/dev.py tools.make_locales      # in the venv of scripts/setup.sh

tests/test_frontend_files.py checks that the committed files equal what this writes.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..runner import inprocess

OUT = inprocess.REPO / "locales" / "en" / "nodeDefs.json"
DOCS = inprocess.REPO / "web" / "docs"

# Per node: what it is for, and a small example (Markdown). The tables come from the schema.
PAGES = {
    "BokehAdapterLoader": (
        "Loads a Bokeh adapter from `models/bokeh_diffusion`: the Bokeh Diffusion text-to-image adapter for "
        "FLUX.1-dev (`model.safetensors`), or the BokehDepth photo adapter for FLUX.1 Kontext (`bokeh_lora.bin`). "
        "Which one it is, is read from the file's keys (`*_bokeh` or `*_dof`) and shown on the node. A LoRA, "
        "IP-Adapter or ControlNet file is named as such in the error. Only files in the list are ever opened; a "
        "`.bin` is read only through PyTorch's restricted loader (tensors only, no code runs).",
        "Put the authors' `model.safetensors` (583 MB, non-commercial licence) or `bokeh_lora.bin` into "
        "`ComfyUI/models/bokeh_diffusion/`, refresh, pick it here, and connect **Bokeh Adapter** to *Apply Bokeh Adapter*.",
    ),
    "BokehApplyAdapter": (
        "Gives a FLUX.1 model a physical defocus-blur control: the **Blur Level** K runs from 0 (everything sharp) "
        "to 30 (strongest bokeh). Returns a patched copy; the input model is untouched.",
        "*UNETLoader* -> *ModelSamplingFlux* -> **Apply Bokeh Adapter** (Blur Level 20) -> *KSampler*. "
        "For one image per level, connect a FLOAT list from *Bokeh Blur Levels* to Blur Level. "
        "Accepted: 0..30; -10..40 runs as an extrapolation (warned); beyond is an error. With the photo adapter "
        "K is clamped to 1..30, as in its reference (K 0 acts as 1).",
    ),
    "BokehPivotBatch": (
        "Renders a whole blur sweep in one sampling run with the same scene: the batch is "
        "`[pivot, target 1..N]` on one seed's noise, and every target is grounded on the pivot "
        "(grounded self-attention) for the first part of the steps.",
        "*Apply Bokeh Adapter* -> **Bokeh Pivot Batch** (Pivot Blur 15, Targets `0, 8, 16, 28`, Grounding 0.8) -> "
        "both **Model** and **Latent** into one *KSampler*; **Sweep** into Colour Match, Contact Sheet and Blur Meter. "
        "Use either Grounding (a share of the steps) or Grounding Steps (an exact count; -1 = off): when Grounding "
        "Steps is set it wins, and the node says so.",
    ),
    "BokehBlurLevels": (
        "Makes a list of blur levels: evenly spaced from Start to End, or the explicit Levels text.",
        "Start 0, End 30, Count 7 -> **Blur Levels** into *Apply Bokeh Adapter*'s Blur Level (one run per level), or "
        "**Levels Text** into *Bokeh Pivot Batch*'s Targets.",
    ),
    "BokehPhotoPrompt": (
        "Writes the prompt the BokehDepth authors sample the photo adapter with, `Set dof_cond = K (stronger background "
        "defocus); ...`, K with two decimals, and encodes it. A FLOAT list of blur levels gives one prompt per level.",
        "*DualCLIPLoader* -> **Bokeh Photo Prompt** (the same K as *Apply Bokeh Adapter*) -> *ReferenceLatent* (your "
        "photo's latent) -> *FluxGuidance* 7.0 -> *KSampler*. See the `bokeh_photo` workflow.",
    ),
    "BokehPhotoResize": (
        "Resizes your photo to the photo adapter's working size with Lanczos: 512 x 512 as the reference does (the "
        "photo is stretched), or the photo's aspect at about the same area (0.26 MP, sides multiples of 16; our "
        "choice, not the reference's). Width and Height go to *ModelSamplingFlux*.",
        "*LoadImage* -> **Bokeh Photo Resize** -> *VAEEncode* (and the resized photo as *Bokeh Colour Match*'s Reference).",
    ),
    "BokehGatherSweep": (
        "Puts a sweep shared out with ComfyUI-Distributed back together on the master. Each participant (the master "
        "and every worker) renders the pivot and its share of the targets (Bokeh Pivot Batch's Participant and "
        "Participants); DistributedCollector brings all rows to the master. This node checks that every participant "
        "delivered (the collector passes on fewer rows, without an error, when a worker was offline or timed out) and "
        "rendered the same pivot (else a different seed, model, adapter or ComfyUI), keeps one pivot and every target "
        "in order, and rounds every row to 8 bits as the collector rounded the workers' images.",
        "*DistributedSeed* (0) -> *Bokeh Pivot Batch* Participant (Participants 3 for a master and two workers) -> "
        "*KSampler* -> *VAE Decode* -> *DistributedCollector* -> **Bokeh Gather Sweep** (Sweep from Pivot Batch) -> "
        "*Bokeh Colour Match*, *Contact Sheet*, *Blur Meter* with its Sweep. See the `bokeh_grounded_sweep_distributed` "
        "workflow. Delegate-only mode is refused: the master must render its share.",
    ),
    "BokehColorMatch": (
        "Harmonises a sweep's colours as the paper does: each image's CIE Lab mean is moved to the pivot's "
        "(Reinhard statistics matching). The pivot row is returned unchanged.",
        "*VAEDecode* -> **Bokeh Colour Match** (Sweep from Pivot Batch) -> *Save Image*.",
    ),
    "BokehContactSheet": (
        "Lays a sweep out in one labelled grid: `K` under each image, the pivot marked.",
        "*Bokeh Colour Match* -> **Bokeh Contact Sheet** (Sweep from Pivot Batch, Columns 0 = automatic) -> *Save Image*.",
    ),
    "BokehBlurMeter": (
        "Measures each image's sharpness (the log variance of its Laplacian, the quantity behind the paper's LVCorr) "
        "and, for a sweep, how blur follows K: linear and rank correlation, and whether blur rises with K "
        "(or falls: monotonic in the wrong direction). The node shows a plot of sharpness against K.",
        "*Bokeh Colour Match* -> **Bokeh Blur Meter** (Sweep from Pivot Batch); **Report** into *Preview Any* (a Markdown "
        "table), **Plot** into *Preview Image*.",
    ),
    "BokehRenderClassical": (
        "Renders depth-based bokeh on any image with the classical BokehMe scatter renderer, the synthesis the "
        "bokeh adapters' training data comes from: every pixel spreads into a soft disc whose radius is K times "
        "its disparity distance from the focus plane, in gamma space (2.2), so highlights bloom. No model runs. "
        "Focus follows a subject mask as in the training data, or a focus plane you set. Classical only: BokehMe's "
        "neural refinement (ARNet/IUNet) is not part of the pack, so occlusion edges show the classical renderer's "
        "halo. Time grows with K squared; large K on large images is refused with a message.",
        "*LoadImage* -> **Bokeh Render (classical)** (Depth from a depth estimator such as Depth Anything, near is "
        "bright; Subject Mask from a background remover; Blur 15) -> *Save Image*. **Blur Map** shows where it is sharp.",
    ),
    "BokehTrainingData": (
        "Reads a training set for *Train Bokeh Adapter* from a folder inside `ComfyUI/input`, chosen from a list (a "
        "path typed by a client is never opened). Beside each image `NAME.png`: `NAME.txt` captions (one per line); "
        "for a sharp photo, `NAME.depth.npy` (metric depth, larger = farther) and optionally `NAME.mask.png` (the "
        "subject), from which bokeh is rendered at random K; for a defocused photo, `NAME.k.txt` with its K, or EXIF "
        "with the focus distance. A `manifest.csv` with the authors' columns is read instead when the folder has one "
        "(its paths must stay inside the folder). The same reader, rules and errors as the headless "
        "`scripts/bokeh_train.py`; bad data stops with a message naming the file.",
        "Put `my_photos/` with `dog.png`, `dog.txt`, `dog.depth.npy`, `dog.mask.png`, ... into `ComfyUI/input/`, "
        "refresh, pick **my_photos** here (Size 512) and connect **Training Data** to *Train Bokeh Adapter*.",
    ),
    "BokehTrainAdapter": (
        "Trains a new Bokeh adapter on the connected FLUX model with the authors' recipe (spec `bokeh-training.md`): "
        "rendered bokeh from sharp photos with depth, real photos with their K, grounded groups; a progress bar, "
        "Cancel stops it (nothing is saved). It saves `models/bokeh_diffusion/<File Name>.safetensors` with its "
        "resume state (`.state`) and loss log (`.loss.csv`), and outputs the adapter as *Load Bokeh Adapter* loads "
        "the file, plus a loss plot. The model itself is not changed. The same trainer as the headless "
        "`scripts/bokeh_train.py`: the same seed and data give the same losses. Settings not on the node follow "
        "the authors; **Settings** takes any of them as `name=value` lines.",
        "*UNETLoader* (FLUX.1 Kontext) + *DualCLIPLoader* (flux) + *VAELoader* + *Bokeh Training Data* -> **Train "
        "Bokeh Adapter** (Steps 2000, File Name my_bokeh) -> **Bokeh Adapter** into *Apply Bokeh Adapter*, **Loss "
        "Plot** into *Preview Image*. Full FLUX training needs a GPU with the memory for the bf16 base (24 GB) plus "
        "the adapter's float32 state; Gradient Checkpointing (on) keeps activations small.",
    ),
}


def node_defs() -> dict:
    """{node id: {"display_name", "description", "inputs": {id: {"name", "tooltip"}}, "outputs": {slot: ...}}}."""
    inprocess.load_pack()
    import nodes

    out = {}
    for node_id, cls in sorted(nodes.NODE_CLASS_MAPPINGS.items()):
        if not node_id.startswith("Bokeh") or node_id.startswith("BokehTest"):
            continue
        schema = cls.GET_SCHEMA()
        entry = {"display_name": schema.display_name, "description": schema.description, "inputs": {}, "outputs": {}}
        for inp in schema.inputs:
            entry["inputs"][inp.id] = {"name": inp.display_name or inp.id, "tooltip": inp.tooltip}
        for slot, outp in enumerate(schema.outputs):
            entry["outputs"][str(slot)] = {"name": outp.display_name, "tooltip": outp.tooltip}
        out[node_id] = entry
    return out


def render() -> str:
    return json.dumps(node_defs(), indent=2, ensure_ascii=False) + "\n"


def _cell(text) -> str:
    return (text or "-").replace("|", "\\|").replace("\n", " ")


def doc_pages() -> dict[str, str]:
    """{node id: Markdown page}."""
    pages = {}
    for node_id, entry in node_defs().items():
        what, example = PAGES[node_id]
        lines = [f"# {entry['display_name']}", "", what, "", "## Example", "", example, "", "## Inputs", "",
                 "| input | what it is |", "|---|---|"]
        lines += [f"| {_cell(i['name'])} | {_cell(i['tooltip'])} |" for i in entry["inputs"].values()]
        lines += ["", "## Outputs", "", "| output | what it is |", "|---|---|"]
        lines += [f"| {_cell(o['name'])} | {_cell(o['tooltip'])} |" for o in entry["outputs"].values()]
        pages[node_id] = "\n".join(lines) + "\n"
    return pages


def main():
    inprocess.quiet_host_logging()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render())
    DOCS.mkdir(parents=True, exist_ok=True)
    for node_id, page in doc_pages().items():
        (DOCS / f"{node_id}.md").write_text(page)
    print("wrote", OUT.relative_to(inprocess.REPO), "and", DOCS.relative_to(inprocess.REPO))


if __name__ == "__main__":
    main()
