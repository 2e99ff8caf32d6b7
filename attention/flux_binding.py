"""The ONE module that reaches into ComfyUI's FLUX: norm wrappers, attention override, batch layout.

How the adapter meets the host (ComfyUI >= 0.3.76; read in 0.3.75+4967f81 and 0.8.0):
- q/k low-rank update: an object patch replaces each adapted block's ``QKNorm``
  (``double_blocks.i.img_attn.norm``: image stream only; ``single_blocks.j.norm``: whole
  sequence). The norm receives q and k after projection and before the RMS norm and RoPE.
- bokeh bias and grounding: ``transformer_options["optimized_attention_override"]``, called
  with q, k, v (B, H, L, D) after norm and RoPE. ``block_type`` / ``block_index`` tell the block.
- the adapter's weights ride as an additional model (its own ModelPatcher), so ComfyUI's model
  management loads them with the model and offloads them with it.
- nothing heavy in ``model_options``: the override object is shared, not copied, by clone().
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass

import torch
from torch import nn

from .bokeh import UNCOND_INPUT, BokehAdapter, add_lowrank, k_to_input
from .errors import BokehHostError, BokehInputError, BokehModelError
from .grounded import gather, grounding_steps, in_window, plan_indices, plan_rows

log = logging.getLogger(__name__)

OVERRIDE_KEY = "optimized_attention_override"
ADDITIONAL_MODELS_KEY = "bokeh_diffusion_adapter"


class BokehQKNorm(nn.Module):
    """Wraps a block's QKNorm: low-rank update of the flat projections, then the base norm.

    The base norm's children are re-registered under their own names so weight keys
    (``...norm.query_norm.scale``) and model management see the same parameters as before.
    The adapter pairs are held without registering them: their weights belong to the
    adapter's own ModelPatcher, not to the FLUX model.
    """

    def __init__(self, base: nn.Module, to_q, to_k, lora_scale: float):
        super().__init__()
        for name, child in base.named_children():
            self.add_module(name, child)
        self.__dict__["base"] = base
        self.__dict__["to_q"] = to_q
        self.__dict__["to_k"] = to_k
        self.lora_scale = lora_scale

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        # Spec section 2.2: q = q + s * to_q_adp(q), k = k + s * to_k_adp(k), on (B, L, hidden).
        if self.to_q is not None:
            q = add_lowrank(q, self.to_q, self.lora_scale)
        if self.to_k is not None:
            k = add_lowrank(k, self.to_k, self.lora_scale)
        return self.base(q, k, v)


@dataclass(frozen=True)
class Grounding:
    pivot: int  # row of the pivot in each latent batch
    fraction: float  # share of the sampler's steps that is grounded (0.8 = 24 of 30)
    steps: int  # exact number of grounded steps; -1 = use the fraction


class BokehAttention:
    """The attention override: bokeh bias for every adapted block, grounding when asked.

    Immutable once built; ``clone()`` of the model shares it (``__deepcopy__`` returns self).
    q, k, v arrive as (B, H, L, D); the result is (B, L, H*D).
    """

    def __init__(self, adapter: BokehAdapter, block_map, k_values, bokeh_scale, lora_scale, previous=None, grounding=None, source=""):
        self.adapter = adapter
        self.block_map = dict(block_map)  # ("double"|"single", host index) -> adapter block
        self.k_values = tuple(float(k) for k in k_values)  # one per latent row, or one for all
        self.bokeh_scale = float(bokeh_scale)
        self.lora_scale = float(lora_scale)
        self.previous = previous
        self.grounding = grounding
        self.source = source
        self._bias_cache: dict = {}
        self._call: tuple = (None, None, None)  # (sigmas, cond_or_uncond, per-call state)

    def __deepcopy__(self, memo):
        return self

    def with_options(self, **changes) -> "BokehAttention":
        fields = dict(
            adapter=self.adapter, block_map=self.block_map, k_values=self.k_values, bokeh_scale=self.bokeh_scale,
            lora_scale=self.lora_scale, previous=self.previous, grounding=self.grounding, source=self.source,
        )
        fields.update(changes)
        return BokehAttention(**fields)

    # -- per-call helpers -------------------------------------------------------------
    def _row_inputs(self, cond_or_uncond, rows_per_chunk: int) -> tuple[float, ...]:
        ks = self.k_values
        if len(ks) == 1:
            ks = ks * rows_per_chunk
        elif len(ks) != rows_per_chunk:
            raise BokehInputError(
                f"The model carries {len(ks)} blur levels (one per latent row) but the latent batch has "
                f"{rows_per_chunk} rows. Feed the LATENT from the same Bokeh Pivot Batch node to the sampler."
            )
        pos = tuple(k_to_input(k) for k in ks)
        out = []
        for c in cond_or_uncond:
            out.extend(pos if c == 0 else (UNCOND_INPUT,) * rows_per_chunk)
        return tuple(out)

    def _biases(self, inputs: tuple[float, ...], device, dtype) -> dict[int, torch.Tensor]:
        """{adapter block: (rows, hidden)} scaled biases; computed once per distinct K set
        (the adapter's weights never change, so the cache outlives a sampling run)."""
        key = (inputs, device, dtype)
        hit = self._bias_cache.get(key)
        if hit is None:
            if len(self._bias_cache) > 64:
                self._bias_cache.clear()
            with torch.no_grad():
                raw = self.adapter.bokeh_biases(torch.tensor(inputs, dtype=torch.float32))
            hit = {i: (self.bokeh_scale * b).to(device=device, dtype=dtype) for i, b in raw.items()}
            self._bias_cache[key] = hit
        return hit

    def _grounded_now(self, transformer_options) -> bool:
        sigmas = transformer_options.get("sigmas")
        schedule = transformer_options.get("sample_sigmas")
        if self.grounding is None or sigmas is None or schedule is None:
            return False
        sched = [float(s) for s in schedule.flatten()]
        g = grounding_steps(len(sched) - 1, self.grounding.fraction, self.grounding.steps)
        return in_window(float(sigmas.flatten()[0]), sched, g)

    def _per_call(self, to, q) -> tuple:
        """(rows per chunk, {adapter block: bias rows}, grounded?) for this model call: worked
        out at its first block and reused by the others (one model call = one sigmas tensor)."""
        sigmas, cond_or_uncond = to.get("sigmas"), to.get("cond_or_uncond") or [0]
        cached_sigmas, cached_cou, state = self._call
        if sigmas is not None and cached_sigmas is sigmas and cached_cou is cond_or_uncond and state[3] == q.shape[0]:
            return state
        rows = q.shape[0] // len(cond_or_uncond)
        biases = self._biases(self._row_inputs(cond_or_uncond, rows), q.device, q.dtype)
        grounded = 0 in cond_or_uncond and self._grounded_now(to)
        state = (rows, biases, grounded, q.shape[0], {})  # last: grounding plans by "extend keys?"
        self._call = (sigmas, cond_or_uncond, state)
        return state

    # -- the override -----------------------------------------------------------------
    def __call__(self, func, q, k, v, heads, **kwargs):
        previous = self.previous
        base = (lambda *a, **kw: previous(func, *a, **kw)) if previous is not None else func
        to = kwargs.get("transformer_options") or {}
        block_type = to.get("block_type")
        if block_type is None:
            raise BokehHostError(
                "This ComfyUI does not report which FLUX block is running (transformer_options['block_type'] "
                "is missing). The Bokeh adapter needs ComfyUI 0.3.76 or newer: update ComfyUI."
            )
        index = self.block_map.get((block_type, to.get("block_index")))
        if index is None:  # a block without adapter weights: untouched, never grounded
            return base(q, k, v, heads, **kwargs)

        rows, biases, grounded, _, plans = self._per_call(to, q)
        if grounded:
            out = self._grounded(base, q, k, v, heads, kwargs, to.get("cond_or_uncond") or [0], rows, index, plans)
        else:
            out = base(q, k, v, heads, **kwargs)

        bias = biases.get(index)
        if bias is not None:
            if out.dtype == bias.dtype and not out.requires_grad:
                out.add_(bias.unsqueeze(1))  # the backend's fresh output: add in place
            else:
                out = out + bias.unsqueeze(1).to(out.dtype)
        return out

    def _grounded(self, base, q, k, v, heads, kwargs, cond_or_uncond, rows, index, plans):
        """Grounded attention for this call (spec 3): at most two backend calls, one for the
        rows that attend normally and one for the targets with extended keys. The row plan
        and its index tensors are made once per model call, not per block."""
        extend = self.adapter.pair(index, "to_k_adp") is not None
        if extend not in plans:
            groups = plan_rows(cond_or_uncond, rows, self.grounding.pivot, extend)
            plans[extend] = [
                (plan, extended, plan_indices(plan, q.device), all(r == i for i, (r, _) in enumerate(plan)))
                for plan, extended in zip(groups, (False, True)) if plan
            ]
        out = None
        for plan, extended, (idx, qidx), in_order in plans[extend]:
            qg, kg, vg, mg = gather(q, k, v, kwargs.get("mask"), idx, qidx, extended)
            res = base(qg, kg, vg, heads, **dict(kwargs, mask=mg))
            if len(plan) == q.shape[0] and in_order:
                return res
            if out is None:
                out = res.new_empty((q.shape[0],) + tuple(res.shape[1:]))
            out[idx] = res
        return out


# -- applying to a ModelPatcher ---------------------------------------------------------

def flux_blocks(model) -> tuple[int, int, int]:
    """(double blocks, single blocks, hidden size) of a FLUX ModelPatcher, or a typed error."""
    import comfy.ldm.flux.model as flux_model

    inner = getattr(model, "model", None)
    dm = getattr(inner, "diffusion_model", None)
    if type(dm) is not flux_model.Flux:
        found = type(dm).__name__ if dm is not None else type(model).__name__
        family = type(inner).__name__ if inner is not None else "?"
        raise BokehModelError(
            f"The Bokeh adapter works on FLUX.1 models; this model is {family} ({found}). "
            "Load FLUX.1-dev with UNETLoader or CheckpointLoaderSimple and connect that MODEL."
        )
    if "block_index" not in flux_model.Flux.forward_orig.__code__.co_consts:
        raise BokehHostError(
            "This ComfyUI's FLUX does not report the running block to attention overrides. "
            "The Bokeh adapter needs ComfyUI 0.3.76 or newer: update ComfyUI."
        )
    return len(dm.double_blocks), len(dm.single_blocks), dm.hidden_size


def compute_dtype(model) -> torch.dtype:
    inner = model.model
    return getattr(inner, "manual_cast_dtype", None) or inner.get_dtype()


def current_binding(model) -> BokehAttention | None:
    override = model.model_options.get("transformer_options", {}).get(OVERRIDE_KEY)
    return override if isinstance(override, BokehAttention) else None


def norm_paths(block_type: str, index: int) -> str:
    if block_type == "double":
        return f"diffusion_model.double_blocks.{index}.img_attn.norm"
    return f"diffusion_model.single_blocks.{index}.norm"


_patchers: "weakref.WeakKeyDictionary[BokehAdapter, dict]" = weakref.WeakKeyDictionary()


def _adapter_patcher(adapter: BokehAdapter, load_device, offload_device):
    """One ModelPatcher per adapter weights and devices; model clones clone it (no weight copy)."""
    import comfy.model_patcher

    per_adapter = _patchers.setdefault(adapter, {})
    key = (str(load_device), str(offload_device))
    if key not in per_adapter:
        per_adapter[key] = comfy.model_patcher.ModelPatcher(adapter, load_device=load_device, offload_device=offload_device)
    return per_adapter[key]


def apply_adapter(model, adapter: BokehAdapter, block_map, k_values, bokeh_scale=1.0, lora_scale=1.0, source=""):
    """Return a clone of ``model`` with the adapter bound. ``model`` itself is not changed.

    Applying to a model that already carries a Bokeh adapter replaces it (no stacking).
    Everything that can fail is checked before the clone is touched, so nothing is half-patched.
    """
    previous = current_binding(model)
    if previous is not None:
        log.info("Bokeh adapter: replacing the adapter already on this model (%s); adapters do not stack", previous.source or "?")
    other_override = previous.previous if previous is not None else model.model_options.get("transformer_options", {}).get(OVERRIDE_KEY)

    norms = {}
    for (block_type, index), adapter_index in block_map.items():
        path = norm_paths(block_type, index)
        base = model.get_model_object(path)
        if isinstance(base, BokehQKNorm):
            base = base.base
        to_q = adapter.pair(adapter_index, "to_q_adp")
        to_k = adapter.pair(adapter_index, "to_k_adp")
        norms[path] = BokehQKNorm(base, to_q, to_k, lora_scale) if (to_q or to_k) else base

    binding = BokehAttention(adapter, block_map, k_values, bokeh_scale, lora_scale, previous=other_override, source=source)
    adapter_patcher = _adapter_patcher(adapter, model.load_device, model.offload_device)

    out = model.clone()
    if previous is not None:  # drop the old adapter's norm wrappers on blocks the new one leaves alone
        for path, obj in list(out.object_patches.items()):
            if isinstance(obj, BokehQKNorm):
                out.add_object_patch(path, obj.base)
    for path, obj in norms.items():
        out.add_object_patch(path, obj)
    out.model_options.setdefault("transformer_options", {})[OVERRIDE_KEY] = binding
    out.set_additional_models(ADDITIONAL_MODELS_KEY, [adapter_patcher])
    return out


def rebind(model, **changes):
    """Clone ``model`` with its Bokeh binding changed (per-row K values, grounding)."""
    binding = current_binding(model)
    if binding is None:
        raise BokehModelError(
            "This MODEL has no Bokeh adapter. Connect it through 'Apply Bokeh Adapter' first."
        )
    out = model.clone()
    out.model_options["transformer_options"][OVERRIDE_KEY] = binding.with_options(**changes)
    return out


