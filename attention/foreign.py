"""Speed-up packs that replace FLUX's forward pass: found by their effect, named in the error.

TeaCache, WaveSpeed's First Block Cache and MagCache (read at their commits 91dff8e3, 82537451,
47bdd2ac) put their own ``forward_orig`` on the FLUX instance for each model call and run the
blocks without ``transformer_options``. No attention call then reaches the pack's override: the
q/k update still runs (an object patch) but the bokeh bias and the grounding are silently lost.
The pack decides by effect, per model call (attention/binding.py, ``bokeh_model_call``):
the q/k patch ran in an adapted block but the pack's attention never ran. A cache that skips a
whole call runs neither, and a foreign forward that passes ``transformer_options`` on runs both:
neither is refused. This module only says who did it and what to do.
"""

from __future__ import annotations

from .errors import BokehConflictError

HOST_PREFIX = "comfy."  # the host's own modules


class CallProbe:
    """Set by the adapter's q/k norm wrappers when they run; reset by the model-call wrapper at
    the start of each call. One flag, no allocation per step."""

    __slots__ = ("qk",)

    def __init__(self):
        self.qk = False


def _pack_of(module: str) -> str:
    """A custom node's module as ComfyUI loads it (``/path/custom_nodes/ComfyUI-TeaCache.nodes``,
    with dots of the folder name written ``_x_``) as the user knows it: ``ComfyUI-TeaCache.nodes``."""
    return module.replace("\\", "/").rsplit("/", 1)[-1].replace("_x_", ".")


def foreign_forward(diffusion_model) -> str | None:
    """The module of a ``forward_orig`` / ``forward`` on the FLUX instance or its class that is not
    the host's own, or None."""
    for owner in (vars(diffusion_model), vars(type(diffusion_model))):
        for name in ("forward_orig", "forward"):
            fn = owner.get(name)
            fn = getattr(fn, "__func__", fn)
            module = getattr(fn, "__module__", None)
            if isinstance(module, str) and not module.startswith(HOST_PREFIX):
                return _pack_of(module)
    return None


def bypass_error(diffusion_model) -> BokehConflictError:
    """The error for a model call whose blocks ran without the pack's attention."""
    found = foreign_forward(diffusion_model)
    if found:
        who = f"the node pack {found} has replaced FLUX's forward pass and runs the FLUX blocks without ComfyUI's attention options"
    else:  # no foreign forward on the instance: something else kept the pack's attention out of this call
        who = "a node on this model's path runs the FLUX blocks without the pack's attention (it replaces FLUX's forward or the attention override during sampling)"
    return BokehConflictError(
        f"Bokeh adapter: {who}, so the blur (and a Pivot Batch's grounding) would be silently lost. Remove that "
        "node (TeaCache, First Block Cache, MagCache and similar caches) from this model's path, or use ComfyUI's "
        "own EasyCache or LazyCache node instead: they keep the blur."
    )

