"""Prepares a ComfyUI base folder for trying `bokeh_sweep.py --check --servers` without FLUX: this
pack and the test-only tiny model nodes (tools/tiny_nodes.py, registered by a small custom node
that imports them from this clone) in its custom_nodes, and a tiny random Bokeh adapter in its
models/bokeh_diffusion. The images are noise; this shows that the servers, the pack and the
sharding work.

    python tools/tiny_server.py /tmp/bokeh_server_a        # one folder per server
    python <ComfyUI>/main.py --cpu --port 8188 --base-directory /tmp/bokeh_server_a   (printed)
    python scripts/bokeh_sweep.py --check --servers http://127.0.0.1:8188,...

Run it with the Python that runs ComfyUI (it needs torch and safetensors).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import comfy_host
import harness
from model_files import ADAPTER

TINY_ADAPTER_SEED = 41  # the same adapter in every folder, so the shards' pivots agree


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="a new (or empty) folder to prepare as a ComfyUI base directory")
    p.add_argument("--port", type=int, default=8188, help="the port to show in the printed command (default: 8188)")
    args = p.parse_args(argv)
    base = Path(args.folder).expanduser().resolve()
    if base.exists() and (not base.is_dir() or any(base.iterdir())):
        print(f"tiny_server.py: {base} is not a new or empty folder; give one per server", file=sys.stderr)
        return 2
    harness.server_base(base, adapters={ADAPTER: TINY_ADAPTER_SEED})
    try:
        main_py = str(comfy_host.find_host(fetch=False) / "main.py")
    except comfy_host.HostNotFound:
        main_py = "<ComfyUI>/main.py"
    command = [sys.executable, main_py, "--cpu", "--port", str(args.port), "--base-directory", str(base)]
    print(f"Prepared {base}: this pack and the tiny test nodes in custom_nodes, a tiny random {ADAPTER} in "
          f"models/bokeh_diffusion. Start a ComfyUI on it:\n  {shlex.join(command)}\n"
          f"then: python scripts/bokeh_sweep.py --check --servers http://127.0.0.1:{args.port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
