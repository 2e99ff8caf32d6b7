"""The ``models/bokeh_diffusion`` folder and the adapter cache (touches ComfyUI's folder_paths)."""

from __future__ import annotations

import os
from pathlib import Path

from ..attention.errors import BokehAdapterError
from .checkpoint import DOWNLOAD_HINT, LoadedAdapter, load_adapter

FOLDER = "bokeh_diffusion"
EXTENSIONS = {".safetensors"}  # pickles are never listed, never loaded
_cache: dict[tuple, LoadedAdapter] = {}


def register_model_folder() -> None:
    """Add ``models/bokeh_diffusion``, keeping paths ``extra_model_paths.yaml`` already gave it."""
    import folder_paths

    default = os.path.join(folder_paths.models_dir, FOLDER)
    paths = folder_paths.folder_names_and_paths.get(FOLDER, ([], set()))[0]
    if default not in paths:
        paths.append(default)
    folder_paths.folder_names_and_paths[FOLDER] = (paths, set(EXTENSIONS))


def adapter_files() -> list[str]:
    import folder_paths

    return folder_paths.get_filename_list(FOLDER)


def load_named(name: str) -> LoadedAdapter:
    """Load an adapter by its name in the model folder (or an absolute path); one load per file version."""
    import folder_paths

    if os.path.isabs(name):
        path = Path(name)
    else:
        full = folder_paths.get_full_path(FOLDER, name)
        if full is None:
            where = ", ".join(folder_paths.get_folder_paths(FOLDER))
            raise BokehAdapterError(f"Bokeh adapter {name!r} not found in {where}. {DOWNLOAD_HINT}")
        path = Path(full)
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    if key is not None and key in _cache:
        return _cache[key]
    loaded = load_adapter(path)
    if key is not None:
        _cache.clear()  # keep one adapter in RAM: the release is 583 MB
        _cache[key] = loaded
    return loaded
