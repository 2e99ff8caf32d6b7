"""The Bokeh adapter in plain torch: K embedding, low-rank pairs, per-block bokeh bias.

Spec: shared/spec/bokeh-diffusion.md sections 1 and 2; the photo adapter (BokehDepth stage 1,
bokehdepth-photo.md) is the same module with another K mapping. No ComfyUI import here.

Module names mirror the released checkpoint's keys, so a state dict loads with
``load_state_dict(strict=True)``:

    embedding_layer.{0,2}.{weight,bias}
    adapter_modules.{i}.{to_q_adp,to_k_adp,to_k_bokeh,to_v_bokeh}.{down,up}.weight
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import nn

from .k_levels import K_RANGE, PHOTO, PHOTO_K_MIN, TEXT, effective_k  # noqa: F401 (the pack imports them from here)

# Spec section 1: the network sees K / 30; unconditional rows see the raw value -1.0.
UNCOND_INPUT = -1.0
PAIR_NAMES = ("to_q_adp", "to_k_adp", "to_v_bokeh", "to_k_bokeh")
FLAVOUR_NAMES = {TEXT: "text-to-image adapter (Bokeh Diffusion, FLUX.1-dev)",
                 PHOTO: "photo adapter (BokehDepth, FLUX.1 Kontext)"}


def k_to_input(k: float, flavour: str = TEXT) -> float:
    """User-facing blur level K -> the float the embedding MLP sees."""
    return effective_k(k, flavour) / K_RANGE


@dataclass(frozen=True)
class AdapterDims:
    """Everything about an adapter that is read off its tensor shapes."""

    hidden: int  # attention hidden size of the host model (3072 for FLUX.1)
    context: int  # bokeh context size, the embedding's output (768 in the release)
    embed_hidden: int  # width of the embedding MLP's middle layer (64)
    embed_input: int  # inputs of the embedding MLP (1: one float per image)
    rank: int  # low-rank r of every pair (128)
    blocks: dict[int, tuple[str, ...]] = field(default_factory=dict)  # adapter block -> pairs present
    alpha: float | None = None  # optional alpha; scale alpha / rank
    flavour: str = TEXT  # TEXT or PHOTO: which K mapping the embedding was trained with

    @property
    def flavour_name(self) -> str:
        return FLAVOUR_NAMES[self.flavour]

    @property
    def has_qk(self) -> bool:
        return any("to_q_adp" in p or "to_k_adp" in p for p in self.blocks.values())


class LowRank(nn.Module):
    """``y = up(down(x)) * scale`` without bias, in the weight dtype, cast back to x's dtype."""

    def __init__(self, in_features: int, out_features: int, rank: int, scale: float = 1.0, device=None, dtype=None):
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.up = nn.Linear(rank, out_features, bias=False, device=device, dtype=dtype)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(self.down(x.to(self.down.weight.dtype)))
        if self.scale != 1.0:
            y = y * self.scale
        return y.to(x.dtype)


class BokehAdapter(nn.Module):
    """The adapter's weights: the K embedding MLP and one set of low-rank pairs per adapted block."""

    def __init__(self, dims: AdapterDims, device=None, dtype=None):
        super().__init__()
        self.dims = dims
        self.embedding_layer = nn.Sequential(
            nn.Linear(dims.embed_input, dims.embed_hidden, device=device, dtype=dtype),
            nn.ReLU(),
            nn.Linear(dims.embed_hidden, dims.context, device=device, dtype=dtype),
        )
        scale = 1.0 if dims.alpha is None else dims.alpha / dims.rank
        modules = {}
        for index, pairs in sorted(dims.blocks.items()):
            block = nn.Module()
            for name in pairs:
                in_features = dims.hidden if name.endswith("_adp") else dims.context
                setattr(block, name, LowRank(in_features, dims.hidden, dims.rank, scale, device=device, dtype=dtype))
            modules[str(index)] = block
        self.adapter_modules = nn.ModuleDict(modules)

    def pair(self, block: int, name: str) -> LowRank | None:
        key = str(block)
        if key not in self.adapter_modules:
            return None
        return getattr(self.adapter_modules[key], name, None)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs: (N,) network inputs (K/30, or -1.0) -> e: (N, context)."""
        w = self.embedding_layer[0].weight
        return self.embedding_layer(inputs.to(device=w.device, dtype=w.dtype).reshape(-1, 1))

    def bokeh_biases(self, inputs: torch.Tensor) -> dict[int, torch.Tensor]:
        """inputs: (N,) -> {adapter block: b_i, (N, hidden)} for every block with ``to_v_bokeh``.

        One bokeh key per image makes the cross-attention softmax exactly 1, so the
        attention result is the bokeh token's value for every query (spec section 2.5);
        ``to_k_bokeh`` is loaded but cannot change the result.
        """
        e = self.embed(inputs)
        out = {}
        for key, block in self.adapter_modules.items():
            to_v = getattr(block, "to_v_bokeh", None)
            if to_v is not None:
                out[int(key)] = to_v(e)
        return out


def add_lowrank(x: torch.Tensor, pair: LowRank, scale: float) -> torch.Tensor:
    """x + scale * pair(x) for a projection held per head.

    x: (B, H, L, D), the head-split view of a flat (B, L, H*D) projection (spec 2.2 applies
    the update on the flat projection). Returns the same layout.

    Fast path: when x's flat view is a strided matrix and the dtypes agree, the update is
    accumulated in place by one GEMM (``addmm_``). The host's FLUX blocks hand the norm fresh
    views of their own qkv projection, read by nothing else (ComfyUI 0.3.75, 0.8.0), so
    writing there saves a full read and write of q and k per block.
    """
    b, h, l, d = x.shape
    down, up = pair.down.weight, pair.up.weight
    scale = scale * pair.scale
    # Not while autograd records the adapter (training): the in-place update would overwrite the
    # projection that the GEMM saved for the adapter's gradient.
    recording = torch.is_grad_enabled() and (down.requires_grad or up.requires_grad)
    if down.dtype == x.dtype and down.device == x.device and not x.requires_grad and not recording:
        try:
            flat = x.transpose(1, 2).view(b * l, h * d)
        except RuntimeError:
            flat = None
        if flat is not None:
            flat.addmm_(torch.nn.functional.linear(flat, down), up.t(), alpha=scale)
            return x
    flat = rearrange(x, "b h l d -> b l (h d)")
    y = pair.up(pair.down(flat.to(down.dtype)))
    return x + rearrange((scale * y).to(x.dtype), "b l (h d) -> b h l d", h=h)
