"""PyTorch zip checkpoints (``.bin``/``.pt``/``.pth``, how the photo adapter is published), read
only through PyTorch's restricted unpickler (``weights_only=True``) and only when they hold
nothing but dense floating-point tensors. Nothing is ever fully unpickled, a file the restricted
loader refuses is not retried, and other pickles (legacy, ``.ckpt``, ``.pkl``) are refused
unopened. The zip's directory is sized from its end record before it is read."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from pathlib import Path

import torch

from ..attention.errors import BokehAdapterError
from .hints import CONVERT_HINT, DOWNLOAD_HINT
from .keys import key_label
from .safetensors_file import open_regular

# Read through the restricted unpickler only.
TORCH_SUFFIXES = {".bin", ".pt", ".pth"}
PICKLE_SUFFIXES = {".ckpt", ".pkl", ".pickle"}  # refused unopened


def refuse_pickle_suffix(path: Path, name: str) -> None:
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


class TorchZip:
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
