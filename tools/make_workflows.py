"""Writes the bundled example workflows (workflows/*.json, UI-graph format) from short
descriptions, with input/output slots and widget order taken from the live host.

    python scripts/dev.py tools.make_workflows      # in the venv of scripts/setup.sh

The files are committed; tests/test_workflows.py converts them back as a user's ComfyUI would.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..runner import inprocess
from ..runner.model_files import ADAPTER, AE, CLIP_L, FLUX_CKPT, FLUX_UNET, KONTEXT_UNET, PHOTO_ADAPTER, PHOTO_IMAGE, T5, model_rows
from ..runner.workflow_api import is_widget, widget_inputs

OUT = inprocess.REPO / "workflows"
_rendered: dict = {}  # file name -> text, filled by Graph.save
PROMPT = "a portrait of a woman in a sunlit garden, roses in the foreground and background, 35mm photograph"
SEED = 65578

FILES_NOTE = (
    "Bokeh Diffusion: model files\n\n"
    f"models/diffusion_models/{FLUX_UNET}  (FLUX.1-dev)\n"
    f"models/text_encoders/{T5} and {CLIP_L}\n"
    f"models/vae/{AE}\n"
    f"models/bokeh_diffusion/{ADAPTER}  (the authors' Bokeh Diffusion adapter, model.safetensors, renamed; "
    "NON-COMMERCIAL licence (NTU S-Lab 1.0); get it from the release page linked at "
    "github.com/atfortes/BokehDiffusion; this pack never downloads it)\n\n"
    "Only the prompt needs changing. Blur level K: 0 = sharp, 30 = strongest bokeh."
)
PHOTO_NOTE = (
    "Bokeh on your photo: model files\n\n"
    f"models/diffusion_models/{KONTEXT_UNET}  (FLUX.1 Kontext [dev]; non-commercial licence)\n"
    f"models/text_encoders/{T5} and {CLIP_L}\n"
    f"models/vae/{AE}\n"
    f"models/bokeh_diffusion/{PHOTO_ADAPTER}  (the BokehDepth photo adapter, from huggingface.co/fogradio/BokehDepth, "
    "folder weights/; licence not stated: treat as NON-COMMERCIAL; this pack never downloads it)\n\n"
    "Pick your photo in Load Image. Blur level K: 1 = nearly sharp, 30 = strongest background blur. The model keeps "
    "the subject sharp by itself: there is no focus point to set."
)
PHOTO_STEPS = 50  # the reference procedure (bokehdepth-photo.md section 3)
PHOTO_GUIDANCE = 7.0
PHOTO_LEVELS = "1, 6, 11, 16, 21, 26, 30"  # the reference's stacks
CKPT_NOTE = FILES_NOTE.replace(
    f"models/diffusion_models/{FLUX_UNET}  (FLUX.1-dev)\nmodels/text_encoders/{T5} and {CLIP_L}\nmodels/vae/{AE}\n",
    f"models/checkpoints/{FLUX_CKPT}  (a single-file FLUX.1-dev checkpoint with text encoders and VAE)\n",
)


DISTRIBUTED_NOTE = (
    "Needs ComfyUI-Distributed (robertvoy/ComfyUI-Distributed, 1.4.4 tested) on the master and on every worker\n\n"
    "Workers: each a ComfyUI server (another GPU: --cuda-device 1 --port 8189; another machine: --listen) with the "
    "same model files, the same Bokeh adapter, the same version of this pack and the same ComfyUI as the master. "
    "Add them in the Distributed panel and enable them.\n\n"
    "Participants = 1 + the number of enabled workers (the master renders too). DistributedSeed stays at 0, "
    "'fixed': it numbers the participants (master 0, workers 1, 2, ...); never link it to the sampler's seed.\n\n"
    "Bokeh Gather Sweep checks the rows: a worker that was offline or timed out, or rendered another pivot, "
    "stops the run with a message instead of saving a partial sweep. Delegate-only mode is refused (the master "
    "must render its share)."
)
# Nodes of ComfyUI-Distributed 1.4.4 (a91f9fb0) as its nodes/utilities.py and nodes/collector.py
# declare them, for the generator only (this pack does not depend on it). The frontend gives an INT
# named 'seed' a control widget (the extension's own workflows save [seed, 'randomize']), hence
# control_after_generate here, saved as 'fixed'. tests/test_distributed_servers.py converts the
# workflow with a real server's definitions of these nodes.
class _ExternalNode:
    def __init__(self, inputs: dict, returns: tuple, names: tuple):
        self.inputs, self.RETURN_TYPES, self.RETURN_NAMES = inputs, returns, names

    def INPUT_TYPES(self):  # noqa: N802 (the host's name)
        return self.inputs


DISTRIBUTED_NODES = {
    "DistributedSeed": _ExternalNode({"required": {"seed": ("INT", {"default": 1125899906842, "min": 0, "max": 1125899906842624,
                                                                      "control_after_generate": True})}}, ("INT",), ("seed",)),
    "DistributedCollector": _ExternalNode({"required": {"images": ("IMAGE",), "load_balance": ("BOOLEAN", {"default": False})},
                                           "optional": {"audio": ("AUDIO",)}}, ("IMAGE", "AUDIO"), ("images", "audio")),
}


COLUMN = 440  # x distance between columns
NODE_MAX = 400  # widest node, so neighbours never overlap


class Graph:
    def __init__(self):
        import nodes

        self.defs = nodes.NODE_CLASS_MAPPINGS
        self.nodes, self.links = [], []
        self.col = {}

    def add(self, kind, column, widgets=None, title=None, size=(320, 120), models=None, **links):
        """A node in ``column`` (columns are COLUMN wide, nodes at most NODE_MAX wide: no overlap),
        below the column's previous node. ``models``: the files its loader needs (download rows)."""
        if size[0] > NODE_MAX:
            raise ValueError(f"{kind} is {size[0]} wide; at most {NODE_MAX} fits a column")
        node_id = len(self.nodes) + 1
        y = self.col.get(column, 40)
        self.col[column] = y + size[1] + 60
        node = {"id": node_id, "type": kind, "pos": [40 + column * COLUMN, y], "size": list(size), "flags": {},
                "order": node_id - 1, "mode": 0, "inputs": [], "outputs": [], "properties": {"Node name for S&R": kind}}
        if models:
            node["properties"]["models"] = model_rows(*models)
        if title:
            node["title"] = title
        if kind == "Note":
            node["widgets_values"] = [widgets["text"]]
            node["color"], node["bgcolor"] = "#432", "#653"
            self.nodes.append(node)
            return node_id
        cls = self.defs[kind]
        widgets = dict(widgets or {})
        values = []
        for name, spec in widget_inputs(cls):
            opts = spec[1] if len(spec) > 1 else {}
            typ = "COMBO" if isinstance(spec[0], (list, tuple)) else str(spec[0])
            if is_widget(spec):
                value = widgets.pop(name, opts.get("default", spec[0][0] if isinstance(spec[0], (list, tuple)) and spec[0] else None))
                values.append(value)
                if opts.get("control_after_generate"):
                    values.append("fixed")
                if name in links:
                    node["inputs"].append({"name": name, "type": typ, "widget": {"name": name}, "link": None})
            else:
                node["inputs"].append({"name": name, "type": typ, "link": None})
        if widgets:
            raise KeyError(f"{kind} has no widget(s) {sorted(widgets)}")
        names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
        for slot, (typ, name) in enumerate(zip(cls.RETURN_TYPES, names)):
            node["outputs"].append({"name": str(name), "type": str(typ), "links": [], "slot_index": slot})
        node["widgets_values"] = values
        self.nodes.append(node)
        for name, (src, slot) in links.items():
            self.link(src, slot, node_id, name)
        return node_id

    def link(self, src, slot, dst, name):
        link_id = len(self.links) + 1
        s, d = self.nodes[src - 1], self.nodes[dst - 1]
        d_slot = next(i for i, inp in enumerate(d["inputs"]) if inp["name"] == name)
        d["inputs"][d_slot]["link"] = link_id
        s["outputs"][slot]["links"].append(link_id)
        self.links.append([link_id, src, slot, dst, d_slot, s["outputs"][slot]["type"]])

    def save(self, name):
        for n in self.nodes:
            for o in n.get("outputs", []):
                if not o["links"]:
                    o["links"] = None
        data = {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}},
                "version": 0.4}
        _rendered[name] = json.dumps(data, indent=1) + "\n"


def flux_front(g, checkpoint=False):
    """Loaders, prompt, guidance, model sampling, adapter: returns (model, positive, negative, vae, latent)."""
    g.add("Note", 0, {"text": CKPT_NOTE if checkpoint else FILES_NOTE}, size=(340, 260))
    if checkpoint:
        ckpt = g.add("CheckpointLoaderSimple", 0, {"ckpt_name": FLUX_CKPT}, models=[FLUX_CKPT])
        model, clip, vae = (ckpt, 0), (ckpt, 1), (ckpt, 2)
    else:
        model = (g.add("UNETLoader", 0, {"unet_name": FLUX_UNET, "weight_dtype": "default"}, models=[FLUX_UNET]), 0)
        clip = (g.add("DualCLIPLoader", 0, {"clip_name1": T5, "clip_name2": CLIP_L, "type": "flux"}, models=[T5, CLIP_L]), 0)
        vae = (g.add("VAELoader", 0, {"vae_name": AE}, models=[AE]), 0)
    text = g.add("CLIPTextEncode", 1, {"text": PROMPT}, title="Prompt", size=(360, 160), clip=clip)
    pos = g.add("FluxGuidance", 1, {"guidance": 3.0}, conditioning=(text, 0))
    neg = g.add("ConditioningZeroOut", 1, conditioning=(text, 0))
    sampling = g.add("ModelSamplingFlux", 1, {"max_shift": 1.15, "base_shift": 0.5, "width": 512, "height": 512}, model=model)
    adapter = g.add("BokehAdapterLoader", 2, {"adapter_name": ADAPTER}, size=(340, 90), models=[ADAPTER])
    latent = g.add("EmptySD3LatentImage", 2, {"width": 512, "height": 512, "batch_size": 1})
    return (sampling, 0), (pos, 0), (neg, 0), vae, (adapter, 0), (latent, 0)


def ksampler(g, column, model, pos, neg, latent):
    return g.add("KSampler", column, {"seed": SEED, "steps": 30, "cfg": 1.0, "sampler_name": "euler",
                                      "scheduler": "simple", "denoise": 1.0}, size=(320, 260),
                 model=model, positive=pos, negative=neg, latent_image=latent)


def single_image():
    g = Graph()
    model, pos, neg, vae, adapter, latent = flux_front(g)
    applied = g.add("BokehApplyAdapter", 2, {"blur_level": 10.0, "bokeh_scale": 1.0, "lora_scale": 1.0}, size=(340, 160),
                    model=model, bokeh_adapter=adapter)
    sample = ksampler(g, 3, (applied, 0), pos, neg, latent)
    image = g.add("VAEDecode", 3, samples=(sample, 0), vae=vae)
    g.add("SaveImage", 4, {"filename_prefix": "bokeh/single"}, size=(400, 460), images=(image, 0))
    g.save("bokeh_single_image.json")


def grounded_sweep(checkpoint=False):
    g = Graph()
    model, pos, neg, vae, adapter, latent = flux_front(g, checkpoint)
    applied = g.add("BokehApplyAdapter", 2, {"blur_level": 15.0, "bokeh_scale": 1.0, "lora_scale": 1.0}, size=(340, 160),
                    model=model, bokeh_adapter=adapter)
    # One grounding control: the share (0.8 of 30 steps = 24, the paper's example); Grounding
    # Steps stays -1 so it does not silently override the slider.
    pivot = g.add("BokehPivotBatch", 3, {"pivot_blur": 15.0, "targets": "0, 4, 8, 12, 18, 28", "grounding": 0.8,
                                         "grounding_steps": -1}, size=(340, 240),
                  model=(applied, 0), latent=latent)
    sample = ksampler(g, 3, (pivot, 0), pos, neg, (pivot, 1))
    image = g.add("VAEDecode", 4, samples=(sample, 0), vae=vae)
    finish_sweep(g, 4, (image, 0), (pivot, 2))
    g.save("bokeh_grounded_sweep_checkpoint.json" if checkpoint else "bokeh_grounded_sweep.json")


def finish_sweep(g, column, images, sweep):
    """Colour match, contact sheet, blur meter with its report and plot, and the saves, from
    ``column`` on."""
    color = g.add("BokehColorMatch", column, {"pivot_index": 0, "match_std": False, "drop_pivot": False}, images=images, sweep=sweep)
    sheet = g.add("BokehContactSheet", column + 1, {"columns": 0}, size=(300, 110), images=(color, 0), sweep=sweep)
    meter = g.add("BokehBlurMeter", column + 1, size=(300, 320), images=(color, 0), sweep=sweep)
    g.add("PreviewAny", column + 1, size=(400, 300), source=(meter, 0))
    g.add("SaveImage", column + 2, {"filename_prefix": "bokeh/sheet"}, size=(400, 420), images=(sheet, 0))
    g.add("PreviewImage", column + 2, title="Blur vs K", size=(400, 300), images=(meter, 2))
    g.add("SaveImage", column + 3, {"filename_prefix": "bokeh/sweep"}, size=(400, 420), images=(color, 0))


def distributed_sweep():
    """The grounded sweep shared out with ComfyUI-Distributed: DistributedSeed (0) numbers the
    participants, each renders [pivot, its share of the targets], DistributedCollector brings the
    rows to the master, Bokeh Gather Sweep checks them and rebuilds the sweep."""
    g = Graph()
    g.defs = {**g.defs, **DISTRIBUTED_NODES}
    model, pos, neg, vae, adapter, latent = flux_front(g)
    applied = g.add("BokehApplyAdapter", 2, {"blur_level": 15.0, "bokeh_scale": 1.0, "lora_scale": 1.0}, size=(340, 160),
                    model=model, bokeh_adapter=adapter)
    number = g.add("DistributedSeed", 2, {"seed": 0}, title="Participant number (DistributedSeed, keep 0)", size=(340, 100))
    pivot = g.add("BokehPivotBatch", 3, {"pivot_blur": 15.0, "targets": "0, 4, 8, 12, 18, 28", "grounding": 0.8,
                                         "grounding_steps": -1, "participant": 0, "participants": 3}, size=(340, 300),
                  model=(applied, 0), latent=latent, participant=(number, 0))
    sample = ksampler(g, 3, (pivot, 0), pos, neg, (pivot, 1))
    image = g.add("VAEDecode", 4, samples=(sample, 0), vae=vae)
    collect = g.add("DistributedCollector", 4, {"load_balance": False}, size=(320, 100), images=(image, 0))
    gather = g.add("BokehGatherSweep", 4, size=(320, 100), images=(collect, 0), sweep=(pivot, 2))
    finish_sweep(g, 5, (gather, 0), (gather, 1))
    g.add("Note", 4, {"text": DISTRIBUTED_NOTE}, size=(360, 400))
    g.save("bokeh_grounded_sweep_distributed.json")


def list_sweep():
    g = Graph()
    model, pos, neg, vae, adapter, latent = flux_front(g)
    levels = g.add("BokehBlurLevels", 2, {"start": 0.0, "end": 28.0, "count": 6, "levels": "0, 4, 8, 12, 18, 28"}, size=(320, 180))
    applied = g.add("BokehApplyAdapter", 3, {"blur_level": 10.0, "bokeh_scale": 1.0, "lora_scale": 1.0}, size=(340, 160),
                    model=model, bokeh_adapter=adapter, blur_level=(levels, 0))
    sample = ksampler(g, 3, (applied, 0), pos, neg, latent)
    image = g.add("VAEDecode", 4, samples=(sample, 0), vae=vae)
    g.add("SaveImage", 5, {"filename_prefix": "bokeh/list"}, size=(400, 460), images=(image, 0))
    g.add("Note", 4, {"text": "One run per blur level (ComfyUI list semantics): the FLOAT list of Bokeh Blur Levels "
                      "runs Apply Bokeh Adapter, KSampler and the rest once per value. Without grounding the scene "
                      "may drift between levels; the grounded sweep workflow keeps it."}, size=(340, 140))
    g.save("bokeh_list_sweep.json")


def photo_graph(stack: bool):
    """LoadImage -> Bokeh Photo Resize -> VAEEncode -> ReferenceLatent -> FluxGuidance 7.0;
    UNETLoader (Kontext) -> Apply Bokeh Adapter (photo adapter) -> ModelSamplingFlux at the output
    size -> KSampler euler/simple/50/cfg 1 -> VAEDecode -> Bokeh Colour Match to the resized photo
    (mean and spread). One K drives the adapter and the prompt: a Float (single image) or the
    FLOAT list of Bokeh Blur Levels (stack: one sampling per K, same seed)."""
    g = Graph()
    g.add("Note", 0, {"text": PHOTO_NOTE}, size=(340, 280))
    unet = g.add("UNETLoader", 0, {"unet_name": KONTEXT_UNET, "weight_dtype": "default"}, models=[KONTEXT_UNET])
    clip = g.add("DualCLIPLoader", 0, {"clip_name1": T5, "clip_name2": CLIP_L, "type": "flux"}, models=[T5, CLIP_L])
    vae = g.add("VAELoader", 0, {"vae_name": AE}, models=[AE])
    photo = g.add("LoadImage", 1, {"image": PHOTO_IMAGE}, title="Your photo", size=(320, 360))
    resize = g.add("BokehPhotoResize", 1, size=(320, 120), image=(photo, 0))
    encode = g.add("VAEEncode", 1, pixels=(resize, 0), vae=(vae, 0))
    if stack:
        k = (g.add("BokehBlurLevels", 2, {"start": 1.0, "end": 30.0, "count": 7, "levels": PHOTO_LEVELS}, size=(320, 180)), 0)
    else:
        k = (g.add("PrimitiveFloat", 2, {"value": 10.0}, title="Blur Level (K)", size=(320, 80)), 0)
    adapter = g.add("BokehAdapterLoader", 2, {"adapter_name": PHOTO_ADAPTER}, size=(340, 90), models=[PHOTO_ADAPTER])
    applied = g.add("BokehApplyAdapter", 2, {"blur_level": 10.0, "bokeh_scale": 1.0, "lora_scale": 1.0}, size=(340, 160),
                    model=(unet, 0), bokeh_adapter=(adapter, 0), blur_level=k)
    sampling = g.add("ModelSamplingFlux", 3, {"max_shift": 1.15, "base_shift": 0.5, "width": 512, "height": 512},
                     model=(applied, 0), width=(resize, 1), height=(resize, 2))
    prompt = g.add("BokehPhotoPrompt", 3, {"blur_level": 10.0}, size=(340, 110), clip=(clip, 0), blur_level=k)
    reference = g.add("ReferenceLatent", 3, conditioning=(prompt, 0), latent=(encode, 0))
    pos = g.add("FluxGuidance", 3, {"guidance": PHOTO_GUIDANCE}, conditioning=(reference, 0))
    neg = g.add("ConditioningZeroOut", 4, conditioning=(reference, 0))
    sample = g.add("KSampler", 4, {"seed": SEED, "steps": PHOTO_STEPS, "cfg": 1.0, "sampler_name": "euler",
                                   "scheduler": "simple", "denoise": 1.0}, size=(320, 260),
                   model=(sampling, 0), positive=(pos, 0), negative=(neg, 0), latent_image=(encode, 0))
    image = g.add("VAEDecode", 4, samples=(sample, 0), vae=(vae, 0))
    color = g.add("BokehColorMatch", 5, {"pivot_index": 0, "match_std": True, "drop_pivot": False},
                  images=(image, 0), reference=(resize, 0))
    if not stack:
        g.add("SaveImage", 6, {"filename_prefix": "bokeh/photo"}, size=(400, 460), images=(color, 0))
        g.save("bokeh_photo.json")
        return
    batch = g.add("RebatchImages", 5, {"batch_size": 64}, size=(320, 90), images=(color, 0))
    sweep = (k[0], 2)
    sheet = g.add("BokehContactSheet", 5, {"columns": 0}, size=(300, 110), images=(batch, 0), sweep=sweep)
    meter = g.add("BokehBlurMeter", 6, size=(300, 320), images=(batch, 0), sweep=sweep)
    g.add("PreviewAny", 6, size=(400, 300), source=(meter, 0))
    g.add("SaveImage", 7, {"filename_prefix": "bokeh/photo_sheet"}, size=(400, 420), images=(sheet, 0))
    g.add("PreviewImage", 7, title="Blur vs K", size=(400, 300), images=(meter, 2))
    g.add("SaveImage", 8, {"filename_prefix": "bokeh/photo_stack"}, size=(400, 420), images=(color, 0))
    g.add("Note", 4, {"text": "One sampling per blur level, same seed (ComfyUI list semantics): Bokeh Blur Levels' "
                      "FLOAT list drives both Apply Bokeh Adapter and Bokeh Photo Prompt. The photo adapter needs "
                      "no pivot: your photo anchors the scene."}, size=(320, 140))
    g.save("bokeh_photo_stack.json")


RENDER_NOTE = (
    "Classical bokeh render: no model files\n\n"
    "Pick your photo in the first Load Image and its depth map in the second: a grey image of the same size from a "
    "depth estimator (e.g. Depth Anything V2 from comfyui_controlnet_aux; near = bright), or connect that node's output "
    "to Depth directly. The example uses the photo itself as a stand-in depth map. For a sharp subject, connect a mask "
    "(e.g. from a background remover) to Subject Mask; without one, focus sits at the median depth, or set "
    "Focus = focus plane. Blur (K) is the blur radius in pixels across the whole depth range."
)


def classical_render():
    """LoadImage (photo) + LoadImage (depth map) -> Bokeh Render (classical) -> SaveImage; the blur
    map into a preview."""
    g = Graph()
    g.add("Note", 0, {"text": RENDER_NOTE}, size=(340, 260))
    photo = g.add("LoadImage", 1, {"image": PHOTO_IMAGE}, title="Your photo", size=(320, 360))
    depth = g.add("LoadImage", 1, {"image": PHOTO_IMAGE}, title="Its depth map (near = bright)", size=(320, 360))
    render = g.add("BokehRenderClassical", 2, {"blur": 15.0}, size=(360, 330), image=(photo, 0), depth=(depth, 0))
    blur_map = g.add("MaskToImage", 2, mask=(render, 1))
    g.add("SaveImage", 3, {"filename_prefix": "bokeh/classical"}, size=(400, 460), images=(render, 0))
    g.add("PreviewImage", 3, title="Blur map (white = K pixels)", size=(400, 300), images=(blur_map, 0))
    g.save("bokeh_classical_render.json")


TRAIN_FOLDER = "bokeh_training"  # the workflow's dataset: ComfyUI/input/bokeh_training
TRAIN_STEPS = 2000
TRAIN_NOTE = (
    "Train your own Bokeh adapter: files and data\n\n"
    f"models/diffusion_models/{KONTEXT_UNET}  (FLUX.1 Kontext [dev]: NON-COMMERCIAL licence, the FLUX.1 [dev] "
    "licence, which also covers what is trained on it)\n"
    f"models/text_encoders/{T5} and {CLIP_L}\n"
    f"models/vae/{AE}\n\n"
    f"Training photos: a folder inside ComfyUI/input (here input/{TRAIN_FOLDER}); refresh the page and pick it in "
    "Bokeh Training Data. Beside each photo NAME.png: NAME.txt (captions, one per line); a sharp photo needs "
    "NAME.depth.npy (metric depth, larger = farther) and ideally NAME.mask.png (the subject, white); a photo with "
    "real bokeh needs NAME.k.txt (its K) or EXIF with the focus distance.\n\n"
    "Train Bokeh Adapter saves models/bokeh_diffusion/my_bokeh.safetensors (If File Exists = stop: a second run "
    "needs another name, overwrite or resume) and hands the adapter straight to Apply Bokeh Adapter, which renders "
    "the photo in Load Image at K 15 with it. Training full FLUX needs a large GPU (the bf16 base alone is 24 GB); "
    "see the README's Training section. Cancel stops training and saves nothing."
)


def train_workflow():
    """UNETLoader (Kontext) + DualCLIPLoader + VAELoader + Bokeh Training Data -> Train Bokeh
    Adapter (the loss plot into a preview) -> its adapter straight into Apply Bokeh Adapter -> the
    photo graph of bokeh_photo.json at K 15 (Photo Resize, ReferenceLatent, FluxGuidance 7.0,
    KSampler euler/simple/50, Colour Match) -> SaveImage."""
    g = Graph()
    g.add("Note", 0, {"text": TRAIN_NOTE}, size=(340, 420))
    unet = g.add("UNETLoader", 0, {"unet_name": KONTEXT_UNET, "weight_dtype": "default"}, models=[KONTEXT_UNET])
    clip = g.add("DualCLIPLoader", 0, {"clip_name1": T5, "clip_name2": CLIP_L, "type": "flux"}, models=[T5, CLIP_L])
    vae = g.add("VAELoader", 0, {"vae_name": AE}, models=[AE])
    data = g.add("BokehTrainingData", 1, {"folder": TRAIN_FOLDER, "size": 512}, size=(320, 110))
    train = g.add("BokehTrainAdapter", 1, {"flavour": "photo (FLUX.1 Kontext)", "steps": TRAIN_STEPS, "learning_rate": 1e-4,
                                           "rank": 128, "batch_size": 4, "seed": 0, "file_name": "my_bokeh",
                                           "if_exists": "stop", "optimizer": "adamw", "gradient_checkpointing": True,
                                           "settings": ""}, size=(360, 440),
                  model=(unet, 0), clip=(clip, 0), vae=(vae, 0), training_data=(data, 0))
    g.add("PreviewImage", 2, title="Training loss", size=(400, 300), images=(train, 1))
    photo = g.add("LoadImage", 2, {"image": PHOTO_IMAGE}, title="A photo to try it on", size=(320, 360))
    resize = g.add("BokehPhotoResize", 2, size=(320, 120), image=(photo, 0))
    encode = g.add("VAEEncode", 3, pixels=(resize, 0), vae=(vae, 0))
    applied = g.add("BokehApplyAdapter", 3, {"blur_level": 15.0, "bokeh_scale": 1.0, "lora_scale": 1.0}, size=(340, 160),
                    model=(unet, 0), bokeh_adapter=(train, 0))
    sampling = g.add("ModelSamplingFlux", 3, {"max_shift": 1.15, "base_shift": 0.5, "width": 512, "height": 512},
                     model=(applied, 0), width=(resize, 1), height=(resize, 2))
    prompt = g.add("BokehPhotoPrompt", 3, {"blur_level": 15.0}, size=(340, 110), clip=(clip, 0))
    reference = g.add("ReferenceLatent", 4, conditioning=(prompt, 0), latent=(encode, 0))
    pos = g.add("FluxGuidance", 4, {"guidance": PHOTO_GUIDANCE}, conditioning=(reference, 0))
    neg = g.add("ConditioningZeroOut", 4, conditioning=(reference, 0))
    sample = g.add("KSampler", 4, {"seed": SEED, "steps": PHOTO_STEPS, "cfg": 1.0, "sampler_name": "euler",
                                   "scheduler": "simple", "denoise": 1.0}, size=(320, 260),
                   model=(sampling, 0), positive=(pos, 0), negative=(neg, 0), latent_image=(encode, 0))
    image = g.add("VAEDecode", 5, samples=(sample, 0), vae=(vae, 0))
    color = g.add("BokehColorMatch", 5, {"pivot_index": 0, "match_std": True, "drop_pivot": False},
                  images=(image, 0), reference=(resize, 0))
    g.add("SaveImage", 6, {"filename_prefix": "bokeh/trained"}, size=(400, 460), images=(color, 0))
    g.save("bokeh_train.json")


def render() -> dict:
    """Every bundled workflow: file name -> the text of workflows/<name>. Needs the pack loaded
    (the node schemas give the inputs' order and types)."""
    _rendered.clear()
    single_image()
    grounded_sweep()
    grounded_sweep(checkpoint=True)
    distributed_sweep()
    list_sweep()
    photo_graph(stack=False)
    photo_graph(stack=True)
    classical_render()
    train_workflow()
    return dict(_rendered)


def main():
    inprocess.quiet_host_logging()
    inprocess.load_pack()
    OUT.mkdir(exist_ok=True)
    files = render()
    for name, text in files.items():
        (OUT / name).write_text(text)
    print("wrote", ", ".join(sorted(files)))


if __name__ == "__main__":
    main()
