"""A new adapter with the authors' initialisation, and trained adapters written in the pack's
checkpoint format (the layout weights/checkpoint.py reads; spec bokeh-diffusion.md section 6).

Init (spec bokeh-training.md 1.3): the K embedding as PyTorch's default Linear init; every
low-rank pair ``down ~ N(0, (1/r)^2)``, ``up = 0``, so the adapted model equals the base model
at step 0. Everything is drawn from one torch.Generator (no global RNG).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from ..attention.bokeh import PAIR_NAMES, PHOTO, TEXT, AdapterDims, BokehAdapter

# The photo adapter's files name the bokeh pairs *_dof (bokehdepth-photo.md section 1): that is
# how the loader tells the flavour (and so the K mapping) from the keys.
DOF_NAMES = {"to_k_bokeh": "to_k_dof", "to_v_bokeh": "to_v_dof"}
METADATA_KEY = "bokeh_training"


def new_adapter(hidden: int, blocks, rank: int = 128, context: int = 768, embed_hidden: int = 64,
                alpha: float | None = None, qk: bool = True, flavour: str = TEXT, seed: int = 0,
                device=None) -> BokehAdapter:
    """A float32 adapter over ``blocks`` (adapter block indices: 0..D-1 double, then single)."""
    pairs = tuple(p for p in PAIR_NAMES if qk or not p.endswith("_adp"))
    dims = AdapterDims(hidden=hidden, context=context, embed_hidden=embed_hidden, embed_input=1, rank=rank,
                       blocks={int(i): pairs for i in blocks}, alpha=alpha, flavour=flavour)
    adapter = BokehAdapter(dims, dtype=torch.float32)
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for layer in (adapter.embedding_layer[0], adapter.embedding_layer[2]):
            # nn.Linear's default: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias alike
            bound = 1.0 / math.sqrt(layer.weight.shape[1])
            layer.weight.copy_(torch.rand(layer.weight.shape, generator=g) * 2 * bound - bound)
            layer.bias.copy_(torch.rand(layer.bias.shape, generator=g) * 2 * bound - bound)
        for name, p in adapter.adapter_modules.named_parameters():
            if name.endswith("down.weight"):
                p.copy_(torch.randn(p.shape, generator=g) / rank)
            else:
                p.zero_()
    return adapter.to(device) if device is not None else adapter


def file_tensors(adapter: BokehAdapter) -> dict[str, torch.Tensor]:
    """The adapter's tensors under the file's key names, float32 on the CPU. An alpha other than
    the rank is folded into ``up`` (scale alpha / r), so the file loads at scale 1 without a
    config.json (the loader reads alpha only from config.json, one per folder)."""
    dims = adapter.dims
    scale = 1.0 if dims.alpha is None else dims.alpha / dims.rank
    out = {}
    for key, value in adapter.state_dict().items():
        value = value.detach().to("cpu", torch.float32)
        if scale != 1.0 and key.endswith(".up.weight"):
            value = value * scale
        if dims.flavour == PHOTO:
            for old, new in DOF_NAMES.items():
                key = key.replace(f".{old}.", f".{new}.")
        out[key] = value.contiguous()
    return out


def save_adapter(adapter: BokehAdapter, path, metadata: dict) -> Path:
    """Write ``adapter`` as a .safetensors file with ``metadata`` (JSON under "bokeh_training"),
    atomically (a temporary file renamed over the target)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(file_tensors(adapter), str(tmp), metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    os.replace(tmp, path)
    return path


def read_metadata(path) -> dict:
    """The training metadata of a file written by save_adapter ({} for other files)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}
