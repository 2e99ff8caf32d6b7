"""The Bokeh adapter's key grammar and dimensions (spec section 6; the photo adapter:
bokehdepth-photo.md section 1): which keys belong to an adapter, under which canonical names,
which flavour a file is, and the adapter's dimensions inferred from its shapes.

Adapters are told apart by keys and shapes, never by file names: ``*_bokeh`` pairs make the
text-to-image adapter, ``*_dof`` pairs the photo adapter (same maths, other K mapping), with or
without a ``module.`` prefix. Error texts name a key only when it is one of the adapter's own.
"""

from __future__ import annotations

import re

from ..attention.bokeh import PAIR_NAMES, PHOTO, TEXT, AdapterDims
from ..attention.errors import BokehAdapterError
from .hints import DOWNLOAD_HINT

# The photo adapter's names for the bokeh pairs (BokehDepth): same shapes, same maths.
FLAVOUR_NAMES = {"to_k_dof": "to_k_bokeh", "to_v_dof": "to_v_bokeh"}
MODULE_PREFIX = "module."  # what torch.nn.DataParallel puts before every key
DOF_KEY = re.compile(r"^(adapter_modules\.[0-9]+\.)(to_k_dof|to_v_dof)(\.(?:down|up)\.weight)$")
EMBED_KEYS = (
    "embedding_layer.0.weight",
    "embedding_layer.0.bias",
    "embedding_layer.2.weight",
    "embedding_layer.2.bias",
)
# Block numbers as the reference writes them (no leading zeros: "01" would not load into block 1).
PAIR_KEY = re.compile(r"^adapter_modules\.(0|[1-9][0-9]{0,5})\.(" + "|".join(PAIR_NAMES) + r")\.(down|up)\.weight$")


def canonical_key(key: str) -> str:
    """A file's key under the name the adapter module uses: without a ``module.`` prefix, and the
    photo adapter's ``to_k_dof`` / ``to_v_dof`` as ``to_k_bokeh`` / ``to_v_bokeh``."""
    if key.startswith(MODULE_PREFIX):
        key = key[len(MODULE_PREFIX):]
    m = DOF_KEY.match(key)
    return m.group(1) + FLAVOUR_NAMES[m.group(2)] + m.group(3) if m else key


def is_adapter_key(key: str) -> bool:
    canon = canonical_key(key)
    return canon in EMBED_KEYS or PAIR_KEY.match(canon) is not None


def key_label(key: str) -> str:
    """A key for an error text: the adapter's own keys by name, anything else unnamed (file bytes
    never travel in an error)."""
    return key if is_adapter_key(key) else "a key that is not an adapter key"


def canonical_shapes(shapes: dict[str, tuple[int, ...]], name: str) -> tuple[dict[str, tuple[int, ...]], dict[str, str], str]:
    """({canonical key: shape}, {canonical key: file key}, flavour) in one pass over the file's
    keys. The flavour: PHOTO for ``*_dof`` pairs (BokehDepth stage 1), TEXT for ``*_bokeh`` pairs
    (Bokeh Diffusion) or none; a file with both, or with one adapter key twice (``x`` and
    ``module.x``), is an error."""
    out, origin, flavours, twice = {}, {}, set(), []
    for key, shape in shapes.items():
        canon = canonical_key(key)
        if canon in EMBED_KEYS or PAIR_KEY.match(canon):
            if "_dof." in key:
                flavours.add(PHOTO)
            elif "_bokeh." in key:
                flavours.add(TEXT)
        else:
            canon = key
        if canon in out:
            twice.append(canon)
        out[canon], origin[canon] = shape, key
    if len(flavours) > 1:
        raise BokehAdapterError(
            f"{name} mixes the text-to-image adapter's keys (to_k_bokeh/to_v_bokeh) with the photo adapter's "
            f"(to_k_dof/to_v_dof); a file holds one adapter. {DOWNLOAD_HINT}"
        )
    if twice:
        raise BokehAdapterError(f"{name} holds {key_label(twice[0])} twice (with and without a prefix); the file is damaged. {DOWNLOAD_HINT}")
    return out, origin, PHOTO if PHOTO in flavours else TEXT


def identify_other(keys: list[str]) -> str | None:
    """Name the kind of a file that is not a Bokeh adapter, from its keys."""
    joined = "\n".join(keys)

    def has(*parts):
        return any(p in joined for p in parts)

    if has("lora_down", "lora_up", "lora_A", "lora_B", "lora.down", "lora.up", ".lokr_", ".hada_"):
        flux = has("double_blocks", "single_blocks", "transformer_blocks", "single_transformer_blocks")
        return "a FLUX LoRA (load it with LoraLoaderModelOnly)" if flux else "a LoRA (load it with a LoRA loader)"
    if has("ip_adapter", "image_proj", "to_k_ip", "ip_adapter_double_stream"):
        return "an IP-Adapter (load it with an IP-Adapter loader)"
    if has("controlnet", "input_hint_block", "control_model"):
        return "a ControlNet (load it with ControlNetLoader)"
    if has("input_blocks.", "output_blocks.", "middle_block."):
        return "a Stable Diffusion (SD1.5/SDXL) UNet checkpoint"
    if has("double_blocks.", "single_blocks."):
        return "a FLUX diffusion model (load it with UNETLoader; the adapter is a separate file)"
    if has("joint_blocks."):
        return "a Stable Diffusion 3 model"
    if has("encoder.down", "decoder.up"):
        return "a VAE"
    if has("text_model.", "encoder.block.", "shared.weight"):
        return "a text encoder"
    return None


def _pairs_and_unused(shapes: dict[str, tuple[int, ...]]):
    pairs: dict[int, dict[str, dict[str, tuple[int, ...]]]] = {}
    unused = []
    for key, shape in shapes.items():
        m = PAIR_KEY.match(key)
        if m:
            pairs.setdefault(int(m.group(1)), {}).setdefault(m.group(2), {})[m.group(3)] = shape
        elif key not in EMBED_KEYS:
            unused.append(key)
    return pairs, sorted(unused)


def infer_dims(shapes: dict[str, tuple[int, ...]], name: str = "adapter", alpha: float | None = None,
               flavour: str = TEXT) -> tuple[AdapterDims, list[str]]:
    """Infer the adapter's sizes from its tensor shapes (canonical keys: see canonical_key).
    Returns (dims, keys not consumed)."""
    missing = [k for k in EMBED_KEYS if k not in shapes]
    pairs, unused = _pairs_and_unused(shapes)
    if missing:
        what = identify_other(list(shapes))
        if what is not None and not pairs:
            raise BokehAdapterError(f"{name} is {what}, not a Bokeh adapter. {DOWNLOAD_HINT}")
        if not pairs:
            raise BokehAdapterError(
                f"{name} is not a Bokeh adapter: none of its {len(shapes)} keys are the adapter's "
                f"(expected embedding_layer.* and adapter_modules.*). {DOWNLOAD_HINT}"
            )
        raise BokehAdapterError(f"{name} is a damaged Bokeh adapter: missing {', '.join(missing)}. {DOWNLOAD_HINT}")

    w0, b0, w2, b2 = (shapes[k] for k in EMBED_KEYS)
    if len(w0) != 2 or len(w2) != 2 or b0 != (w0[0],) or b2 != (w2[0],) or w2[1] != w0[0]:
        raise BokehAdapterError(
            f"{name}: embedding shapes do not chain (found {w0}, {b0}, {w2}, {b2}; expected "
            "[h, 1], [h], [c, h], [c]). The file is damaged or of another kind."
        )
    embed_hidden, embed_input = w0
    context = w2[0]
    if embed_input != 1:
        raise BokehAdapterError(f"{name}: the embedding takes {embed_input} inputs; a Bokeh adapter takes one float (K/30).")
    if not pairs:
        raise BokehAdapterError(f"{name} has the K embedding but no adapter_modules.* pairs: nothing to apply.")

    hidden = rank = None
    blocks = {}
    for index in sorted(pairs):
        present = []
        for pname in PAIR_NAMES:
            parts = pairs[index].get(pname)
            if parts is None:
                continue
            if set(parts) != {"down", "up"}:
                raise BokehAdapterError(f"{name}: block {index} {pname} has only its {''.join(parts)} weight; expected down and up.")
            down, up = parts["down"], parts["up"]
            if len(down) != 2 or len(up) != 2 or down[0] != up[1]:
                raise BokehAdapterError(f"{name}: block {index} {pname} shapes {down} / {up} are not a low-rank pair [r, in] / [out, r].")
            hidden = up[0] if hidden is None else hidden
            rank = down[0] if rank is None else rank
            want_in = hidden if pname.endswith("_adp") else context
            if up[0] != hidden or down[0] != rank or down[1] != want_in:
                raise BokehAdapterError(
                    f"{name}: block {index} {pname} has shapes down {down}, up {up}; expected down "
                    f"[{rank}, {want_in}], up [{hidden}, {rank}] like the other blocks."
                )
            present.append(pname)
        blocks[index] = tuple(present)
    empty = [what for what, size in (("rank", rank), ("bokeh context", context), ("embedding width", embed_hidden),
                                      ("hidden size", hidden)) if size == 0]
    if empty:
        raise BokehAdapterError(f"{name} has {' and '.join(empty)} 0: such an adapter changes nothing. The file is damaged. {DOWNLOAD_HINT}")
    dims = AdapterDims(
        hidden=hidden, context=context, embed_hidden=embed_hidden, embed_input=embed_input,
        rank=rank, blocks=blocks, alpha=alpha, flavour=flavour,
    )
    return dims, unused
