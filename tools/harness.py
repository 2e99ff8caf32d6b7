"""A real ComfyUI, in-process, for tests, benchmarks and the sweep runner's --check mode.

Nothing of the host is stubbed: the host is found by tools/comfy_host.py (COMFYUI_PATH, the
ComfyUI two folders up, or the pinned copy), its modules are imported as they are, this pack
is loaded by ComfyUI's own custom-node loader, and prompts go through the host's
``validate_prompt`` and ``PromptExecutor``. What the tests add are tiny FLUX models with
seeded random weights, built through ``comfy.supported_models.Flux``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import importlib.util
import logging
import os
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACK_DIR_NAME = "comfyui_bokeh_diffusion"

TINY = dict(
    in_channels=16, out_channels=16, vec_in_dim=32, context_in_dim=64, hidden_size=64, mlp_ratio=2.0,
    num_heads=2, depth=2, depth_single_blocks=2, axes_dim=[4, 14, 14], theta=10000, patch_size=2,
    qkv_bias=True, guidance_embed=True,
    txt_ids_dims=[],  # ComfyUI 0.8.0's FluxParams wants it ([] for FLUX.1); 0.3.75 has no such field
)
# A mid-size config for benchmarks: FLUX.1's shape at a quarter of the width and a third of the depth.
MID = dict(TINY, hidden_size=768, num_heads=6, depth=6, depth_single_blocks=12, axes_dim=[16, 56, 56],
           context_in_dim=256, vec_in_dim=64, mlp_ratio=4.0)
# FLUX.1-dev's architecture (random weights; for the GPU benchmark).
FULL = dict(TINY, hidden_size=3072, num_heads=24, depth=19, depth_single_blocks=38, axes_dim=[16, 56, 56],
            context_in_dim=4096, vec_in_dim=768, mlp_ratio=4.0)

_state = {}


def _host_root() -> Path:
    spec = importlib.util.spec_from_file_location("_bokeh_comfy_host", REPO / "tools" / "comfy_host.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.find_host()


def boot(cpu: bool = True) -> Path:
    """Import the host (once per process). Returns the ComfyUI root."""
    if "root" in _state:
        return _state["root"]
    root = _host_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = cpu
    # `nodes` puts ComfyUI/comfy first on sys.path; import the top-level `utils` package first.
    import utils.extra_config  # noqa: F401

    _state["root"] = root
    return root


def load_pack(extra_nodes: dict | None = None):
    """Load ComfyUI's built-in extra nodes and this pack through ComfyUI's own loader.

    Returns the pack's module as the loader registered it."""
    if "pack" in _state:
        return _state["pack"]
    boot()
    import folder_paths
    import nodes

    nodes_dir = Path(tempfile.mkdtemp(prefix="bokeh_custom_nodes_"))
    (nodes_dir / PACK_DIR_NAME).symlink_to(REPO, target_is_directory=True)
    folder_paths.folder_names_and_paths["custom_nodes"] = ([str(nodes_dir)], set())
    out_dir = Path(tempfile.mkdtemp(prefix="bokeh_output_"))
    folder_paths.set_output_directory(str(out_dir))
    folder_paths.set_temp_directory(str(out_dir / "temp"))
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
    module_path = str(nodes_dir / PACK_DIR_NAME)
    sys_name = module_path.replace(".", "_x_")
    pack = sys.modules.get(sys_name)
    if pack is None:
        raise RuntimeError(f"ComfyUI did not load the pack from {module_path}; see the log above")
    _state["pack"] = pack
    _state["pack_name"] = sys_name
    from tiny_nodes import register_test_nodes

    register_test_nodes()
    return pack


def pack_module(name: str):
    """A submodule of the pack as ComfyUI loaded it, e.g. pack_module('attention.bokeh')."""
    load_pack()
    return importlib.import_module(f"{_state['pack_name']}.{name}")


def flux_config(**overrides) -> dict:
    """A unet_config for comfy.supported_models.Flux, limited to the fields this host's
    FluxParams knows (0.3.75 and 0.8.0 differ)."""
    boot()
    import comfy.ldm.flux.model as flux_model

    cfg = dict(TINY)
    cfg.update(overrides)
    known = {f.name for f in dataclasses.fields(flux_model.FluxParams)}
    cfg = {k: v for k, v in cfg.items() if k in known}
    cfg["image_model"] = "flux"
    return cfg


def random_state_dict(diffusion_model, seed: int):
    """Seeded random weights: fan-in scaled normals for matrices, ones for norm scales."""
    import torch

    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, p in diffusion_model.state_dict().items():
        if name.endswith(".scale") or (p.ndim == 1 and "norm" in name and name.endswith(".weight")):
            sd[name] = torch.ones(p.shape)
        elif p.ndim >= 2:
            fan_in = p[0].numel()
            sd[name] = torch.randn(p.shape, generator=g) / fan_in**0.5
        else:
            sd[name] = torch.randn(p.shape, generator=g) * 0.02
    return sd


def tiny_flux(seed: int = 0, dtype=None, device=None, **overrides):
    """A FLUX ModelPatcher built through comfy.supported_models.Flux with seeded random weights."""
    boot()
    import torch
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    dtype = dtype or torch.float32
    model_conf = comfy.supported_models.Flux(flux_config(**overrides))
    model_conf.set_inference_dtype(dtype, None)
    load_device = device or mm.get_torch_device()
    offload_device = mm.unet_offload_device()
    model = model_conf.get_model({}, device=offload_device if device is None else device)
    model.load_model_weights(random_state_dict(model.diffusion_model, seed), "")
    model.diffusion_model.to(dtype)
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


def flux_conditioning(seed: int = 0, tokens: int = 8, context_dim: int = 64, vec_dim: int = 32, guidance: float = 3.0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, tokens, context_dim, generator=g), {
        "pooled_output": torch.randn(1, vec_dim, generator=g), "guidance": guidance,
    }]]


class _Server:
    """What PromptExecutor needs of a server: no client, messages kept for the test."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.messages = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


@dataclasses.dataclass
class RunResult:
    ok: bool
    outputs: dict  # node id -> tuple of outputs (as cached by the executor)
    ui: dict
    errors: dict  # validation: {"error": ..., "node_errors": ...}; execution: the error message
    messages: list


def run_prompt(prompt: dict, outputs: list[str] | None = None) -> RunResult:
    """Validate (host's validate_prompt) and execute (host's PromptExecutor) an API-format prompt."""
    load_pack()
    import execution

    prompt_id = str(uuid.uuid4())
    valid = asyncio.run(execution.validate_prompt(prompt_id, prompt, outputs))
    if not valid[0]:
        return RunResult(False, {}, {}, {"error": valid[1], "node_errors": valid[3]}, [])
    server = _Server()
    executor = execution.PromptExecutor(server, cache_type=execution.CacheType.CLASSIC, cache_args={"lru": 0, "ram": 0})
    executor.execute(prompt, prompt_id, {}, valid[2])
    node_outputs = {}
    for node_id in prompt:
        entry = executor.caches.outputs.get(node_id)
        if entry is not None:
            node_outputs[node_id] = entry.outputs
    errors = {}
    for event, data in executor.status_messages:
        if event == "execution_error":
            errors = {"exception_type": data["exception_type"], "exception_message": data["exception_message"],
                      "node_id": data["node_id"], "traceback": data["traceback"]}
    ui = getattr(executor, "history_result", {}).get("outputs", {})
    return RunResult(executor.success and not errors, node_outputs, ui, errors, executor.status_messages)


def quiet_host_logging():
    logging.getLogger().setLevel(logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")


def load_for_inference(model):
    """Load a ModelPatcher (and its additional models) the way sampling does: object patches
    applied, other clones of the same weights unpatched."""
    import comfy.model_management as mm

    mm.load_models_gpu([model] + model.get_nested_additional_models())
    return model


def diffusion_forward(model, x, timestep, context, y, guidance, cond_or_uncond=(0,), sample_sigmas=None):
    """One call of the (patched) FLUX diffusion model, with the transformer_options the sampler
    would build: the model's own, plus cond_or_uncond, sigmas and sample_sigmas."""
    import torch

    load_for_inference(model)
    to = dict(model.model_options.get("transformer_options", {}))
    to["cond_or_uncond"] = list(cond_or_uncond)
    to["sigmas"] = timestep
    if sample_sigmas is not None:
        to["sample_sigmas"] = sample_sigmas
    with torch.no_grad():
        return model.model.diffusion_model(x, timestep, context, y=y, guidance=guidance, transformer_options=to)


def write_adapter(folder, tensors: dict, name: str = "bokeh_test.safetensors", config: dict | None = None):
    """Write adapter tensors as a .safetensors file into ``folder`` (registered as a
    bokeh_diffusion model folder) and return its path."""
    import json

    from safetensors.torch import save_file

    load_pack()
    import folder_paths

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    folder_paths.add_model_folder_path("bokeh_diffusion", str(folder))
    return path


def tiny_sd15(seed: int = 0):
    """A tiny SD1.5 UNet ModelPatcher (a non-FLUX model, for the wrong-family errors)."""
    boot()
    import torch
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    cfg = {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
           "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": 32, "num_res_blocks": [1],
           "transformer_depth": [0], "channel_mult": [1], "transformer_depth_middle": 0,
           "use_linear_in_transformer": False, "context_dim": 32, "num_heads": 2, "num_head_channels": -1,
           "transformer_depth_output": [0, 0]}
    model_conf = comfy.supported_models.SD15(cfg)
    model_conf.set_inference_dtype(torch.float32, None)
    model = model_conf.get_model({})
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


def write_header_only(path, shapes: dict):
    """A safetensors file with a full header and no tensor data (for layout tests of the
    583 MB release without shipping it)."""
    import json
    import struct

    header, offset = {}, 0
    for key, shape in shapes.items():
        n = 4
        for s in shape:
            n *= s
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    Path(path).write_bytes(struct.pack("<Q", len(raw)) + raw)
    return Path(path)


def tiny_vae(seed: int = 0):
    """A real comfy.sd.VAE (AutoencoderKL, 16 latent channels, 8x like FLUX's) at tiny width."""
    boot()
    import comfy.sd

    ddconfig = {"double_z": True, "z_channels": 16, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 32,
                "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    from comfy.ldm.models.autoencoder import AutoencoderKL

    shapes = AutoencoderKL(ddconfig=ddconfig, embed_dim=16)
    sd = random_state_dict(shapes, seed)
    vae = comfy.sd.VAE(sd=sd, config={"params": {"ddconfig": ddconfig, "embed_dim": 16}})
    vae.latent_channels = 16
    return vae


def random_adapter_sd(hidden, blocks, rank=4, context=16, embed_hidden=8, seed=0, qk=True, scale=0.3):
    """Random adapter tensors in the released key layout (spec section 6)."""
    import torch

    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * scale

    sd = {
        "embedding_layer.0.weight": r(embed_hidden, 1) * 3,
        "embedding_layer.0.bias": r(embed_hidden),
        "embedding_layer.2.weight": r(context, embed_hidden),
        "embedding_layer.2.bias": r(context),
    }
    names = ["to_v_bokeh", "to_k_bokeh"] + (["to_q_adp", "to_k_adp"] if qk else [])
    for i in blocks:
        for name in names:
            fan = hidden if name.endswith("_adp") else context
            sd[f"adapter_modules.{i}.{name}.down.weight"] = r(rank, fan) / fan**0.5
            sd[f"adapter_modules.{i}.{name}.up.weight"] = r(hidden, rank)
    return sd


def ksampler_node(model, latent, steps=4, cfg=1.0, seed=65578):
    return {"class_type": "KSampler", "inputs": {
        "model": model, "positive": ["cond", 0], "negative": ["cond", 0], "latent_image": latent,
        "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}}


def tiny_graph(adapter_name=None, blur=15.0, steps=3, cfg=1.0):
    """An API prompt on tiny models: model, cond, vae, latent [-> loader -> apply] -> sample -> save
    (SaveLatent). Node ids are those names; tests add or rewire nodes."""
    g = {
        "model": {"class_type": "BokehTestTinyFlux", "inputs": {"seed": 0, "preset": "tiny"}},
        "cond": {"class_type": "BokehTestConditioning", "inputs": {"seed": 1, "guidance": 3.0, "preset": "tiny"}},
        "vae": {"class_type": "BokehTestTinyVAE", "inputs": {"seed": 0}},
        "latent": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    }
    model = ["model", 0]
    if adapter_name is not None:
        g["loader"] = {"class_type": "BokehAdapterLoader", "inputs": {"adapter_name": adapter_name}}
        g["apply"] = {"class_type": "BokehApplyAdapter", "inputs": {"model": model, "bokeh_adapter": ["loader", 0], "blur_level": blur}}
        model = ["apply", 0]
    g["sample"] = ksampler_node(model, ["latent", 0], steps=steps, cfg=cfg, seed=7)
    g["save"] = {"class_type": "SaveLatent", "inputs": {"samples": ["sample", 0], "filename_prefix": "bokeh_test"}}
    return g
