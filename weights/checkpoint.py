"""The Bokeh adapter checkpoint format: read, identify, validate, infer dims (spec section 6).

Formats are told apart by keys and shapes, never by file names. Every key of a file is
consumed or reported. Only safetensors files are read; pickles are refused unopened.
"""

from __future__ import annotations

import json
import logging
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..attention.bokeh import PAIR_NAMES, AdapterDims, BokehAdapter
from ..attention.errors import BokehAdapterError, BokehModelError

log = logging.getLogger(__name__)

DOWNLOAD_HINT = (
    "Download the authors' Bokeh Diffusion FLUX adapter (model.safetensors, about 583 MB; "
    "non-commercial licence) and put it in ComfyUI/models/bokeh_diffusion/ (see the README)."
)
PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle"}
EMBED_KEYS = (
    "embedding_layer.0.weight",
    "embedding_layer.0.bias",
    "embedding_layer.2.weight",
    "embedding_layer.2.bias",
)
PAIR_KEY = re.compile(r"^adapter_modules\.(\d+)\.(" + "|".join(PAIR_NAMES) + r")\.(down|up)\.weight$")
_SAFETENSORS_DTYPES = {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2"}


@dataclass
class LoadedAdapter:
    """A parsed adapter file: its weights (on CPU, file dtype) and what was learned about it."""

    module: BokehAdapter
    dims: AdapterDims
    source: str
    config: dict = field(default_factory=dict)
    unused_keys: list[str] = field(default_factory=list)
    _cast: dict = field(default_factory=dict, repr=False)

    def for_dtype(self, dtype: torch.dtype) -> BokehAdapter:
        """The adapter in ``dtype`` (the host model's compute dtype), made once per dtype and
        shared by every model clone that uses it."""
        if dtype == next(self.module.parameters()).dtype:
            return self.module
        if dtype not in self._cast:
            copy = BokehAdapter(self.dims, device="meta")
            copy.load_state_dict({k: v.to(dtype) for k, v in self.module.state_dict().items()}, assign=True)
            self._cast[dtype] = copy.requires_grad_(False).eval()
        return self._cast[dtype]

    def describe(self) -> str:
        d = self.dims
        qk = "with" if d.has_qk else "without"
        return (
            f"{Path(self.source).name}: {len(d.blocks)} adapted blocks, rank {d.rank}, hidden {d.hidden}, "
            f"bokeh context {d.context}, {qk} query/key updates"
        )


def read_header(path: Path) -> dict[str, tuple[str, tuple[int, ...], tuple[int, int]]]:
    """Parse a safetensors header without reading tensor data: {key: (dtype, shape, offsets)}."""
    path = Path(path)
    if not path.is_file():
        raise BokehAdapterError(f"Bokeh adapter file not found: {path}. {DOWNLOAD_HINT}")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise BokehAdapterError(
            f"{path.name} is a pickled PyTorch checkpoint ({path.suffix}); this pack never executes pickles. "
            f"Expected a .safetensors file. {DOWNLOAD_HINT}"
        )
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if head[:2] == b"PK" or head[:1] == b"\x80":
            raise BokehAdapterError(
                f"{path.name} holds a pickled PyTorch checkpoint under another name; this pack never executes "
                f"pickles. Expected a .safetensors file. {DOWNLOAD_HINT}"
            )
        if len(head) < 8:
            raise BokehAdapterError(f"{path.name} is empty or truncated ({size} bytes); expected a safetensors file. {DOWNLOAD_HINT}")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > min(size - 8, 100 * 2**20):
            raise BokehAdapterError(
                f"{path.name} is not a safetensors file (header length {n} for a {size}-byte file). {DOWNLOAD_HINT}"
            )
        try:
            raw = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BokehAdapterError(f"{path.name} has an unreadable safetensors header ({e}). {DOWNLOAD_HINT}") from None
    out = {}
    data_end = 0
    for key, info in raw.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, offsets = info["dtype"], tuple(int(s) for s in info["shape"]), tuple(info["data_offsets"])
        except (TypeError, KeyError, ValueError):
            raise BokehAdapterError(f"{path.name}: malformed safetensors header entry {key!r}. {DOWNLOAD_HINT}") from None
        if dtype not in _SAFETENSORS_DTYPES:
            raise BokehAdapterError(f"{path.name}: tensor {key!r} has unsupported dtype {dtype}.")
        out[key] = (dtype, shape, offsets)
        data_end = max(data_end, offsets[1])
    if 8 + n + data_end > size:
        raise BokehAdapterError(
            f"{path.name} is truncated: its header describes {8 + n + data_end} bytes, the file has {size}. "
            f"The download was probably interrupted; download it again. {DOWNLOAD_HINT}"
        )
    return out


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


def infer_dims(shapes: dict[str, tuple[int, ...]], name: str = "adapter", alpha: float | None = None) -> tuple[AdapterDims, list[str]]:
    """Infer the adapter's sizes from its tensor shapes. Returns (dims, keys not consumed)."""
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
    dims = AdapterDims(
        hidden=hidden, context=context, embed_hidden=embed_hidden, embed_input=embed_input,
        rank=rank, blocks=blocks, alpha=alpha,
    )
    return dims, unused


def _read_config(path: Path) -> dict:
    cfg_path = path.with_name("config.json")
    if not cfg_path.is_file():
        return {}
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("Ignoring %s beside %s: not readable JSON (%s)", cfg_path, path.name, e)
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _check_config(cfg: dict, dims: AdapterDims, name: str) -> None:
    """config.json is optional; the shapes are the truth. Disagreement is logged, not fatal."""
    expect = {
        "attn_hidden_dim": dims.hidden,
        "bokeh_context_dim": dims.context,
        "bokeh_hidden_dim": dims.embed_hidden,
        "bokeh_input_dim": dims.embed_input,
        "lora_rank": dims.rank,
    }
    for key, value in expect.items():
        if key in cfg and cfg[key] is not None and cfg[key] != value:
            log.warning("%s: config.json says %s=%s but the tensors say %s; using the tensors", name, key, cfg[key], value)
    if isinstance(cfg.get("blocks"), list) and len(cfg["blocks"]) != len(dims.blocks):
        log.warning("%s: config.json lists %d blocks, the file adapts %d; using the file", name, len(cfg["blocks"]), len(dims.blocks))


def load_adapter(path: str | Path) -> LoadedAdapter:
    """Read and validate an adapter file (with an optional config.json beside it)."""
    path = Path(path)
    header = read_header(path)
    name = path.name
    cfg = _read_config(path)
    alpha = cfg.get("lora_alpha")
    alpha = float(alpha) if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha > 0 else None
    dims, unused = infer_dims({k: v[1] for k, v in header.items()}, name=name, alpha=alpha)
    _check_config(cfg, dims, name)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise BokehAdapterError(f"{name} could not be read as safetensors ({e}). Download it again. {DOWNLOAD_HINT}") from None
    for key in unused:
        tensors.pop(key, None)
    for key, t in tensors.items():
        if not t.is_floating_point():
            raise BokehAdapterError(f"{name}: tensor {key} is {t.dtype}; expected floating-point weights.")
        if not bool(torch.isfinite(t).all()):
            raise BokehAdapterError(f"{name}: tensor {key} holds NaN or infinite values; the file is damaged. Download it again.")
    dtypes = {t.dtype for t in tensors.values()}
    module = BokehAdapter(dims, device="meta", dtype=next(iter(dtypes)) if len(dtypes) == 1 else torch.float32)
    module.load_state_dict({k: v.to(module.embedding_layer[0].weight.dtype) for k, v in tensors.items()}, strict=True, assign=True)
    module.requires_grad_(False).eval()
    if unused:
        log.warning("%s: %d keys are not part of a Bokeh adapter and were ignored: %s", name, len(unused), ", ".join(unused[:8]))
    loaded = LoadedAdapter(module=module, dims=dims, source=str(path), config=cfg, unused_keys=unused)
    log.info("Loaded Bokeh adapter %s", loaded.describe())
    return loaded


def host_block_map(dims: AdapterDims, n_double: int, n_single: int, name: str = "adapter") -> dict[tuple[str, int], int]:
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
