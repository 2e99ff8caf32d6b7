"""The Bokeh adapter checkpoint formats: read, identify, validate, infer dims (spec section 6;
the photo adapter: bokehdepth-photo.md section 1).

Adapters are told apart by keys and shapes, never by file names: ``*_bokeh`` pairs make the
text-to-image adapter, ``*_dof`` pairs the photo adapter (same maths, other K mapping), with or
without a ``module.`` prefix. Every key of a file is consumed or reported. Two containers are
read, each from one open file (what was checked is what is loaded):
- safetensors, by the small reader below;
- a PyTorch zip checkpoint (``.bin``/``.pt``/``.pth``, how the photo adapter is published),
  only through PyTorch's restricted unpickler (``weights_only=True``), and only when it holds
  nothing but tensors. Nothing is ever fully unpickled, and a file the restricted loader
  refuses is not retried. Other pickles (legacy, ``.ckpt``, ``.pkl``) are refused unopened.
Error texts name the file by the name it was given (its model-folder name) and never echo the
file's bytes or numbers derived from them: they may travel to a remote API client.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import stat
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..attention.bokeh import PAIR_NAMES, PHOTO, TEXT, AdapterDims, BokehAdapter
from ..attention.errors import BokehAdapterError, BokehModelError

log = logging.getLogger(__name__)

DOWNLOAD_HINT = (
    "Download the authors' Bokeh Diffusion FLUX adapter (model.safetensors, about 583 MB; "
    "non-commercial licence) or the BokehDepth photo adapter (bokeh_lora.bin) and put it in "
    "ComfyUI/models/bokeh_diffusion/ (see the README)."
)
# PyTorch zip checkpoints: read through the restricted unpickler only (see load_adapter).
TORCH_SUFFIXES = {".bin", ".pt", ".pth"}
PICKLE_SUFFIXES = {".ckpt", ".pkl", ".pickle"}  # refused unopened
CONVERT_HINT = (
    "Convert it to a .safetensors file holding only the adapter's tensors (see the README's "
    "Troubleshooting), or download the original file again."
)
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
# safetensors dtype -> (torch dtype, bytes per element). Only floating-point weights make an adapter.
DTYPES = {
    "F64": (torch.float64, 8), "F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2),
    "F8_E4M3": (torch.float8_e4m3fn, 1), "F8_E5M2": (torch.float8_e5m2, 1),
}
NON_FLOAT_DTYPES = {"I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"}
MAX_HEADER = 16 * 2**20  # the release's header is about 50 KB
# A trained low-rank adapter's weights are of order 1; weights this large overflow half-precision
# attention and turn the latents into NaN.
MAX_ABS_WEIGHT = 1e4


@dataclass(frozen=True)
class Entry:
    """One tensor of a safetensors header: dtype name, shape, byte range in the data section."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass
class LoadedAdapter:
    """A parsed adapter file: its weights (on CPU, file dtype) and what was learned about it.

    It also owns the ModelPatchers that carry its weights into model management (one per
    compute dtype and devices, made by attention.flux_binding), so the weights and their
    patchers live and die together: when no graph output and no model clone holds this
    object or one of its patchers any more, everything is freed.
    """

    module: BokehAdapter
    dims: AdapterDims
    source: str  # the name the file was loaded by (its model-folder name)
    config: dict = field(default_factory=dict)
    unused_keys: list[str] = field(default_factory=list)
    identity: tuple = ()
    patchers: dict = field(default_factory=dict, repr=False)
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
            f"{self.source}: {d.flavour_name}, {len(d.blocks)} adapted blocks, rank {d.rank}, hidden {d.hidden}, "
            f"bokeh context {d.context}, {qk} query/key updates"
        )


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


def open_regular(path, name: str):
    """Open ``path`` for reading if it is a regular file (symlinks followed); a FIFO, device or
    directory is refused without blocking. Returns (file, os.stat_result of the open file)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise BokehAdapterError(f"Bokeh adapter file {name} not found. {DOWNLOAD_HINT}") from None
    except OSError as e:
        raise BokehAdapterError(f"Bokeh adapter file {name} cannot be opened ({e.strerror}). Check its permissions.") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise BokehAdapterError(f"{name} is not a regular file (a device, pipe or folder); expected a .safetensors file.")
    return os.fdopen(fd, "rb"), st


def _looks_pickled(head: bytes) -> bool:
    return head[:2] == b"PK" or head[:1] == b"\x80"


def read_header_from(f, size: int, name: str) -> tuple[dict[str, Entry], bytes]:
    """Parse and check the safetensors header of an open file of ``size`` bytes, without reading
    tensor data. Returns ({key: Entry}, the raw header bytes)."""
    head = f.read(8)
    n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
    plausible = len(head) == 8 and 2 <= n <= min(size - 8, MAX_HEADER)
    first = f.read(1) if plausible else b""
    if not (plausible and first == b"{"):
        # A safetensors file starts with its header length and then "{"; only where that is
        # not the case can a pickle's or zip's magic bytes be told apart from a length.
        if _looks_pickled(head):
            raise BokehAdapterError(
                f"{name} holds a pickled PyTorch checkpoint under a .safetensors name; this pack never executes "
                f"pickles. A PyTorch zip checkpoint of tensors only (such as the photo adapter's bokeh_lora.bin) "
                f"loads under a .bin name, through PyTorch's restricted loader. {DOWNLOAD_HINT}"
            )
        if size < 10:
            raise BokehAdapterError(f"{name} is empty or truncated: too short to be a safetensors file. {DOWNLOAD_HINT}")
        raise BokehAdapterError(f"{name} is not a safetensors file (its first bytes are not a safetensors header). {DOWNLOAD_HINT}")
    raw_header = first + f.read(n - 1)
    if len(raw_header) != n:
        raise BokehAdapterError(f"{name} changed while it was read (the header is shorter than announced). Try again.")
    try:
        raw = json.loads(raw_header)
    except (ValueError, RecursionError):
        raise BokehAdapterError(f"{name} has an unreadable safetensors header (not valid JSON). {DOWNLOAD_HINT}") from None
    if not isinstance(raw, dict):
        raise BokehAdapterError(f"{name} has a malformed safetensors header (not a table of tensors). {DOWNLOAD_HINT}")
    data_size = size - 8 - n
    entries = {}
    for key, info in raw.items():
        if key == "__metadata__":
            continue
        entries[key] = _entry(info, key, name)
    spans = sorted((e.begin, e.end) for e in entries.values())
    for (_, end_a), (begin_b, _) in zip(spans, spans[1:]):
        if begin_b < end_a:
            raise BokehAdapterError(f"{name} is damaged: two tensors share bytes in its safetensors header. {DOWNLOAD_HINT}")
    data_end = spans[-1][1] if spans else 0
    if data_end > data_size:
        raise BokehAdapterError(
            f"{name} is truncated: its header describes more data than the file holds. "
            f"The download was probably interrupted; download it again. {DOWNLOAD_HINT}"
        )
    return entries, raw_header


def _entry(info, key: str, name: str) -> Entry:
    bad = BokehAdapterError(f"{name}: malformed safetensors header entry ({key_label(key)}). {DOWNLOAD_HINT}")

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if not isinstance(info, dict):
        raise bad
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or not isinstance(shape, list) or not isinstance(offsets, list):
        raise bad
    if len(offsets) != 2 or not all(is_int(o) for o in offsets) or offsets[0] > offsets[1]:
        raise bad
    if len(shape) > 8 or not all(is_int(s) and s < 2**40 for s in shape):
        raise bad
    if dtype in NON_FLOAT_DTYPES:
        raise BokehAdapterError(f"{name}: tensor {key_label(key)} holds {dtype} values; expected floating-point weights.")
    if dtype not in DTYPES:
        raise BokehAdapterError(f"{name}: tensor {key_label(key)} has a dtype that safetensors does not define. {DOWNLOAD_HINT}")
    if math.prod(shape) * DTYPES[dtype][1] != offsets[1] - offsets[0]:
        raise BokehAdapterError(f"{name}: tensor {key_label(key)} has a byte range that does not fit its shape; the file is damaged. {DOWNLOAD_HINT}")
    return Entry(dtype, tuple(shape), offsets[0], offsets[1])


def read_header(path, name: str | None = None) -> dict[str, tuple[str, tuple[int, ...], tuple[int, int]]]:
    """The safetensors header of ``path`` without its tensor data: {key: (dtype, shape, offsets)}."""
    path = Path(path)
    name = name or path.name
    _refuse_pickle_suffix(path, name)
    f, st = open_regular(path, name)
    with f:
        entries, _ = read_header_from(f, st.st_size, name)
    return {k: (e.dtype, e.shape, (e.begin, e.end)) for k, e in entries.items()}


def _refuse_pickle_suffix(path: Path, name: str) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise BokehAdapterError(
            f"{name} is a pickled checkpoint ({path.suffix}); this pack never executes pickles. "
            f"Expected a .safetensors file (or a PyTorch .bin/.pt holding only tensors). {DOWNLOAD_HINT}"
        )


# A PyTorch checkpoint's zip has a record per tensor plus a few (the photo adapter: about 1,200);
# a directory larger than this is not an adapter, and reading it costs time at every listing.
MAX_ZIP_RECORDS = 20_000
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory: signature, disks, counts, size, offset, comment
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")


def _zip_record_count(f, size: int) -> int | None:
    """How many records the zip's central directory declares (its end record, zip64 or not),
    read from the file's last 64 KiB without reading the directory; None if there is no end record."""
    tail_size = min(size, (1 << 16) + _EOCD.size)
    f.seek(size - tail_size)
    tail = f.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        return None
    count = _EOCD.unpack_from(tail, at)[4]
    locator = at - _ZIP64_LOCATOR.size
    if locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
        offset = _ZIP64_LOCATOR.unpack_from(tail, locator)[2]
        f.seek(offset)
        record = f.read(_ZIP64_EOCD.size)
        if len(record) == _ZIP64_EOCD.size and record[:4] == b"PK\x06\x06":
            count = _ZIP64_EOCD.unpack(record)[6]
    return count


def _torch_zip_records(f, name: str) -> list[zipfile.ZipInfo]:
    """The members of a PyTorch zip checkpoint (one ``<archive>/data.pkl`` and its tensor
    records), read from the zip's central directory; anything else is refused, and so is a
    directory of more than MAX_ZIP_RECORDS records (before it is read)."""
    f.seek(0)
    if f.read(4) != b"PK\x03\x04":
        raise BokehAdapterError(
            f"{name} is not a PyTorch zip checkpoint (a legacy pickle or another file under a .bin/.pt name); "
            f"this pack never executes pickles. {CONVERT_HINT}"
        )
    count = _zip_record_count(f, os.fstat(f.fileno()).st_size)
    if count is not None and count > MAX_ZIP_RECORDS:
        raise BokehAdapterError(f"{name} is a zip file of {count} records; a Bokeh adapter checkpoint has a few "
                                f"thousand at most (expected at most {MAX_ZIP_RECORDS}). {CONVERT_HINT}")
    try:
        with zipfile.ZipFile(f) as z:
            records = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise BokehAdapterError(f"{name} is a damaged zip file. {CONVERT_HINT}") from None
    if sum(1 for r in records if r.filename.endswith("/data.pkl") and r.filename.count("/") == 1) != 1:
        raise BokehAdapterError(f"{name} is a zip file but not a PyTorch checkpoint. {CONVERT_HINT}")
    return records


def is_torch_zip(path) -> bool:
    """Cheap test for the folder listing: is ``path`` a PyTorch zip checkpoint (magic bytes and
    the zip's table of contents only; nothing is unpickled)?"""
    try:
        f, _ = open_regular(path, "file")
        with f:
            _torch_zip_records(f, "file")
        return True
    except (BokehAdapterError, OSError):
        return False


def _read_torch_zip(f, name: str) -> dict[str, torch.Tensor]:
    """The tensors of a PyTorch zip checkpoint, through PyTorch's restricted unpickler only
    (``weights_only=True``: no code from the file runs; what it refuses is never retried)."""
    f.seek(0)
    try:
        obj = torch.load(f, map_location="cpu", weights_only=True, mmap=False)
    except Exception:  # noqa: BLE001 - the restricted loader's refusals and damaged archives alike
        # The loader's message quotes the file's contents (the names of the Python objects it
        # refused); it is not passed on.
        raise BokehAdapterError(
            f"{name} holds something besides tensors, or is damaged: PyTorch's restricted loader refused it. "
            f"This pack never unpickles fully. {CONVERT_HINT}"
        ) from None
    if not isinstance(obj, dict) or not obj or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise BokehAdapterError(
            f"{name} is a PyTorch checkpoint but not a flat table of named tensors (a state dict); "
            f"expected the adapter's tensors only. {CONVERT_HINT}"
        )
    return obj


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


def _read_config(path: Path, name: str) -> dict:
    """The optional config.json beside the adapter (a regular file of at most 1 MB)."""
    cfg_path = path.with_name("config.json")
    if not os.path.lexists(cfg_path):
        return {}
    try:
        f, st = open_regular(cfg_path, "config.json")
        with f:
            text = f.read(2**20 + 1)
        if len(text) > 2**20:
            raise ValueError("larger than 1 MB")
        cfg = json.loads(text)
    except (BokehAdapterError, OSError, ValueError, RecursionError) as e:
        log.warning("Ignoring %s beside %s: not a readable JSON file (%s)", cfg_path, name, e)
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
            log.warning("%s: config.json says %s=%r but the tensors say %s; using the tensors", name, key, cfg[key], value)
    if isinstance(cfg.get("blocks"), list) and len(cfg["blocks"]) != len(dims.blocks):
        log.warning("%s: config.json lists %d blocks, the file adapts %d; using the file", name, len(cfg["blocks"]), len(dims.blocks))


def _alpha(cfg: dict) -> float | None:
    alpha = cfg.get("lora_alpha")
    ok = isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and math.isfinite(alpha) and 0 < alpha < 1e6
    return float(alpha) if ok else None


def _read_tensor(f, entry: Entry, data_start: int, name: str, key: str) -> torch.Tensor:
    """One tensor's bytes, read straight into its storage (little-endian, as safetensors stores)."""
    dtype, _ = DTYPES[entry.dtype]
    t = torch.empty(entry.shape, dtype=dtype)
    f.seek(data_start + entry.begin)
    view = memoryview(t.reshape(-1).view(torch.uint8).numpy())
    if f.readinto(view) != entry.end - entry.begin:
        raise BokehAdapterError(f"{name} changed or was cut while it was read ({key_label(key)}). Wait for it to be complete and try again.")
    return t


def _check_values(t: torch.Tensor, name: str, key: str) -> None:
    wide = t if t.dtype in (torch.float32, torch.float64) else t.float()
    if not bool(torch.isfinite(wide).all()):
        raise BokehAdapterError(f"{name}: tensor {key_label(key)} holds NaN or infinite values; the file is damaged. Download it again.")
    if wide.numel() and float(wide.abs().amax()) > MAX_ABS_WEIGHT:
        raise BokehAdapterError(
            f"{name}: tensor {key_label(key)} holds weights larger than {MAX_ABS_WEIGHT:g} in magnitude; a trained "
            "adapter's are of order 1, and such weights turn the images into NaN. The file is damaged or not a "
            f"trained Bokeh adapter. {DOWNLOAD_HINT}"
        )


class _Safetensors:
    """A safetensors file, read from one open file: header first, tensors on demand."""

    def __init__(self, f, st, name):
        self.f, self.name = f, name
        self.entries, raw_header = read_header_from(f, st.st_size, name)
        self.data_start = 8 + len(raw_header)
        self.digest = hashlib.sha256(raw_header).hexdigest()
        self.shapes = {k: e.shape for k, e in self.entries.items()}

    def tensor(self, key: str) -> torch.Tensor:
        return _read_tensor(self.f, self.entries[key], self.data_start, self.name, key)


class _TorchZip:
    """A PyTorch zip checkpoint: identified by its table of contents (names, CRCs, sizes), read
    whole through the restricted unpickler."""

    def __init__(self, f, st, name):
        self.f, self.name = f, name
        records = _torch_zip_records(f, name)
        toc = json.dumps([(r.filename, r.CRC, r.file_size) for r in records]).encode()
        self.digest = hashlib.sha256(toc).hexdigest()
        self._tensors = None

    @property
    def shapes(self):
        if self._tensors is None:
            self._tensors = _read_torch_zip(self.f, self.name)
            for key, t in self._tensors.items():
                if t.layout != torch.strided:  # sparse and other layouts: the restricted loader builds them
                    raise BokehAdapterError(f"{self.name}: tensor {key_label(key)} is stored as a {str(t.layout).split('.')[-1]} "
                                            f"tensor; expected plain dense weights. {CONVERT_HINT}")
                if not t.dtype.is_floating_point:
                    raise BokehAdapterError(f"{self.name}: tensor {key_label(key)} holds {t.dtype} values; expected floating-point weights.")
        return {k: tuple(t.shape) for k, t in self._tensors.items()}

    def tensor(self, key: str) -> torch.Tensor:
        return self._tensors[key]


def load_adapter(path: str | Path, name: str | None = None, known: dict | None = None) -> LoadedAdapter:
    """Read and validate an adapter file (with an optional config.json beside it).

    ``name`` is how errors and logs call the file (its model-folder name; default: the file
    name). ``known`` maps file identities to adapters already loaded: a file whose identity
    (device, inode, size, mtime, ctime and a hash of its header or zip table of contents) is
    there is not read again. Everything comes from one open file, so a file replaced meanwhile
    cannot mix in.
    """
    path = Path(path)
    name = name or path.name
    _refuse_pickle_suffix(path, name)
    f, st = open_regular(path, name)
    with f:
        container = (_TorchZip if path.suffix.lower() in TORCH_SUFFIXES else _Safetensors)(f, st, name)
        identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, container.digest)
        if known is not None and identity in known:
            return known[identity]
        cfg = _read_config(path, name)
        shapes, origin, flavour = canonical_shapes(container.shapes, name)
        dims, unused = infer_dims(shapes, name=name, alpha=_alpha(cfg), flavour=flavour)
        _check_config(cfg, dims, name)
        tensors = {}
        for key in shapes:
            if key in unused:
                continue
            tensors[key] = container.tensor(origin[key])
            _check_values(tensors[key], name, origin[key])
    unused = sorted(origin[k] for k in unused)
    dtypes = {t.dtype for t in tensors.values()}
    dtype = next(iter(dtypes)) if len(dtypes) == 1 else torch.float32
    if dtype.itemsize == 1:  # float8 files: bfloat16 holds every float8 value exactly, and can run
        dtype = torch.bfloat16
    module = BokehAdapter(dims, device="meta", dtype=dtype)
    module.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=True, assign=True)
    module.requires_grad_(False).eval()
    if unused:
        log.warning("%s: %d keys are not part of a Bokeh adapter and were ignored: %s", name, len(unused), ", ".join(unused[:8]))
    loaded = LoadedAdapter(module=module, dims=dims, source=name, config=cfg, unused_keys=unused, identity=identity)
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
