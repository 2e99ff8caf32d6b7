"""The ``models/bokeh_diffusion`` folder and the adapter cache (touches ComfyUI's folder_paths).

A node input can come from any client of ComfyUI's HTTP API, so an adapter is only ever
opened by a name that the folder listing returns: no path from a node input is opened.
"""

from __future__ import annotations

import logging
import os
import stat

from ..attention.errors import BokehAdapterError
from .checkpoint import LoadedAdapter, load_adapter
from .hints import DOWNLOAD_HINT
from .torch_zip import TORCH_SUFFIXES, is_torch_zip

log = logging.getLogger(__name__)

FOLDER = "bokeh_diffusion"
# .bin/.pt/.pth: PyTorch zip checkpoints (the photo adapter's bokeh_lora.bin), listed only when they
# look like one and read through PyTorch's restricted unpickler; other pickles are never listed.
EXTENSIONS = {".safetensors"} | TORCH_SUFFIXES
# One adapter in RAM: the release is 583 MB. Graph outputs that still hold an older one keep it
# alive only as long as ComfyUI's cache keeps them.
_cache: dict[tuple, LoadedAdapter] = {}


def register_model_folder() -> None:
    """Add ``models/bokeh_diffusion``, keeping paths ``extra_model_paths.yaml`` already gave it."""
    import folder_paths

    default = os.path.join(folder_paths.models_dir, FOLDER)
    paths = folder_paths.folder_names_and_paths.get(FOLDER, ([], set()))[0]
    if default not in paths:
        paths.append(default)
    folder_paths.folder_names_and_paths[FOLDER] = (paths, set(EXTENSIONS))


# The zip check of a .bin/.pt file, by the file's identity (device, inode, size, mtime): every
# prompt validation lists the folder, and re-reading each zip directory each time costs seconds
# in a large folder. Bounded: a folder that is not an adapter folder must not grow it for ever.
_zip_checks: dict[tuple, bool] = {}
MAX_ZIP_CHECKS = 4096


def _listable(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:  # dangling links
        return False
    if not stat.S_ISREG(st.st_mode):  # devices, FIFOs and folders are left out
        return False
    if os.path.splitext(path)[1].lower() not in TORCH_SUFFIXES:
        return True
    identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if identity not in _zip_checks:
        if len(_zip_checks) >= MAX_ZIP_CHECKS:
            _zip_checks.clear()
        _zip_checks[identity] = is_torch_zip(path)
    return _zip_checks[identity]


def adapter_files() -> list[str]:
    """Names of the adapter files in the model folders: regular .safetensors files, and .bin /
    .pt / .pth files whose zip table of contents is a PyTorch checkpoint's (symlinks followed)."""
    import folder_paths

    names = folder_paths.get_filename_list(FOLDER)
    return [n for n in names if _listable(folder_paths.get_full_path(FOLDER, n) or "")]


def _shown(name) -> str:
    text = name if isinstance(name, str) else type(name).__name__
    text = "".join(c if c.isprintable() else "?" for c in text)
    return repr(text if len(text) <= 80 else text[:77] + "...")


def unlisted_reason(name) -> str | None:
    """Why ``name`` cannot be loaded (it is not a file of the model folder), or None."""
    if isinstance(name, str) and name in adapter_files():
        return None
    return (
        f"Bokeh adapter {_shown(name)} is not in the list of files in models/bokeh_diffusion. "
        f"Pick one from the list (refresh the page after adding a file). {DOWNLOAD_HINT}"
    )


def load_named(name: str) -> LoadedAdapter:
    """Load an adapter by its name in the model folder; one load per file version."""
    import folder_paths

    reason = unlisted_reason(name)
    if reason is not None:
        raise BokehAdapterError(reason)
    path = folder_paths.get_full_path(FOLDER, name)
    if path is None:  # removed since it was listed
        raise BokehAdapterError(f"Bokeh adapter {_shown(name)} not found in models/bokeh_diffusion. {DOWNLOAD_HINT}")
    loaded = load_adapter(path, name=name, known=_cache)
    if loaded.identity not in _cache:
        log.info("Bokeh adapter %s read from %s", name, path)
        _cache.clear()
        _cache[loaded.identity] = loaded
    return loaded
