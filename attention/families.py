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

Every FLUX fact the pack uses lives here: which diffusion-model classes run (``FAMILIES``, one
``Family`` entry each: its class, its block lists, the path of each block's q/k norm, its hidden
size), the refusals, the adapter-to-block map, the hidden-size check and the compute dtype.
A new FLUX-like family is one more entry of ``FAMILIES``.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field

from .errors import BokehHostError, BokehModelError

log = logging.getLogger(__name__)

FLUX1 = "FLUX.1"
CHROMA = "Chroma"
# FluxParams fields that change FLUX.1's blocks, with FLUX.1's value (fields a host lacks: FLUX.1).
FLUX1_BLOCK_OPTIONS = {"global_modulation": False, "mlp_silu_act": False, "ops_bias": True, "yak_mlp": False, "txt_norm": False}
# Where each block's QKNorm sits (q and k after projection, before the RMS norm and RoPE): the
# image stream's in a double block, the whole sequence's in a single block.
FLUX1_NORMS = {"double": "double_blocks.{index}.img_attn.norm", "single": "single_blocks.{index}.norm"}
LOAD_FLUX1 = "Load a FLUX.1 model (dev, schnell, Krea or Kontext) with UNETLoader or CheckpointLoaderSimple and connect that MODEL."


@dataclass(frozen=True)
class Family:
    """A FLUX-like model family the adapter runs on: its diffusion-model class and where the
    adapter meets its blocks."""

    name: str
    module: str  # the ComfyUI module that defines the diffusion-model class
    cls: str  # the class's name there (matched exactly, subclasses are other families)
    trained: bool  # a Bokeh adapter was trained on it; otherwise Apply warns
    block_options: dict = field(default_factory=dict)  # params fields that change the blocks, with this family's value
    double_blocks: str = "double_blocks"
    single_blocks: str = "single_blocks"
    hidden: str = "hidden_size"
    norms: dict = field(default_factory=lambda: dict(FLUX1_NORMS))
    warning: str = ""  # logged at Apply when not trained

    def diffusion_class(self):
        """The class, or None on a host without it."""
        try:
            return getattr(importlib.import_module(self.module), self.cls, None)
        except ImportError:
            return None

    def blocks(self, dm) -> tuple[int, int, int]:
        return len(getattr(dm, self.double_blocks)), len(getattr(dm, self.single_blocks)), getattr(dm, self.hidden)

    def norm_path(self, block_type: str, index: int) -> str:
        """The object-patch path of block ``index``'s q/k norm (``block_type``: "double" or "single")."""
        return "diffusion_model." + self.norms[block_type].format(index=index)


FAMILIES = (
    Family(FLUX1, "comfy.ldm.flux.model", "Flux", trained=True, block_options=FLUX1_BLOCK_OPTIONS),
    Family(CHROMA, "comfy.ldm.chroma.model", "Chroma", trained=False,
           warning="this is a Chroma model. It has FLUX.1's blocks and the adapter runs on it, but no Bokeh adapter "
           "was trained for Chroma: check the blur on a few images (FLUX.1 dev is the reference)."),
)


def model_family(model) -> Family:
    """The Family of a model the adapter runs on; otherwise a BokehModelError that names what was
    found and what to do. Logs nothing (flux_blocks warns at Apply)."""
    inner = getattr(model, "model", None)
    dm = getattr(inner, "diffusion_model", None)
    base_name = type(inner).__name__ if inner is not None else type(model).__name__
    found = type(dm) if dm is not None else type(model)
    name = f"{base_name} ({found.__name__})"
    classes = [(family, family.diffusion_class()) for family in FAMILIES]
    for family, cls in classes:
        if cls is None or found is not cls:
            continue
        params = getattr(dm, "params", None)
        if family.block_options and (base_name == "Flux2" or getattr(params, "global_modulation", False)):
            raise BokehModelError(
                f"This is a FLUX.2 model ({name}); the Bokeh adapters are trained for FLUX.1 and do not fit FLUX.2's "
                f"blocks. {LOAD_FLUX1}"
            )
        odd = [f"{k}={getattr(params, k)!r}" for k, want in family.block_options.items() if getattr(params, k, want) != want]
        if odd:
            raise BokehModelError(
                f"This FLUX-derived model ({name}) has other blocks than FLUX.1 ({', '.join(odd)}); the Bokeh adapters "
                f"are trained for FLUX.1's blocks. {LOAD_FLUX1}"
            )
        return family
    module = getattr(found, "__module__", "") or ""
    if dm is not None and not module.startswith("comfy."):
        raise BokehModelError(
            f"This model's diffusion model is {found.__name__} from {module.split('/')[-1]}, not ComfyUI's own FLUX "
            "(a wrapper with its own kernels, e.g. Nunchaku/SVDQuant): the Bokeh adapter patches ComfyUI's FLUX "
            f"blocks, which this model does not run. {LOAD_FLUX1} GGUF models work."
        )
    if any(cls is not None and isinstance(dm, cls) for _, cls in classes):
        raise BokehModelError(f"The Bokeh adapter runs on FLUX.1 models; this is a FLUX-derived family it was not made for: {name}. {LOAD_FLUX1}")
    raise BokehModelError(f"The Bokeh adapter works on FLUX.1 models; this model is {name}. {LOAD_FLUX1}")


def flux_blocks(model) -> tuple[int, int, int]:
    """(double blocks, single blocks, hidden size) of a ModelPatcher of a family the adapter runs
    on, or a typed error. A family no adapter was trained on is logged as a warning."""
    family = model_family(model)
    if not family.trained:
        log.warning("Bokeh adapter: %s", family.warning)
    dm = model.model.diffusion_model
    if "block_index" not in type(dm).forward_orig.__code__.co_consts:
        raise BokehHostError(
            "This ComfyUI's FLUX does not report the running block to attention overrides. "
            "The Bokeh adapter needs ComfyUI 0.3.76 or newer: update ComfyUI."
        )
    return family.blocks(dm)


def check_hidden(dims, hidden: int, name: str = "") -> None:
    """The adapter's width must be the model's. ``name``: the adapter's file name, if any."""
    if dims.hidden != hidden:
        raise BokehModelError(
            f"The adapter {name + ' ' if name else ''}is for hidden size {dims.hidden}; this FLUX model has {hidden}. "
            "Use the adapter made for this model (the release fits FLUX.1-dev, hidden 3072)."
        )


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


def fit_adapter(model, dims, name: str = "") -> dict[tuple[str, int], int]:
    """The block map of an adapter of ``dims`` on ``model`` (a family the adapter runs on, of the
    adapter's width, with the blocks it adapts), or a typed error. Checked before anything is patched."""
    n_double, n_single, hidden = flux_blocks(model)
    check_hidden(dims, hidden, name)
    return host_block_map(dims, n_double, n_single, name or "The adapter")


def norm_paths(model, block_map) -> dict[tuple[str, int], str]:
    """{host block: object-patch path of its q/k norm} for the blocks of ``block_map`` on ``model``."""
    family = model_family(model)
    return {block: family.norm_path(*block) for block in block_map}


def compute_dtype(model):
    """The dtype the model computes in (its manual cast dtype, else its weights')."""
    inner = model.model
    return getattr(inner, "manual_cast_dtype", None) or inner.get_dtype()
