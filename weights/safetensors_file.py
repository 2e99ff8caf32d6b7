"""A safetensors file read by the pack's own small reader, from one open file: the header is
parsed and checked (sizes, offsets, dtypes) before any tensor data is read, and a pickle under a
.safetensors name is recognised and refused. Error texts never echo the file's bytes."""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import struct
from dataclasses import dataclass

import torch

from ..attention.errors import BokehAdapterError
from .hints import DOWNLOAD_HINT
from .keys import key_label

# safetensors dtype -> (torch dtype, bytes per element). Only floating-point weights make an adapter.
DTYPES = {
    "F64": (torch.float64, 8), "F32": (torch.float32, 4), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2),
    "F8_E4M3": (torch.float8_e4m3fn, 1), "F8_E5M2": (torch.float8_e5m2, 1),
}
NON_FLOAT_DTYPES = {"I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"}
MAX_HEADER = 16 * 2**20  # the release's header is about 50 KB


@dataclass(frozen=True)
class Entry:
    """One tensor of a safetensors header: dtype name, shape, byte range in the data section."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


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


def _read_tensor(f, entry: Entry, data_start: int, name: str, key: str) -> torch.Tensor:
    """One tensor's bytes, read straight into its storage (little-endian, as safetensors stores)."""
    dtype, _ = DTYPES[entry.dtype]
    t = torch.empty(entry.shape, dtype=dtype)
    f.seek(data_start + entry.begin)
    view = memoryview(t.reshape(-1).view(torch.uint8).numpy())
    if f.readinto(view) != entry.end - entry.begin:
        raise BokehAdapterError(f"{name} changed or was cut while it was read ({key_label(key)}). Wait for it to be complete and try again.")
    return t


class Safetensors:
    """A safetensors file, read from one open file: header first, tensors on demand."""

    def __init__(self, f, st, name):
        self.f, self.name = f, name
        self.entries, raw_header = read_header_from(f, st.st_size, name)
        self.data_start = 8 + len(raw_header)
        self.digest = hashlib.sha256(raw_header).hexdigest()
        self.shapes = {k: e.shape for k, e in self.entries.items()}

    def tensor(self, key: str) -> torch.Tensor:
        return _read_tensor(self.f, self.entries[key], self.data_start, self.name, key)
