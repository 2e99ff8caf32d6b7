"""The ONE module that reaches into ComfyUI's FLUX: norm wrappers, attention override, batch layout.

How the adapter meets the host (ComfyUI >= 0.3.76; read in 0.3.75+4967f81 and 0.8.0):
- q/k low-rank update: an object patch replaces each adapted block's ``QKNorm``
  (``double_blocks.i.img_attn.norm``: image stream only; ``single_blocks.j.norm``: whole
  sequence). The norm receives q and k after projection and before the RMS norm and RoPE.
- bokeh bias and grounding: the attention override slot
  (``transformer_options["optimized_attention_override"]``), called with q, k, v (B, H, L, D)
  after norm and RoPE. ``block_type`` / ``block_index`` tell the block. The slot holds one
  callable and other nodes (SageAttention patches, other packs) overwrite it, so the binding
  lives under its own key and a diffusion-model wrapper puts the pack's attention into the
  slot at every model call, around whatever override is there then: the order in which the
  nodes were applied does not matter.
- the adapter's weights ride as an additional model (its own ModelPatcher), so ComfyUI's model
  management loads them with the model and offloads them with it.
- nothing heavy in ``model_options``: the binding is shared, not copied, by clone().
- hosts that rebuild a model (0.16+: ``clone(disable_dynamic=True)`` from
  ``cached_patcher_init`` for TorchCompileModel, hooked conditioning, Select Model Device; and
  MultiGPU work units, 0.23+) copy object patches onto a fresh model: an ON_CLONE callback
  re-makes the norm wrappers around the fresh model's own norms, and an ON_DEEPCLONE_MULTIGPU
  callback points a device's clone at that device's copy of the adapter.
"""

from __future__ import annotations

import copy
import inspect
import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from .bokeh import PHOTO, UNCOND_INPUT, BokehAdapter, add_lowrank, k_to_input
from .errors import BokehHostError, BokehInputError, BokehModelError
from .families import model_family
from .foreign import CallProbe, bypass_error
from .grounded import gather, grounding_steps, in_window, plan_indices, plan_rows

log = logging.getLogger(__name__)

OVERRIDE_KEY = "optimized_attention_override"
BINDING_KEY = "bokeh_diffusion"  # transformer_options key of the BokehAttention
WRAPPER_KEY = "bokeh_diffusion"  # key of the diffusion-model wrapper
ADDITIONAL_MODELS_KEY = "bokeh_diffusion_adapter"


class BokehQKNorm(nn.Module):
    """Wraps a block's QKNorm: low-rank update of the flat projections, then the base norm.

    The base norm's children are re-registered under their own names so weight keys
    (``...norm.query_norm.scale``) and model management see the same parameters as before.
    The adapter pairs are held without registering them: their weights belong to the
    adapter's own ModelPatcher, not to the FLUX model.
    """

    def __init__(self, base: nn.Module, to_q, to_k, lora_scale: float, probe: CallProbe | None = None):
        super().__init__()
        for name, child in base.named_children():
            self.add_module(name, child)
        self.__dict__["base"] = base
        self.__dict__["to_q"] = to_q
        self.__dict__["to_k"] = to_k
        self.__dict__["probe"] = probe or CallProbe()
        self.lora_scale = lora_scale

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        self.probe.qk = True  # a store only (no read): nothing for torch.compile to guard on
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


@dataclass
class CallState:
    """What one model call needs, worked out at its first adapted block and reused by the others."""

    rows: int  # latent images per chunk
    biases: dict  # adapter block -> (rows of the call, hidden) scaled bias
    grounded: bool  # this call is inside the grounding window
    plans: dict = field(default_factory=dict)  # "extend keys?" -> grounding plan with index tensors


class BokehAttention:
    """The binding: which adapter, which blocks, K per row, scales, grounding. Immutable once
    built; ``clone()`` of the model shares it (``__deepcopy__`` returns self). What changes per
    model call lives in a CallState that dies with the call.
    """

    def __init__(self, adapter: BokehAdapter, block_map, k_values, bokeh_scale, lora_scale, grounding=None, source="", patchers=None,
                 probe=None):
        self.adapter = adapter
        self.probe = probe or CallProbe()  # shared with this binding's norm wrappers (see foreign.py)
        self.patchers = patchers  # the loaded adapter's patchers by devices (see adapter_patcher)
        self.block_map = dict(block_map)  # ("double"|"single", host index) -> adapter block
        self.k_values = tuple(float(k) for k in k_values)  # one per latent row, or one for all
        self.bokeh_scale = float(bokeh_scale)
        self.lora_scale = float(lora_scale)
        self.grounding = grounding
        self.source = source
        self._bias_cache: dict = {}
        self._warned: set = set()  # use warnings already logged for this binding (once each)

    def __deepcopy__(self, memo):
        return self

    def with_options(self, **changes) -> "BokehAttention":
        fields = dict(
            adapter=self.adapter, block_map=self.block_map, k_values=self.k_values, bokeh_scale=self.bokeh_scale,
            lora_scale=self.lora_scale, grounding=self.grounding, source=self.source, patchers=self.patchers,
            probe=self.probe,
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
        pos = tuple(k_to_input(k, self.adapter.dims.flavour) for k in ks)
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

    def call_state(self, to, q) -> CallState:
        cond_or_uncond = to.get("cond_or_uncond") or [0]
        rows = q.shape[0] // len(cond_or_uncond)
        biases = self._biases(self._row_inputs(cond_or_uncond, rows), q.device, q.dtype)
        return CallState(rows, biases, 0 in cond_or_uncond and self._grounded_now(to))

    # -- the attention ----------------------------------------------------------------
    def attend(self, base, state_holder, q, k, v, heads, kwargs):
        """The pack's attention for one block: ``base`` (the backend, or the override that was
        in the slot) with grounding and the bokeh bias where this block is adapted."""
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

        state = state_holder.state
        if state is None:
            state = state_holder.state = self.call_state(to, q)
        if state.grounded:
            out = self._grounded(base, q, k, v, heads, kwargs, to.get("cond_or_uncond") or [0], state, index)
        else:
            out = base(q, k, v, heads, **kwargs)

        bias = state.biases.get(index)
        if bias is not None:
            if out.dtype == bias.dtype and not out.requires_grad:
                out.add_(bias.unsqueeze(1))  # the backend's fresh output: add in place
            else:
                out = out + bias.unsqueeze(1).to(out.dtype)
        return out

    def _grounded(self, base, q, k, v, heads, kwargs, cond_or_uncond, state: CallState, index):
        """Grounded attention for this call (spec 3): at most two backend calls, one for the
        rows that attend normally and one for the targets with extended keys. The row plan
        and its index tensors are made once per model call, not per block."""
        extend = self.adapter.pair(index, "to_k_adp") is not None
        plans = state.plans
        if extend not in plans:
            groups = plan_rows(cond_or_uncond, state.rows, self.grounding.pivot, extend)
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


class CallOverride:
    """What sits in the attention override slot during one model call: the pack's attention
    around ``other`` (the override that was in the slot, called as the base attention) or,
    without one, around the backend. Holds the call's CallState."""

    __slots__ = ("binding", "other", "state", "ran")

    def __init__(self, binding: BokehAttention, other):
        self.binding = binding
        self.other = other
        self.state: CallState | None = None
        self.ran = False  # an attention call of this model call reached the override slot

    # Eager under torch.compile: TorchCompileModel (0.30.0) compiles the whole diffusion model with
    # guards that skip transformer_options, and this per-call object and the binding are reached
    # through it; traced, the second sampling step reused the first step's trace and its bias went
    # wrong (max error 0.31 on a tiny model). Eager here, the backend call inside still runs as is.
    @torch.compiler.disable
    def __call__(self, func, q, k, v, heads, **kwargs):
        self.ran = True
        other = self.other
        base = (lambda *a, **kw: other(func, *a, **kw)) if other is not None else func
        return self.binding.attend(base, self, q, k, v, heads, kwargs)


_signatures: dict = {}


def _argument(executor, args, kwargs, name: str):
    """The argument ``name`` of the wrapped diffusion model call (given by name or position)."""
    if name in kwargs:
        return kwargs[name]
    fn = getattr(executor.original, "__func__", executor.original)
    params = _signatures.get(fn)
    if params is None:
        params = _signatures[fn] = list(inspect.signature(executor.original).parameters)
    i = params.index(name) if name in params else -1
    return args[i] if 0 <= i < len(args) else None


def check_reference_use(binding: BokehAttention, ref_latents, method, params=None) -> None:
    """The photo adapter needs exactly one reference image laid out as in training; the
    text-to-image adapter was trained without one. Misuse that would give wrong images is an
    error; a use the adapter was not trained for runs with a warning (once per binding).

    Position ids as trained: the reference's first id coordinate 1, no offset. For one reference
    the host gives exactly that with the "offset" method (FLUX.1's default) and with "index" at
    index scale 1. ``params``: the FLUX model's params (default method, index scale)."""
    n = len(ref_latents) if isinstance(ref_latents, (list, tuple)) else (0 if ref_latents is None else 1)
    photo = binding.adapter.dims.flavour == PHOTO

    def warn_once(key, text):
        if key not in binding._warned:
            binding._warned.add(key)
            log.warning("Bokeh adapter %s: %s", binding.source or "?", text)

    if not photo:
        if n:
            warn_once("text+ref", "this is the text-to-image adapter (trained on FLUX.1-dev without a reference image), "
                      "used here with a reference latent (FLUX.1 Kontext editing). It runs, but it was not trained "
                      "for this: for bokeh on a photo use the BokehDepth photo adapter (bokeh_lora.bin).")
        return
    if n == 0:
        warn_once("photo-ref", "this is the photo adapter, used without a reference image (text-to-image). It was "
                  "trained to edit a photo with FLUX.1 Kontext: connect ReferenceLatent with your photo's latent "
                  "(see the bokeh_photo workflow).")
        return
    if n > 1:
        raise BokehInputError(
            f"The photo adapter takes exactly one reference image; this sampling has {n} reference latents. "
            "Remove the extra ReferenceLatent nodes (keep the one with your photo)."
        )
    method = method if method is not None else getattr(params, "default_ref_method", "offset")
    if method not in ("offset", "index") or (method == "index" and getattr(params, "ref_index_scale", 1.0) != 1.0):
        shown = method if isinstance(method, str) and len(method) <= 40 else type(method).__name__
        raise BokehInputError(
            f"The photo adapter was trained with the reference image's default position ids (method 'offset'); "
            f"this sampling uses reference method {shown!r}, which moves them. Remove the "
            "FluxKontextMultiReferenceLatentMethod node, or set it to 'offset'."
        )


def bokeh_model_call(executor, *args, **kwargs):
    """Diffusion-model wrapper (one per model call): checks how a reference image is used, puts
    the pack's attention into the override slot for this call, around the override found there,
    and restores the slot after. A call in which the adapter's q/k update ran but no attention
    reached the slot lost the blur (a foreign forward, see foreign.py): that is an error."""
    to = _argument(executor, args, kwargs, "transformer_options")
    binding = to.get(BINDING_KEY) if isinstance(to, dict) else None
    if binding is None:
        return executor(*args, **kwargs)
    check_reference_use(binding, _argument(executor, args, kwargs, "ref_latents"), kwargs.get("ref_latents_method"),
                        getattr(executor.class_obj, "params", None))
    had = OVERRIDE_KEY in to
    found = to.get(OVERRIDE_KEY)
    other = found.other if isinstance(found, CallOverride) else found
    call = to[OVERRIDE_KEY] = CallOverride(binding, other)
    binding.probe.qk = False
    try:
        out = executor(*args, **kwargs)
    finally:
        if had:
            to[OVERRIDE_KEY] = found
        else:
            to.pop(OVERRIDE_KEY, None)
    if binding.probe.qk and not call.ran:
        raise bypass_error(executor.class_obj)
    return out


# -- applying to a ModelPatcher ---------------------------------------------------------

def flux_blocks(model) -> tuple[int, int, int]:
    """(double blocks, single blocks, hidden size) of a FLUX.1 ModelPatcher (or Chroma, which has
    FLUX.1's blocks: see families.py), or a typed error."""
    model_family(model)
    dm = model.model.diffusion_model
    if "block_index" not in type(dm).forward_orig.__code__.co_consts:
        raise BokehHostError(
            "This ComfyUI's FLUX does not report the running block to attention overrides. "
            "The Bokeh adapter needs ComfyUI 0.3.76 or newer: update ComfyUI."
        )
    return len(dm.double_blocks), len(dm.single_blocks), dm.hidden_size


def compute_dtype(model) -> torch.dtype:
    inner = model.model
    return getattr(inner, "manual_cast_dtype", None) or inner.get_dtype()


def current_binding(model) -> BokehAttention | None:
    binding = model.model_options.get("transformer_options", {}).get(BINDING_KEY)
    return binding if isinstance(binding, BokehAttention) else None


def norm_paths(block_type: str, index: int) -> str:
    if block_type == "double":
        return f"diffusion_model.double_blocks.{index}.img_attn.norm"
    return f"diffusion_model.single_blocks.{index}.norm"


def _patcher_class(disable_dynamic: bool = False):
    """The host's own patcher class for extra models: ``CoreModelPatcher`` (dynamic VRAM on
    0.16+ where enabled), else ``ModelPatcher``. Feature-probed."""
    import comfy.model_patcher

    if disable_dynamic:
        return comfy.model_patcher.ModelPatcher
    return getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)


def _fresh_adapter_patcher(adapter: BokehAdapter, load_device, offload_device, disable_dynamic: bool = False):
    """``cached_patcher_init`` factory: a patcher over a copy of the adapter's weights, for hosts
    that give each device its own model (MultiGPU work units) or rebuild a model."""
    return _patcher_class(disable_dynamic)(copy.deepcopy(adapter), load_device=load_device, offload_device=offload_device)


def adapter_patcher(adapter: BokehAdapter, model, owned: dict):
    """The patcher that carries ``adapter``'s weights for ``model``'s devices. ``owned`` is a
    dict of the loaded adapter's: the patcher lives exactly as long as the weights it carries
    (ComfyUI frees a model's weights when its patcher goes; a patcher kept elsewhere would pin
    them). Model clones share it: no weight copy per clone."""
    key = (id(adapter), str(model.load_device), str(model.offload_device))
    patcher = owned.get(key)
    if patcher is None or patcher.model is not adapter:
        patcher = _patcher_class()(adapter, load_device=model.load_device, offload_device=model.offload_device)
        if hasattr(patcher, "cached_patcher_init"):  # 0.23+: what deepclone_multigpu rebuilds from
            patcher.cached_patcher_init = (_fresh_adapter_patcher, (adapter, model.load_device, model.offload_device))
        owned[key] = patcher
    return patcher


def _base_norm(model, path: str, rebuilt: bool):
    """The norm at ``path`` that the adapter wraps: what the patcher would run there (another
    node's object patch included), under any wrapper of ours. For a ``rebuilt`` model the copied
    object patches belong to the old model, so its own module is taken."""
    import comfy.utils

    base = None if rebuilt else model.object_patches.get(path)
    if base is None and getattr(model, "object_patches_backup", None):
        base = model.object_patches_backup.get(path)  # the model is patched in right now
    if base is None:
        base = comfy.utils.get_attr(model.model, path)
    return base.base if isinstance(base, BokehQKNorm) else base


def _norm_wrappers(model, binding: "BokehAttention", rebuilt: bool = False) -> dict:
    """{norm path: object patch} for ``binding`` on ``model``: the adapter's low-rank pairs around
    ``model``'s own norms (blocks without query/key pairs keep their norm)."""
    norms = {}
    for (block_type, index), adapter_index in binding.block_map.items():
        path = norm_paths(block_type, index)
        base = _base_norm(model, path, rebuilt)
        to_q = binding.adapter.pair(adapter_index, "to_q_adp")
        to_k = binding.adapter.pair(adapter_index, "to_k_adp")
        norms[path] = BokehQKNorm(base, to_q, to_k, binding.lora_scale, binding.probe) if (to_q or to_k) else base
    return norms


def bokeh_prepare_sampling(executor, model, *args, **kwargs):
    """Prepare-sampling wrapper: the adapter's patcher follows the model's devices as they are
    when sampling starts (Select Model Device and similar nodes move the model after Apply
    Bokeh Adapter ran), so the weights are loaded where the model runs."""
    binding = current_binding(model)
    found = model.get_additional_models_with_key(ADDITIONAL_MODELS_KEY) if binding is not None else []
    if found and binding.patchers is not None and (
        str(found[0].load_device) != str(model.load_device) or str(found[0].offload_device) != str(model.offload_device)
    ):
        model.set_additional_models(ADDITIONAL_MODELS_KEY, [adapter_patcher(binding.adapter, model, binding.patchers)])
    return executor(model, *args, **kwargs)


def _on_clone(original, clone) -> None:
    """ON_CLONE: a clone over a fresh model (a rebuild) gets wrappers around ITS norms; a clone
    that shares the model keeps the shared wrappers."""
    binding = current_binding(clone)
    if binding is None or clone.model is original.model:
        return
    for path, obj in _norm_wrappers(clone, binding, rebuilt=True).items():
        clone.object_patches[path] = obj


def _on_deepclone_multigpu(original, clone) -> None:
    """ON_DEEPCLONE_MULTIGPU and ON_MATCH_MULTIGPU_CLONES: the device's clone uses the device's copy
    of the adapter (made by the adapter patcher's own deepclone), in its binding and in its norm
    wrappers."""
    binding = current_binding(clone)
    patchers = clone.additional_models.get(ADDITIONAL_MODELS_KEY) or []
    if binding is None or not patchers or patchers[0].model is binding.adapter:
        return
    rebound = binding.with_options(adapter=patchers[0].model, probe=CallProbe())  # devices run in parallel threads
    clone.model_options["transformer_options"][BINDING_KEY] = rebound
    for path, obj in _norm_wrappers(clone, rebound, rebuilt=True).items():
        clone.object_patches[path] = obj


def apply_adapter(model, adapter: BokehAdapter, patchers: dict, block_map, k_values, bokeh_scale=1.0, lora_scale=1.0, source=""):
    """Return a clone of ``model`` with the adapter bound. ``model`` itself is not changed.
    ``patchers``: the loaded adapter's dict of patchers (see adapter_patcher).

    Applying to a model that already carries a Bokeh adapter replaces it (no stacking).
    Everything that can fail is checked before the clone is touched, so nothing is half-patched.
    """
    import comfy.patcher_extension as ext

    previous = current_binding(model)
    if previous is not None:
        log.info("Bokeh adapter: replacing the adapter already on this model (%s); adapters do not stack", previous.source or "?")
    binding = BokehAttention(adapter, block_map, k_values, bokeh_scale, lora_scale, source=source, patchers=patchers)
    norms = _norm_wrappers(model, binding)

    out = model.clone()
    if previous is not None:  # drop the old adapter's norm wrappers on blocks the new one leaves alone
        for path, obj in list(out.object_patches.items()):
            if isinstance(obj, BokehQKNorm):
                out.add_object_patch(path, obj.base)
    for path, obj in norms.items():
        out.add_object_patch(path, obj)
    out.model_options.setdefault("transformer_options", {})[BINDING_KEY] = binding
    for kind, fn in ((ext.WrappersMP.DIFFUSION_MODEL, bokeh_model_call), (ext.WrappersMP.PREPARE_SAMPLING, bokeh_prepare_sampling)):
        out.remove_wrappers_with_key(kind, WRAPPER_KEY)
        out.add_wrapper_with_key(kind, WRAPPER_KEY, fn)
    # MultiGPU (0.23+): a work unit made after Apply is a deep clone (ON_DEEPCLONE_MULTIGPU); one made
    # before Apply (MultiGPU CFG Split, then Apply Bokeh Adapter) is re-matched to this model at
    # sampling (ON_MATCH_MULTIGPU_CLONES). Either way the device's clone gets the device's adapter.
    callbacks = {"ON_CLONE": _on_clone, "ON_DEEPCLONE_MULTIGPU": _on_deepclone_multigpu,
                 "ON_MATCH_MULTIGPU_CLONES": _on_deepclone_multigpu}
    for name, fn in callbacks.items():
        kind = getattr(ext.CallbacksMP, name, None)  # the MultiGPU callbacks: 0.23+
        if kind is not None:
            out.remove_callbacks_with_key(kind, WRAPPER_KEY)
            out.add_callback_with_key(kind, WRAPPER_KEY, fn)
    out.set_additional_models(ADDITIONAL_MODELS_KEY, [adapter_patcher(adapter, model, patchers)])
    return out


def rebind(model, **changes):
    """Clone ``model`` with its Bokeh binding changed (per-row K values, grounding)."""
    binding = current_binding(model)
    if binding is None:
        raise BokehModelError(
            "This MODEL has no Bokeh adapter. Connect it through 'Apply Bokeh Adapter' first."
        )
    out = model.clone()
    out.model_options["transformer_options"][BINDING_KEY] = binding.with_options(**changes)
    return out
