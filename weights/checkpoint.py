"""The Bokeh adapter loader (spec section 6; the photo adapter: bokehdepth-photo.md section 1):
one open file, read by its container's reader (safetensors_file, torch_zip), its keys made
canonical and its dimensions inferred (keys), its values checked, into a BokehAdapter. What was
checked is what is loaded. Every key of a file is consumed or reported. Error texts name the
file by the name it was given (its model-folder name) and never echo the file's bytes or numbers
derived from them: they may travel to a remote API client.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..attention.bokeh import AdapterDims, BokehAdapter
from ..attention.errors import BokehAdapterError
from .hints import DOWNLOAD_HINT
from .keys import canonical_shapes, infer_dims, key_label
from .safetensors_file import Safetensors, open_regular
from .torch_zip import TORCH_SUFFIXES, TorchZip, refuse_pickle_suffix

log = logging.getLogger(__name__)

# A trained low-rank adapter's weights are of order 1; weights this large overflow half-precision
# attention and turn the latents into NaN.
MAX_ABS_WEIGHT = 1e4


@dataclass
class LoadedAdapter:
    """A parsed adapter file: its weights (on CPU, file dtype) and what was learned about it.

    It also owns the ModelPatchers that carry its weights into model management (one per
    compute dtype and devices, made by attention.patch), so the weights and their
    patchers live and die together: when no graph output and no model clone holds this
    object or one of its patchers any more, everything is freed.
    """

    module: BokehAdapter
    dims: AdapterDims
    source: str  # the name the file was loaded by (its model-folder name)
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
    refuse_pickle_suffix(path, name)
    f, st = open_regular(path, name)
    with f:
        container = (TorchZip if path.suffix.lower() in TORCH_SUFFIXES else Safetensors)(f, st, name)
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
    loaded = LoadedAdapter(module=module, dims=dims, source=name, unused_keys=unused, identity=identity)
    log.info("Loaded Bokeh adapter %s", loaded.describe())
    return loaded
