"""The grounded sweep shared out with ComfyUI-Distributed on three real loopback servers.

A master and two workers (`main.py --cpu`, the workers with COMFYUI_IS_WORKER=1), started once for
the module and stopped by their processes; each has its own unmodified copy of the extension from
the real archive (checked against SHA256SUMS; it keeps gpu_config.json in its own folder, and the
master's is written here), this pack, the test-only tiny model nodes and the same tiny random
adapter. The bundled workflow bokeh_grounded_sweep_distributed.json is converted with the master's
own node definitions (so the generator's layout of DistributedSeed and DistributedCollector is
checked against the real extension), its loaders swapped for tiny models, 2 steps at 64 x 64, and
queued as the master's Queue button does: POST /distributed/queue.

A missing archive is "not tested" (skip), and fails under CI=true.
"""

from __future__ import annotations

import socket
import time

import distributed_pack
import harness
import numpy as np
import pytest
import requests
import workflow_api
from model_files import ADAPTER
from PIL import Image

TARGETS = "0, 6, 12, 20, 28"  # N = 5: master 2, worker 1 2, worker 2 1
WORKERS = ["w1", "w2"]
TIMEOUT_S = 5  # the collector's wait for a silent worker (the extension's default is 60 s)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    assert (distributed_pack.unpacked_or_skip() / "nodes" / "collector.py").is_file()
    root = tmp_path_factory.mktemp("distributed")
    bases = [harness.server_base(root / name, adapters={ADAPTER: 41}) for name in ("master", *WORKERS)]
    extensions = [distributed_pack.install(b / "custom_nodes") for b in bases]
    envs = [{}] + [{"COMFYUI_IS_WORKER": "1"}] * len(WORKERS)
    with harness.comfy_servers(bases, envs) as procs:
        master, *workers = procs
        ports = [int(w.url.rsplit(":", 1)[1]) for w in workers]
        distributed_pack.write_master_config(extensions[0], [*zip(WORKERS, ports), ("down", closed_port())], TIMEOUT_S)
        yield {"master": master, "workers": dict(zip(WORKERS, workers)), "defs": distributed_pack.remote_defs(master.url),
               "output": bases[0] / "output"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def prompt_for(cluster, participants=3, targets=TARGETS, seed_to_sampler=False, steps=2) -> dict:
    """The bundled workflow as the master's UI would send it, on tiny models, 64 x 64."""
    prompt = distributed_pack.sweep_prompt(cluster["defs"], targets, participants, steps, 64)
    (pivot,) = workflow_api.find(prompt, "BokehPivotBatch")
    (sampler,) = workflow_api.find(prompt, "KSampler")
    (number,) = workflow_api.find(prompt, "DistributedSeed")
    assert prompt[pivot]["inputs"]["participant"] == [number, 0] and prompt[number]["inputs"]["seed"] == 0
    if seed_to_sampler:  # the mistake: DistributedSeed also drives the sampler's seed
        prompt[sampler]["inputs"]["seed"] = [number, 0]
    return prompt


def saved_sweeps(cluster) -> list:
    return sorted((cluster["output"] / "bokeh").glob("sweep_*.png")) if (cluster["output"] / "bokeh").exists() else []


def error_of(entry) -> str | None:
    for event, data in entry["status"].get("messages", []):
        if event == "execution_error":
            return f"{data['node_type']}: {data['exception_message']}"
    return None


def queue(cluster, prompt, workers=WORKERS, delegate=False, on_queued=None) -> tuple[dict, list]:
    """POST /distributed/queue on the master (what its Queue button sends); waits for the master's
    prompt. Returns its history entry and the sweep files it saved."""
    before = set(saved_sweeps(cluster))
    master = cluster["master"].url
    body = distributed_pack.queue(master, prompt, workers, delegate)
    if on_queued:
        on_queued(body)
    entry = distributed_pack.wait(master, body["prompt_id"])
    return entry, [p for p in saved_sweeps(cluster) if p not in before]


def pixels(paths) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths]).astype(np.int16)


@pytest.fixture(scope="module")
def single(cluster):
    """The single-server batch: the same workflow with participants 1 on the master alone (the
    collector passes the images through, Gather checks 1 + N rows)."""
    entry, files = queue(cluster, prompt_for(cluster, participants=1), workers=[])
    assert entry["status"]["status_str"] == "success", error_of(entry)
    assert len(files) == 6
    return pixels(files)


def test_the_gathered_sweep_equals_the_single_batch(cluster, single):
    entry, files = queue(cluster, prompt_for(cluster), on_queued=lambda body: assert_workers(body, 2))
    assert entry["status"]["status_str"] == "success", error_of(entry)
    assert len(files) == 6  # one pivot and five targets, not 3 pivots + 5
    diff = np.abs(pixels(files) - single)
    # The rows were rendered in batches of 3, 3 and 2 rows instead of 6: the same arithmetic up to
    # the order of float sums, then 8-bit truncation (the collector's and Save's) and Colour Match
    # on 8-bit input. A value a float rounding away from a level boundary lands one level off; two
    # at most after Colour Match's shift. Measured on this CPU (0.3.75): 1 level at most, mean 0.0003.
    assert diff.max() <= 2, f"gathered vs single batch: max |difference| {diff.max()}/255, mean {diff.mean():.4f}/255"
    outputs = entry["outputs"]
    texts = [t for out in outputs.values() for t in out.get("text", []) if isinstance(t, str)]
    assert any("corr(K, blur)" in t and "K 15 (pivot)" in t and t.count("| K ") == 6 for t in texts), texts


def assert_workers(body, count):
    assert body.get("worker_count") == count, body


def test_more_participants_than_targets(cluster):
    entry, files = queue(cluster, prompt_for(cluster, targets="0, 28"))
    assert entry["status"]["status_str"] == "success", error_of(entry)
    assert len(files) == 3  # worker 2 rendered the pivot alone; Gather kept one pivot


def test_a_worker_offline_at_dispatch_ends_in_gathers_error(cluster):
    """'down' is enabled but nothing listens there: the extension leaves it out, w2 becomes
    participant 1, participant 2's targets are never rendered."""
    entry, files = queue(cluster, prompt_for(cluster), workers=["down", "w2"], on_queued=lambda body: assert_workers(body, 1))
    message = error_of(entry)
    assert entry["status"]["status_str"] == "error" and message.startswith("BokehGatherSweep: "), message
    assert "got 6 images; expected 8" in message and "offline" in message and "timed out" in message
    assert not files


def test_distributed_seed_on_the_sampler_gives_the_pivot_error(cluster):
    entry, files = queue(cluster, prompt_for(cluster, seed_to_sampler=True))
    message = error_of(entry)
    assert message and message.startswith("BokehGatherSweep: "), message
    assert "participant 1 " in message and "participant 2 " in message and "a different seed" in message
    assert not files


def test_delegate_only_is_refused_with_a_message(cluster):
    """Delegate-only: the extension cuts the master's own branch, Pivot Batch included, from the
    master's prompt, so Gather gets no plan (and participant 0's targets are rendered by nobody)."""
    entry, files = queue(cluster, prompt_for(cluster), delegate=True)
    message = error_of(entry)
    assert message and message.startswith("BokehGatherSweep: ") and "delegate-only" in message, message
    assert not files


def test_a_worker_killed_mid_run_ends_in_gathers_error(cluster):
    """Kills w2 (SIGKILL, by its PID) once its prompt is in its queue; the collector waits
    TIMEOUT_S, finds w2 gone, and passes on the rows it has. Runs last: w2 is gone after it."""
    w2 = cluster["workers"]["w2"]

    def kill_when_queued(body):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            q = requests.get(w2.url + "/queue", timeout=5).json()
            if q.get("queue_running") or q.get("queue_pending"):
                w2.proc.kill()
                w2.proc.wait()
                return
            time.sleep(0.02)
        raise AssertionError("w2 never got its prompt")

    # 40 steps (about a second on a CPU, where 2 take a few hundredths): w2 is still rendering when killed.
    entry, files = queue(cluster, prompt_for(cluster, steps=40), on_queued=kill_when_queued)
    assert w2.proc.returncode == -9
    message = error_of(entry)
    assert message and message.startswith("BokehGatherSweep: "), message
    assert "got 6 images; expected 8" in message and "timed out" in message
    assert not files
