"""Real third-party node packs for compatibility tests (never shipped, never modified).

The archives live in ``../shared/thirdparty/`` (``BOKEH_THIRDPARTY_DIR`` overrides), are checked
against that folder's ``SHA256SUMS`` and unpacked into the git-ignored ``.cache/thirdparty/``
(one folder per archive, shared by every host: the files are the same). ``load`` registers a
pack's nodes in the in-process ComfyUI through the host's own custom-node loader.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import os
import shutil
import sys
import tarfile
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ARCHIVE_DIR = Path(os.environ.get("BOKEH_THIRDPARTY_DIR") or REPO.parent / "shared" / "thirdparty")
CACHE = REPO / ".cache" / "thirdparty"
ARCHIVES = {  # pack folder -> archive (see ../shared/thirdparty/README.md)
    "ComfyUI-TeaCache": "ComfyUI-TeaCache-91dff8e3.tar.gz",
    "Comfy-WaveSpeed": "Comfy-WaveSpeed-82537451.tar.gz",
    "ComfyUI-MagCache": "ComfyUI-MagCache-47bdd2ac.tar.gz",
    "ComfyUI-Distributed": "ComfyUI-Distributed-a91f9fb0.tar.gz",  # copied per server (tools/distributed_pack.py)
}
# Packs whose __init__ also imports nodes for other model families that need packages outside this
# project's dependencies: {folder: (module with the FLUX node, why)}. That module is loaded alone,
# unmodified, as the pack's submodule (the name ComfyUI's loader gives it).
FLUX_MODULE_ONLY = {
    "ComfyUI-TeaCache": ("nodes", "its __init__ also imports nodes_diffusers (CogVideoX), which needs the "
                                  "'diffusers' package; its FLUX node lives in nodes.py, which does not"),
}

_loaded: dict = {}


class Missing(Exception):
    """The archive is not there: the pack is not tested."""


def _checksums() -> dict:
    sums = {}
    for line in (ARCHIVE_DIR / "SHA256SUMS").read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip().lstrip("*")] = digest.lower()
    return sums


def unpack(folder: str) -> Path:
    """The unpacked pack folder; ``Missing`` when its archive is absent, ValueError when the
    archive does not match SHA256SUMS."""
    name = ARCHIVES[folder]
    archive = ARCHIVE_DIR / name
    if not archive.is_file():
        raise Missing(f"{name} is absent (expected in {ARCHIVE_DIR})")
    target = CACHE / name.removesuffix(".tar.gz")
    want = _checksums().get(name)
    done = target / ".complete"
    if done.is_file() and done.read_text().strip() == want:
        return target / folder
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if want != digest:
        raise ValueError(f"{archive} does not match {ARCHIVE_DIR / 'SHA256SUMS'} (sha256 {digest})")
    CACHE.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=CACHE))
    try:
        with tarfile.open(archive) as tf:
            tf.extractall(staging, filter="data")
        if not (staging / folder).is_dir():
            raise ValueError(f"{name} does not hold the folder {folder}")
        (staging / ".complete").write_text(digest + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / folder


def _load_module_only(path: Path, module: str):
    """The pack's ``module`` as ComfyUI's loader would name it, without running the pack's
    __init__ (see FLUX_MODULE_ONLY)."""
    sys_name = str(path).replace(".", "_x_")
    package = sys.modules.get(sys_name)
    if package is None:
        package = types.ModuleType(sys_name)
        package.__path__ = [str(path)]
        package.__file__ = str(path / "__init__.py")
        sys.modules[sys_name] = package
    return importlib.import_module(f"{sys_name}.{module}")


def load(folder: str) -> dict:
    """Register the pack's nodes in the in-process host (once per process); returns its
    NODE_CLASS_MAPPINGS. ``Missing`` when the archive is absent, ImportError when the pack does
    not import on this host (the host logs why)."""
    if folder in _loaded:
        return _loaded[folder]
    import inprocess

    inprocess.load_pack()
    import nodes

    path = unpack(folder)
    if folder in FLUX_MODULE_ONLY:
        module = _load_module_only(path, FLUX_MODULE_ONLY[folder][0])
        mappings = dict(module.NODE_CLASS_MAPPINGS)
    else:
        before = dict(nodes.NODE_CLASS_MAPPINGS)
        if not asyncio.run(nodes.load_custom_node(str(path))):
            raise ImportError(f"{folder} does not import on this ComfyUI (see the host's log)")
        mappings = {k: v for k, v in nodes.NODE_CLASS_MAPPINGS.items() if before.get(k) is not v}
    nodes.NODE_CLASS_MAPPINGS.update(mappings)
    _loaded[folder] = mappings
    return mappings
