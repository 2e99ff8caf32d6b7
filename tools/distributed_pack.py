"""ComfyUI-Distributed (robertvoy, 1.4.4, Apache-2.0) for tests: the real extension from
../shared/thirdparty/ (tools/thirdparty.py checks and unpacks it), copied unmodified into a test
ComfyUI's custom_nodes (one copy per server: the extension keeps gpu_config.json in its own
folder), and the master's gpu_config.json.

An absent archive is "not tested": tests skip, and fail where CI is set (``unpacked_or_skip``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import thirdparty

FOLDER = "ComfyUI-Distributed"
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1")


def unpacked_or_skip() -> Path:
    """The checked, unpacked extension; a missing archive skips the test (fails it under CI=true)."""
    import pytest

    try:
        return thirdparty.unpack(FOLDER)
    except thirdparty.Missing as e:
        if IN_CI:
            pytest.fail(f"CI=true but ComfyUI-Distributed is not tested: {e} (see ../shared/thirdparty/README.md)")
        pytest.skip(f"not tested: {e}")


def install(custom_nodes) -> Path:
    """A fresh copy of the extension in ``custom_nodes``; returns its folder."""
    dest = Path(custom_nodes) / FOLDER
    shutil.copytree(thirdparty.unpack(FOLDER), dest)
    return dest


def write_master_config(extension: Path, workers: list[tuple[str, int]], timeout_s: int = 10) -> None:
    """The master's gpu_config.json: ``workers`` = [(id, port)] on loopback, all enabled; dispatch
    over HTTP; ``timeout_s``: how long the collector waits for a silent worker before it gives up
    and returns the rows it has (the extension's default is 60 s)."""
    config = {
        "master": {"host": "127.0.0.1"},
        "workers": [{"id": wid, "name": wid, "host": "127.0.0.1", "port": port, "type": "local", "enabled": True}
                    for wid, port in workers],
        "settings": {"debug": True, "auto_launch_workers": False, "stop_workers_on_master_exit": False,
                     "master_delegate_only": False, "websocket_orchestration": False, "worker_timeout_seconds": timeout_s},
    }
    (Path(extension) / "gpu_config.json").write_text(json.dumps(config, indent=2))


WORKFLOW = Path(__file__).resolve().parent.parent / "workflows" / "bokeh_grounded_sweep_distributed.json"


def remote_defs(url: str) -> dict:
    """A server's node definitions (/object_info), as tools/workflow_api.py reads node classes."""
    import comfy_client
    import requests

    return {k: comfy_client.RemoteNodeDef(v) for k, v in requests.get(url + "/object_info", timeout=60).json().items()}


def sweep_prompt(defs: dict, targets: str, participants: int, steps: int, size: int, seed: int | None = None,
                 preset: str = "tiny") -> dict:
    """The bundled distributed workflow as the master's UI sends it, converted with ``defs`` (the
    master's own, so the generator's layout of the extension's nodes is checked), on the tiny
    models of tools/tiny_nodes.py (``preset`` 'tiny' or 'mid')."""
    import workflow_api

    prompt = workflow_api.swap_for_tiny_models(workflow_api.ui_to_api(workflow_api.load(WORKFLOW), defs), preset)
    (pivot,) = workflow_api.find(prompt, "BokehPivotBatch")
    (sampler,) = workflow_api.find(prompt, "KSampler")
    (latent,) = workflow_api.find(prompt, "EmptySD3LatentImage")
    prompt[pivot]["inputs"].update(targets=targets, participants=participants)
    prompt[sampler]["inputs"]["steps"] = steps
    if seed is not None:
        prompt[sampler]["inputs"]["seed"] = seed
    prompt[latent]["inputs"].update(width=size, height=size)
    return prompt


def queue(master: str, prompt: dict, workers, delegate: bool = False) -> dict:
    """POST /distributed/queue on the master, as its Queue button does; returns the answer
    (prompt_id, worker_count, ...)."""
    import uuid

    import requests

    r = requests.post(master + "/distributed/queue", json={
        "prompt": prompt, "enabled_worker_ids": list(workers), "client_id": uuid.uuid4().hex, "delegate_master": delegate,
    }, timeout=120)
    if r.status_code != 200:
        raise RuntimeError(f"/distributed/queue answered {r.status_code}: {r.text[:3000]}")
    return r.json()


def wait(url: str, prompt_id: str, timeout: float = 300) -> dict:
    """The prompt's /history entry once it has finished (success or error)."""
    import time

    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = requests.get(f"{url}/history/{prompt_id}", timeout=10).json().get(prompt_id)
        status = (entry or {}).get("status", {})
        if status.get("completed") or status.get("status_str") == "error":
            return entry
        time.sleep(0.05)
    raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")
