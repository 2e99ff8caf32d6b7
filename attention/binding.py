"""What runs inside every model call: the binding (which adapter, which blocks, K per row, scales,
grounding), the pack's attention in ComfyUI's attention override slot, and the wrappers that put
it there for one model call and start each sampling run afresh. Patching a model (Apply, once per
clone) is attention/patch.py; the FLUX facts are attention/families.py.

How the attention meets the host (ComfyUI >= 0.3.76; read in 0.3.75+4967f81, 0.8.0 and 0.33.0):
- bokeh bias and grounding: the attention override slot
  (``transformer_options["optimized_attention_override"]``), called with q, k, v (B, H, L, D)
  after norm and RoPE. ``block_type`` / ``block_index`` tell the block. The slot holds one
  callable and other nodes (SageAttention patches, other packs) overwrite it, so the binding
  lives under its own key and a diffusion-model wrapper puts the pack's attention into the
  slot at every model call, around whatever override is there then: the order in which the
  nodes were applied does not matter.
- what a binding keeps between model calls (the bokeh biases per K set, the warnings already
  logged) lives for one sampling run: an OUTER_SAMPLE wrapper clears it when a run starts and
  when it ends, as core EasyCache resets its state (comfy_extras/nodes_easycache.py).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field

import torch

from .bokeh import PHOTO, UNCOND_INPUT, BokehAdapter, k_to_input
from .errors import BokehHostError, BokehInputError
from .foreign import CallProbe, bypass_error
from .grounded import gather, grounding_steps, in_window, plan_indices, plan_rows

log = logging.getLogger(__name__)

OVERRIDE_KEY = "optimized_attention_override"
BINDING_KEY = "bokeh_diffusion"  # transformer_options key of the BokehBinding


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


class BokehBinding:
    """The binding: which adapter, which blocks, K per row, scales, grounding. Immutable once
    built; ``clone()`` of the model shares it (``__deepcopy__`` returns self). What changes per
    model call lives in a CallState that dies with the call; what model calls share (the bias
    cache, the warnings logged) lives for one sampling run (``start_run``).
    """

    def __init__(self, adapter: BokehAdapter, block_map, k_values, bokeh_scale, lora_scale, grounding=None, source="", patchers=None,
                 probe=None, norm_paths=None):
        self.adapter = adapter
        self.probe = probe or CallProbe()  # shared with this binding's norm wrappers (see foreign.py)
        self.patchers = patchers  # the loaded adapter's patchers by devices (see adapter_patcher)
        self.block_map = dict(block_map)  # ("double"|"single", host index) -> adapter block
        self.norm_paths = dict(norm_paths or {})  # host block -> path of its q/k norm (families.norm_paths)
        self.k_values = tuple(float(k) for k in k_values)  # one per latent row, or one for all
        self.bokeh_scale = float(bokeh_scale)
        self.lora_scale = float(lora_scale)
        self.grounding = grounding
        self.source = source
        self._bias_cache: dict = {}  # per sampling run: (K inputs, device, dtype) -> scaled biases
        self._warned: set = set()  # per sampling run: use warnings already logged (once each)

    def __deepcopy__(self, memo):
        return self

    def start_run(self) -> None:
        """Forget what earlier model calls left: a sampling run starts (and ends) with none."""
        self._bias_cache.clear()
        self._warned.clear()

    def with_options(self, **changes) -> "BokehBinding":
        fields = dict(
            adapter=self.adapter, block_map=self.block_map, k_values=self.k_values, bokeh_scale=self.bokeh_scale,
            lora_scale=self.lora_scale, grounding=self.grounding, source=self.source, patchers=self.patchers,
            probe=self.probe, norm_paths=self.norm_paths,
        )
        fields.update(changes)
        return BokehBinding(**fields)

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
        """{adapter block: (rows, hidden)} scaled biases; computed once per distinct K set in a
        sampling run (the cache is cleared when a run starts and ends, see bokeh_sampling_run)."""
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

    def __init__(self, binding: BokehBinding, other):
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


def check_reference_use(binding: BokehBinding, ref_latents, method, params=None) -> None:
    """The photo adapter needs exactly one reference image laid out as in training; the
    text-to-image adapter was trained without one. Misuse that would give wrong images is an
    error; a use the adapter was not trained for runs with a warning (once per sampling run).

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


def bokeh_sampling_run(executor, *args, **kwargs):
    """OUTER_SAMPLE wrapper (one per sampling run): the run's binding starts without what earlier
    runs left (bias cache, warnings logged), and keeps none of it after; as core EasyCache resets
    its state. Nothing else of the run is touched."""
    options = getattr(executor.class_obj, "model_options", None) or {}
    binding = _binding_of(options)
    if binding is None:
        return executor(*args, **kwargs)
    binding.start_run()
    try:
        return executor(*args, **kwargs)
    finally:
        binding.start_run()
        # MultiGPU (0.23+): each device's clone has its own binding (patch.py, _on_deepclone_multigpu)
        for clone in (options.get("multigpu_clones") or {}).values():
            other = _binding_of(getattr(clone, "model_options", None) or {})
            if other is not None:
                other.start_run()


def _binding_of(model_options: dict) -> BokehBinding | None:
    binding = (model_options.get("transformer_options") or {}).get(BINDING_KEY)
    return binding if isinstance(binding, BokehBinding) else None
