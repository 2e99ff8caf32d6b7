"""The adapter bound to ComfyUI's FLUX for training: the same model class and the same adapter
module inference uses (attention/bokeh.py, attention/patch.py's norm wrappers), with
what training needs on top:

- the bokeh biases are computed with autograd (inference caches them under no_grad);
- grounding is the training form (spec bokeh-training.md 1.10): one swap index per row, in the
  single blocks or in all blocks; every row attends over [K_row ; K_swap] with [V_row ; V_row];
- optional gradient checkpointing per block, through the host's own block-replace patches.

The q/k low-rank updates are the inference norm wrappers (BokehQKNorm), installed as object
patches of a clone of the model, so loading the clone (comfy.model_management) patches the
shared FLUX module exactly as sampling does; the recomputation of a checkpointed block during
backward therefore sees them too.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..attention.bokeh import BokehAdapter
from ..attention.errors import BokehInputError, BokehModelError
from ..attention.families import fit_adapter, norm_paths
from ..attention.patch import BokehQKNorm
from ..attention.grounded import gather

TRAIN_KEY = "bokeh_diffusion_training"  # transformer_options key of the TrainBinding
SWAP_BLOCKS = ("single", "all")


# ComfyUI's FLUX blocks add their residuals in place (``img += ...``, ``x += ...``; 0.3.75 to
# 0.33), after a LayerNorm saved the same tensor for its backward: autograd through them fails
# (or, under checkpointing, would read a changed input). Training gives each of these norms a
# copy of its input, so the tensor it saves is never written afterwards.
NORMS = {"double": ("img_norm1", "img_norm2", "txt_norm1", "txt_norm2"), "single": ("pre_norm",)}


class CopyInput(nn.Module):
    """A block's LayerNorm run on a copy of its input while autograd records (see NORMS)."""

    def __init__(self, base: nn.Module):
        super().__init__()
        for name, child in base.named_children():
            self.add_module(name, child)
        self.__dict__["base"] = base

    def forward(self, x, *args, **kwargs):
        if torch.is_grad_enabled() and x.requires_grad:
            x = x.clone()
        return self.base(x, *args, **kwargs)


@dataclass(frozen=True)
class TrainBinding:
    adapter: BokehAdapter
    block_map: dict  # ("double"|"single", host index) -> adapter block
    norms: dict  # norm path -> BokehQKNorm object patch


def bind_for_training(model, adapter: BokehAdapter):
    """A clone of the FLUX ModelPatcher ``model`` with ``adapter``'s q/k updates as object
    patches. The base weights are frozen (requires_grad off: their gradients are never wanted).
    The adapter's parameters stay where and in what dtype the caller put them."""
    block_map = fit_adapter(model, adapter.dims)  # adapter block i -> host block (spec section 2)
    paths = norm_paths(model, block_map)
    import comfy.utils

    model.model.diffusion_model.requires_grad_(False)
    out = model.clone()
    norms = {}
    for (block_type, index), adapter_index in block_map.items():
        to_q, to_k = adapter.pair(adapter_index, "to_q_adp"), adapter.pair(adapter_index, "to_k_adp")
        if to_q is None and to_k is None:
            continue
        path = paths[(block_type, index)]
        base = comfy.utils.get_attr(model.model, path)
        base = base.base if isinstance(base, BokehQKNorm) else base
        norms[path] = BokehQKNorm(base, to_q, to_k, 1.0)
        out.add_object_patch(path, norms[path])
    dm = model.model.diffusion_model
    for block_type, blocks in (("double", dm.double_blocks), ("single", dm.single_blocks)):
        for index, block in enumerate(blocks):
            for name in NORMS[block_type]:
                base = getattr(block, name, None)
                if isinstance(base, nn.Module):
                    path = f"diffusion_model.{block_type}_blocks.{index}.{name}"
                    norms[path] = base if isinstance(base, CopyInput) else CopyInput(base)
                    out.add_object_patch(path, norms[path])
    out.model_options.setdefault("transformer_options", {})[TRAIN_KEY] = TrainBinding(adapter, block_map, norms)
    return out


def _rope(xq: torch.Tensor, xk: torch.Tensor, freqs_cis: torch.Tensor):
    """FLUX's RoPE in plain torch (the host's own fallback formula), differentiable."""
    def one(x):
        x_ = x.to(dtype=freqs_cis.dtype).reshape(*x.shape[:-1], -1, 1, 2)
        out = freqs_cis[..., 0] * x_[..., 0]
        out.addcmul_(freqs_cis[..., 1], x_[..., 1])  # the host's order of operations: the same rounding
        return out.reshape(*x.shape).type_as(x)
    return one(xq), one(xk)


@contextlib.contextmanager
def training_mode():
    """The host's differentiable paths while the FLUX forward runs. From ComfyUI 0.2x its RoPE
    (and other ops) take plain torch only when comfy.model_management.in_training is set (the
    fused comfy_kitchen kernels have no backward); core's Train LoRA node sets it the same way.
    Hosts with comfy_kitchen but without that switch (0.8.0) bind the kernel in FLUX's math
    module: it is swapped for the plain formula meanwhile."""
    import comfy.ldm.flux.math as flux_math
    import comfy.model_management as mm

    previous = getattr(mm, "in_training", None)
    rope = getattr(flux_math, "apply_rope", None)
    swap = previous is None and rope is not None and getattr(rope, "__module__", None) != flux_math.__name__ and rope is not _rope
    if previous is not None:
        mm.in_training = True
    if swap:
        flux_math.apply_rope = _rope
    try:
        yield
    finally:
        if previous is not None:
            mm.in_training = previous
        if swap:
            flux_math.apply_rope = rope


def training_binding(model, adapter: BokehAdapter) -> TrainBinding:
    binding = model.model_options.get("transformer_options", {}).get(TRAIN_KEY)
    if not isinstance(binding, TrainBinding) or binding.adapter is not adapter:
        raise BokehModelError("This model is not bound to this adapter for training: call training.binding.bind_for_training first.")
    return binding


def ensure_loaded(model, binding: TrainBinding) -> None:
    """Load the bound clone onto its device with its object patches applied (fully: training
    needs every weight resident), unless that is already so."""
    import comfy.model_management as mm
    import comfy.utils

    patched = all(comfy.utils.get_attr(model.model, p) is obj for p, obj in binding.norms.items())
    if not patched or not binding.norms:
        mm.load_models_gpu([model], force_full_load=True)


class TrainAttention:
    """The attention override for one training forward: grounding by swap index where asked,
    then the bokeh bias of the adapted block (with autograd)."""

    def __init__(self, binding: TrainBinding, biases: dict, swap: torch.Tensor | None, swap_blocks: str):
        self.binding = binding
        self.biases = biases  # adapter block -> (B, hidden)
        self.swap = swap
        self.swap_blocks = swap_blocks

    def __call__(self, func, q, k, v, heads, **kwargs):
        to = kwargs.get("transformer_options") or {}
        block_type = to.get("block_type")
        index = self.binding.block_map.get((block_type, to.get("block_index")))
        if index is None:
            return func(q, k, v, heads, **kwargs)
        if self.swap is not None and (self.swap_blocks == "all" or block_type == "single"):
            # Spec 1.4/1.10: queries of the swap row; keys [K_row ; K_swap] and values [V_row ; V_row]
            # where the block updates keys, else the queries only.
            extend = self.binding.adapter.pair(index, "to_k_adp") is not None
            rows = torch.arange(q.shape[0], device=q.device)
            q, k, v, mask = gather(q, k, v, kwargs.get("mask"), rows, self.swap, extend)
            kwargs = dict(kwargs, mask=mask)
        out = func(q, k, v, heads, **kwargs)
        bias = self.biases.get(index)
        if bias is not None:
            out = out + bias.unsqueeze(1).to(out.dtype)
        return out


def _double(dm):
    def run(args, extra):
        to = dict(args["transformer_options"])  # this block's index, as the recomputation must see it
        block = dm.double_blocks[to["block_index"]]

        def fn(img, txt, vec, pe):  # the block adds into its inputs in place: give it copies
            with training_mode():  # also when recomputed during backward
                return block(img=img.clone(), txt=txt.clone(), vec=vec, pe=pe, attn_mask=args.get("attn_mask"), transformer_options=to)

        img, txt = checkpoint(fn, args["img"], args["txt"], args["vec"], args["pe"], use_reentrant=False)
        return {"img": img, "txt": txt}
    return run


def _single(dm):
    def run(args, extra):
        to = dict(args["transformer_options"])
        block = dm.single_blocks[to["block_index"]]

        def fn(img, vec, pe):
            with training_mode():
                return block(img.clone(), vec=vec, pe=pe, attn_mask=args.get("attn_mask"), transformer_options=to)

        return {"img": checkpoint(fn, args["img"], args["vec"], args["pe"], use_reentrant=False)}
    return run


def checkpoint_patches(dm) -> dict:
    """``patches_replace["dit"]`` entries that run every FLUX block under activation
    checkpointing. The host's ``original_block`` closure is not used: it reads its loop variable
    late, so a recomputation after the loop would run the wrong block."""
    double, single = _double(dm), _single(dm)
    out = {("double_block", i): double for i in range(len(dm.double_blocks))}
    out.update({("single_block", i): single for i in range(len(dm.single_blocks))})
    return out


def check_swap(swap, rows: int, swap_blocks: str, device) -> torch.Tensor | None:
    if swap is None:
        return None
    if swap_blocks not in SWAP_BLOCKS:
        raise BokehInputError(f"swap_blocks is {swap_blocks!r}; expected one of {', '.join(SWAP_BLOCKS)}.")
    swap = torch.as_tensor(swap, dtype=torch.long).to(device)
    if swap.shape != (rows,) or bool(((swap < 0) | (swap >= rows)).any()):
        raise BokehInputError(f"swap indices {swap.tolist()} do not fit a batch of {rows} rows (one index 0..{rows - 1} per row).")
    return swap
