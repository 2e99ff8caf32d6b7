"""What the tests use of the host: the in-process ComfyUI (inprocess.py), the tiny models
(tiny_models.py) and their stand-in nodes (tiny_nodes.py), and small graph helpers."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
from pathlib import Path

import inprocess
import tiny_nodes
from inprocess import *  # noqa: F401,F403
from tiny_models import *  # noqa: F401,F403


def load_pack():
    """The pack loaded by ComfyUI's own loader, with the test-only model nodes registered."""
    pack = inprocess.load_pack()
    tiny_nodes.register_test_nodes()
    return pack


def load_for_inference(model):
    """Load a ModelPatcher (and its additional models) the way sampling does: object patches
    applied, other clones of the same weights unpatched."""
    import comfy.model_management as mm

    mm.load_models_gpu([model] + model.get_nested_additional_models())
    return model


def sampling_transformer_options(model, **extra) -> dict:
    """The transformer_options a model call gets while sampling: the model's own plus its
    wrappers (as comfy.sampler_helpers.prepare_model_patcher merges them in), and ``extra``."""
    import comfy.patcher_extension

    to = comfy.patcher_extension.copy_nested_dicts(model.model_options.get("transformer_options", {}))
    comfy.patcher_extension.merge_nested_dicts(to.setdefault("wrappers", {}), model.wrappers, copy_dict1=False)
    to.update(extra)
    return to


def diffusion_forward(model, x, timestep, context, y, guidance, cond_or_uncond=(0,), sample_sigmas=None):
    """One call of the (patched) FLUX diffusion model, with the transformer_options the sampler
    would build: the model's own, plus cond_or_uncond, sigmas and sample_sigmas."""
    import torch

    load_for_inference(model)
    to = sampling_transformer_options(model, cond_or_uncond=list(cond_or_uncond), sigmas=timestep)
    if sample_sigmas is not None:
        to["sample_sigmas"] = sample_sigmas
    with torch.no_grad():
        return model.model.diffusion_model(x, timestep, context, y=y, guidance=guidance, transformer_options=to)


def ksampler_node(model, latent, steps=4, cfg=1.0, seed=65578):
    return {"class_type": "KSampler", "inputs": {
        "model": model, "positive": ["cond", 0], "negative": ["cond", 0], "latent_image": latent,
        "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}}


def tiny_graph(adapter_name=None, blur=15.0, steps=3, cfg=1.0):
    """An API prompt on tiny models: model, cond, vae, latent [-> loader -> apply] -> sample -> save
    (SaveLatent). Node ids are those names; tests add or rewire nodes."""
    g = {
        "model": {"class_type": "BokehTestTinyFlux", "inputs": {"seed": 0, "preset": "tiny"}},
        "cond": {"class_type": "BokehTestConditioning", "inputs": {"seed": 1, "guidance": 3.0, "preset": "tiny"}},
        "vae": {"class_type": "BokehTestTinyVAE", "inputs": {"seed": 0}},
        "latent": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    }
    model = ["model", 0]
    if adapter_name is not None:
        g["loader"] = {"class_type": "BokehAdapterLoader", "inputs": {"adapter_name": adapter_name}}
        g["apply"] = {"class_type": "BokehApplyAdapter", "inputs": {"model": model, "bokeh_adapter": ["loader", 0], "blur_level": blur}}
        model = ["apply", 0]
    g["sample"] = ksampler_node(model, ["latent", 0], steps=steps, cfg=cfg, seed=7)
    g["save"] = {"class_type": "SaveLatent", "inputs": {"samples": ["sample", 0], "filename_prefix": "bokeh_test"}}
    return g


def insert_model_node(g, node: dict, order: str, last=("apply", 0), node_id="other"):
    """Put ``node`` (a MODEL -> MODEL node, its other inputs set) into a tiny_graph: "before" Apply
    (model -> node -> apply) or "after" ``last`` (``last`` -> node -> sampler)."""
    g[node_id] = node
    if order == "before":
        node["inputs"]["model"] = ["model", 0]
        g["apply"]["inputs"]["model"] = [node_id, 0]
    else:
        node["inputs"]["model"] = list(last)
        g["sample"]["inputs"]["model"] = [node_id, 0]
    return g


def sampled(prompt, node="sample"):
    """The latents the sampler of an API prompt gives; the run must succeed."""
    result = run_prompt(prompt)
    assert result.ok, result.errors
    return result.outputs[node][0][0]["samples"]


TEST_NODES_FOLDER = "bokeh_test_nodes"
TEST_NODES_INIT = '''"""Test-only stand-ins for the FLUX loaders and text encoders (tools/tiny_nodes.py)."""
import sys

if {tools!r} not in sys.path:
    sys.path.insert(0, {tools!r})
import tiny_nodes

NODE_CLASS_MAPPINGS = dict(tiny_nodes.TEST_NODES)
'''


def install_test_nodes(base) -> Path:
    """A second, test-only custom node folder in ``base/custom_nodes`` that registers the tiny
    model stand-ins of tools/tiny_nodes.py in a real server."""
    folder = Path(base) / "custom_nodes" / TEST_NODES_FOLDER
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(TEST_NODES_INIT.format(tools=str(REPO / "tools")))
    return folder


def server_base(base, pack: bool = True, adapters: dict | None = None) -> Path:
    """A base directory for a real test server: custom_nodes with this pack and the test-only
    tiny nodes (unless ``pack`` is false: a bare ComfyUI), and tiny random adapters
    ({file name: seed}) in models/bokeh_diffusion."""
    base = Path(base)
    (base / "custom_nodes").mkdir(parents=True)
    if pack:
        (base / "custom_nodes" / PACK_DIR_NAME).symlink_to(REPO, target_is_directory=True)
        install_test_nodes(base)
    return add_adapters(base, adapters or {})


def add_adapters(base, adapters: dict) -> Path:
    """Tiny random adapters ({file name: seed}) in ``base``/models/bokeh_diffusion."""
    from safetensors.torch import save_file

    base = Path(base)
    blocks = range(TINY["depth"] + TINY["depth_single_blocks"])
    for name, seed in adapters.items():
        sd = random_adapter_sd(TINY["hidden_size"], blocks, seed=seed)
        (base / "models" / "bokeh_diffusion").mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in sd.items()}, str(base / "models" / "bokeh_diffusion" / name))
    return base


@dataclasses.dataclass
class ComfyProcess:
    url: str
    proc: "subprocess.Popen"
    log: Path


@contextlib.contextmanager
def comfy_servers(bases, envs=None):
    """Real ComfyUIs (``main.py --cpu``), one per base directory, each on its own free loopback
    port, started together (their imports overlap); yields a ComfyProcess for each once all answer,
    and stops each by its process on exit. Each log is ``base/server.log``; ``envs``: extra
    environment variables per server (e.g. OMP_NUM_THREADS)."""
    import os
    import socket
    import sys
    import time

    import requests

    root = boot()
    socks = [socket.socket() for _ in bases]
    try:  # all held open at once, so no two servers are given the same port
        for s in socks:
            s.bind(("127.0.0.1", 0))
        ports = [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
    servers, logs = [], []
    try:
        for base, port, env in zip(bases, ports, envs or [{}] * len(bases)):
            log_path = Path(base) / "server.log"
            logs.append(open(log_path, "w"))
            proc = subprocess.Popen(
                [sys.executable, str(root / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                 "--base-directory", str(base), "--disable-auto-launch"],
                cwd=base, stdout=logs[-1], stderr=subprocess.STDOUT, env={**os.environ, **env},
            )
            servers.append(ComfyProcess(f"http://127.0.0.1:{port}", proc, log_path))
        deadline = time.monotonic() + 300
        for server in servers:
            while True:
                if server.proc.poll() is not None:
                    raise RuntimeError("ComfyUI exited: " + server.log.read_text()[-3000:])
                try:
                    if requests.get(server.url + "/system_stats", timeout=2).ok:
                        break
                except requests.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("ComfyUI did not start: " + server.log.read_text()[-3000:])
                time.sleep(0.5)
        yield servers
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.proc.terminate()
        for server in servers:
            try:
                server.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait()
        for log in logs:
            log.close()


@contextlib.contextmanager
def comfy_server(base):
    """The real ComfyUI (``main.py --cpu``) on a free loopback port with ``base`` as its base
    directory; yields its URL once it answers, and stops it (by its process) on exit. The log is
    ``base/server.log``."""
    with comfy_servers([base]) as (server,):
        yield server.url
