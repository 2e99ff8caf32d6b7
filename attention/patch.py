"""Patching a FLUX model (Apply Bokeh Adapter, once per clone): the q/k norm wrappers as object
patches, the binding in ``transformer_options``, the wrappers and callbacks, the adapter's own
ModelPatcher. What runs inside each model call is attention/binding.py.

How the adapter meets the host (ComfyUI >= 0.3.76; read in 0.3.75+4967f81, 0.8.0 and 0.33.0):
- q/k low-rank update: an object patch replaces each adapted block's ``QKNorm`` (its path is
  the family's, attention/families.py). The norm receives q and k after projection and before
  the RMS norm and RoPE.
- bokeh bias and grounding: the binding under its own ``transformer_options`` key, put into the
  attention override slot at every model call by a diffusion-model wrapper (binding.py).
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
import logging

import torch
from torch import nn

from .binding import BINDING_KEY, BokehBinding, bokeh_model_call, bokeh_sampling_run
from .bokeh import BokehAdapter, add_lowrank
from .errors import BokehModelError
from .families import norm_paths
from .foreign import CallProbe

log = logging.getLogger(__name__)

WRAPPER_KEY = "bokeh_diffusion"  # key of the pack's wrappers and callbacks
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


def current_binding(model) -> BokehBinding | None:
    binding = model.model_options.get("transformer_options", {}).get(BINDING_KEY)
    return binding if isinstance(binding, BokehBinding) else None


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


def _norm_wrappers(model, binding: "BokehBinding", rebuilt: bool = False) -> dict:
    """{norm path: object patch} for ``binding`` on ``model``: the adapter's low-rank pairs around
    ``model``'s own norms (blocks without query/key pairs keep their norm)."""
    norms = {}
    for (block_type, index), adapter_index in binding.block_map.items():
        path = binding.norm_paths[(block_type, index)]
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
    binding = BokehBinding(adapter, block_map, k_values, bokeh_scale, lora_scale, source=source, patchers=patchers,
                           norm_paths=norm_paths(model, block_map))
    norms = _norm_wrappers(model, binding)

    out = model.clone()
    if previous is not None:  # drop the old adapter's norm wrappers on blocks the new one leaves alone
        for path, obj in list(out.object_patches.items()):
            if isinstance(obj, BokehQKNorm):
                out.add_object_patch(path, obj.base)
    for path, obj in norms.items():
        out.add_object_patch(path, obj)
    out.model_options.setdefault("transformer_options", {})[BINDING_KEY] = binding
    wrappers = ((ext.WrappersMP.DIFFUSION_MODEL, bokeh_model_call), (ext.WrappersMP.PREPARE_SAMPLING, bokeh_prepare_sampling),
                (ext.WrappersMP.OUTER_SAMPLE, bokeh_sampling_run))
    for kind, fn in wrappers:
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
