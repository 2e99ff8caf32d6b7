"""Test fixtures on a real host: tiny FLUX models, a tiny VAE and SD1.5 UNet with seeded random
weights, random adapters in the released key layout, and safetensors writers. Used by the
tests, the benchmarks and the sweep runner's --check mode; never by the pack itself."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from inprocess import boot, load_pack

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


def write_adapter(folder, tensors: dict, name: str = "bokeh_test.safetensors", config: dict | None = None):
    """Write adapter tensors into ``folder`` (registered as a bokeh_diffusion model folder) and
    return the file's path: a .safetensors file, or for a .bin name a PyTorch zip checkpoint
    (torch.save of the state dict, as the photo adapter is published)."""
    import json

    from safetensors.torch import save_file

    load_pack()
    import folder_paths

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    listed = folder_paths.get_full_path("bokeh_diffusion", name)
    if listed is not None and Path(listed).resolve() != path.resolve():
        raise ValueError(f"test setup: {name} is already listed from another folder ({listed}); use a unique name")
    if path.suffix == ".bin":
        import torch

        torch.save(dict(tensors), str(path))
    else:
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


def write_example_photo(name: str) -> Path:
    """A photo under ``name`` in the host's input folder, when the host has none there (ComfyUI
    ships input/example.png; a copy without it gets a generated gradient)."""
    import numpy as np
    from PIL import Image

    boot()
    import folder_paths

    path = Path(folder_paths.get_input_directory()) / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        y, x = np.mgrid[0:300, 0:400]
        rgb = np.stack([x * 255 // 399, y * 255 // 299, (x + y) * 255 // 698], -1).astype(np.uint8)
        Image.fromarray(rgb).save(path)
    return path


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


def tiny_flux2(seed: int = 0):
    """A tiny FLUX.2 (comfy.supported_models.Flux2: the FLUX class with global modulation, SiLU-gated
    MLPs, no biases; the options model_detection sets for FLUX.2), for the wrong-family errors."""
    import torch
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    cfg = flux_config(axes_dim=[8, 8, 8, 8], global_modulation=True, mlp_silu_act=True, qkv_bias=False, ops_bias=False,
                      vec_in_dim=None, default_ref_method="index", ref_index_scale=10.0)
    cfg["image_model"] = "flux2"
    model_conf = comfy.supported_models.Flux2(cfg)
    model_conf.set_inference_dtype(torch.float32, None)
    model = model_conf.get_model({})
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


CHROMA_TINY = dict(in_channels=64, out_channels=64, context_in_dim=64, hidden_size=64, mlp_ratio=2.0, num_heads=2, depth=2,
                   depth_single_blocks=2, axes_dim=[4, 14, 14], theta=10000, patch_size=2, qkv_bias=True, in_dim=64, out_dim=64,
                   hidden_dim=32, n_layers=1, txt_ids_dims=[], vec_in_dim=None)  # the last two: 0.8.0+ (unused by Chroma)


def tiny_chroma(seed: int = 0):
    """A tiny Chroma (comfy.supported_models.Chroma: its own model class around FLUX.1's block
    classes) with seeded random weights, or None on a host without Chroma."""
    import torch
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models

    if not hasattr(comfy.supported_models, "Chroma"):
        return None
    import comfy.ldm.chroma.model as chroma_model

    known = {f.name for f in dataclasses.fields(chroma_model.ChromaParams)}
    model_conf = comfy.supported_models.Chroma(dict({k: v for k, v in CHROMA_TINY.items() if k in known}, image_model="chroma"))
    model_conf.set_inference_dtype(torch.float32, None)
    model = model_conf.get_model({})
    model.load_model_weights(random_state_dict(model.diffusion_model, seed), "")
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())
