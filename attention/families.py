"""Which models the adapter runs on, decided at Apply (never deep in sampling, never a silent no-op).

Read in ComfyUI 0.3.75+4967f81, 0.8.0 and 0.33.0 (comfy/ldm/flux, comfy/ldm/chroma, model_base,
model_detection):
- FLUX.1 dev, schnell, Krea, Kontext, Fill: ``model_base.Flux`` around ``comfy.ldm.flux.model.Flux``
  with FLUX.1's block options. They run.
- FLUX.2 (``model_base.Flux2``): the same ``Flux`` class with global modulation, SiLU-gated MLPs
  and no biases, other widths. Other variants of that class (Ovis: ``yak_mlp`` and ``txt_norm``)
  change the blocks too. Refused by name: the released adapters are trained on FLUX.1's blocks.
- Chroma (``comfy.ldm.chroma.model.Chroma``): its own class around FLUX.1's block classes,
  19 + 38 blocks of width 3072 (FLUX.1 schnell's), modulation from its own approximator. The
  pack's patches reach its blocks the same way (its forward reports block type and index to
  attention; measured on a tiny Chroma: the blur and the grounding change the result), but no
  adapter was trained on it: it runs, with a warning.
- A diffusion model that is not one of ComfyUI's classes (Nunchaku/SVDQuant and other wrappers
  with their own kernels): the pack patches ComfyUI's FLUX blocks, which such a model does not
  run. Refused with that reason.
"""

from __future__ import annotations

import logging

from .errors import BokehModelError

log = logging.getLogger(__name__)

FLUX1 = "FLUX.1"
CHROMA = "Chroma"
# FluxParams fields that change FLUX.1's blocks, with FLUX.1's value (fields a host lacks: FLUX.1).
FLUX1_BLOCK_OPTIONS = {"global_modulation": False, "mlp_silu_act": False, "ops_bias": True, "yak_mlp": False, "txt_norm": False}
LOAD_FLUX1 = "Load a FLUX.1 model (dev, schnell, Krea or Kontext) with UNETLoader or CheckpointLoaderSimple and connect that MODEL."


def _chroma_class():
    try:
        import comfy.ldm.chroma.model as chroma_model
    except ImportError:  # a host without Chroma
        return None
    return chroma_model.Chroma


def model_family(model) -> str:
    """FLUX1 or CHROMA for a model the adapter runs on; otherwise a BokehModelError that names
    what was found and what to do. Chroma is logged as a warning."""
    import comfy.ldm.flux.model as flux_model

    inner = getattr(model, "model", None)
    dm = getattr(inner, "diffusion_model", None)
    family = type(inner).__name__ if inner is not None else type(model).__name__
    found = type(dm) if dm is not None else type(model)
    name = f"{family} ({found.__name__})"
    if found is flux_model.Flux:
        params = getattr(dm, "params", None)
        if family == "Flux2" or getattr(params, "global_modulation", False):
            raise BokehModelError(
                f"This is a FLUX.2 model ({name}); the Bokeh adapters are trained for FLUX.1 and do not fit FLUX.2's "
                f"blocks. {LOAD_FLUX1}"
            )
        odd = [f"{k}={getattr(params, k)!r}" for k, want in FLUX1_BLOCK_OPTIONS.items() if getattr(params, k, want) != want]
        if odd:
            raise BokehModelError(
                f"This FLUX-derived model ({name}) has other blocks than FLUX.1 ({', '.join(odd)}); the Bokeh adapters "
                f"are trained for FLUX.1's blocks. {LOAD_FLUX1}"
            )
        return FLUX1
    chroma = _chroma_class()
    if chroma is not None and found is chroma:
        log.warning("Bokeh adapter: this is a Chroma model. It has FLUX.1's blocks and the adapter runs on it, but no "
                    "Bokeh adapter was trained for Chroma: check the blur on a few images (FLUX.1 dev is the reference).")
        return CHROMA
    module = getattr(found, "__module__", "") or ""
    if dm is not None and not module.startswith("comfy."):
        raise BokehModelError(
            f"This model's diffusion model is {found.__name__} from {module.split('/')[-1]}, not ComfyUI's own FLUX "
            "(a wrapper with its own kernels, e.g. Nunchaku/SVDQuant): the Bokeh adapter patches ComfyUI's FLUX "
            f"blocks, which this model does not run. {LOAD_FLUX1} GGUF models work."
        )
    if isinstance(dm, flux_model.Flux) or (chroma is not None and isinstance(dm, chroma)):
        raise BokehModelError(f"The Bokeh adapter runs on FLUX.1 models; this is a FLUX-derived family it was not made for: {name}. {LOAD_FLUX1}")
    raise BokehModelError(f"The Bokeh adapter works on FLUX.1 models; this model is {name}. {LOAD_FLUX1}")


def host_block_map(dims, n_double: int, n_single: int, name: str = "adapter") -> dict[tuple[str, int], int]:
    """Adapter block i -> host block: 0..D-1 double blocks, D.. single blocks (spec section 2)."""
    out = {}
    total = n_double + n_single
    bad = [i for i in dims.blocks if i >= total]
    if bad:
        raise BokehModelError(
            f"{name} adapts block indices up to {max(bad)}, but the model has {n_double} double + {n_single} "
            f"single = {total} blocks (FLUX.1 has 19 + 38 = 57)."
        )
    for i in dims.blocks:
        out[("double", i) if i < n_double else ("single", i - n_double)] = i
    return out
