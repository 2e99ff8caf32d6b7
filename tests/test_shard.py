"""The sweep shared out over real ComfyUI servers (scripts/bokeh_sweep.py --servers).

Three real `main.py --cpu` servers on loopback, started together once for the module and
stopped by their processes: a and b have this pack, the test-only tiny model nodes
(tools/tiny_nodes.py, as the browser test installs them) and a tiny random adapter in
models/bokeh_diffusion; c is a bare ComfyUI without the pack. The runner's --check mode swaps
the FLUX loaders for those tiny nodes, so the images are noise, but every image goes through
the real sampler, the pack's grounding, the server's queue, websocket, /history and /view.

Measured: the sharded sweep's images equal the single-server batch's exactly (the same PNG
pixels), though the shards' batches are 4 and 3 rows and the single batch 6.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import comfy_client
import harness
import numpy as np
import pytest
import shard_sweep
from model_files import ADAPTER
from PIL import Image

sys.path.insert(0, str(harness.REPO / "scripts"))
import bokeh_sweep  # noqa: E402

RUNNER = harness.REPO / "scripts" / "bokeh_sweep.py"
TARGETS = "0, 6, 12, 20, 28"  # 5 targets: shards of 3 and 2 on two servers
ARGV = ["--check", "--steps", "2", "--grounding-steps", "1", "--width", "64", "--height", "64", "--seed", "7",
        "--targets", TARGETS]
ROWS = 6
MISMATCH = "bokeh_shard_mismatch.safetensors"  # a different random adapter on a and on b
ONLY_ON_A = "bokeh_shard_only_on_a.safetensors"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("shard_servers")
    bases = [harness.server_base(root / "a", adapters={ADAPTER: 41, MISMATCH: 101, ONLY_ON_A: 41}),
             harness.server_base(root / "b", adapters={ADAPTER: 41, MISMATCH: 102}),
             harness.server_base(root / "c", pack=False)]
    with harness.comfy_servers(bases) as procs:
        yield dict(zip("abc", procs))


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once the socket is closed


def run(urls, out, *extra, on_event=None):
    args = bokeh_sweep.parse_args(ARGV + list(extra) + ["--output", str(out)])
    return shard_sweep.sweep(urls, lambda defs: bokeh_sweep.remote_prompt(args, defs), out, on_event=on_event, progress=False)


def pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def sweep_files(out) -> list:
    return sorted(out.glob("sweep_*.png"))


@pytest.fixture(scope="module")
def single(servers, tmp_path_factory):
    """The single-server batch: [pivot, all five targets] in one prompt on server a."""
    out = tmp_path_factory.mktemp("single")
    result = run([servers["a"].url], out)
    assert len(result.shards) == 1 and len(result.images) == ROWS
    return result, out


def test_shards_are_balanced_by_count():
    assert shard_sweep.split([0, 6, 12, 20, 28], 2, 64) == [[0, 6, 12], [20, 28]]
    assert shard_sweep.split(list(range(12)), 2, 64) == [list(range(6)), list(range(6, 12))]
    assert shard_sweep.split([1, 2], 5, 64) == [[1], [2]]
    assert [len(s) for s in shard_sweep.split(list(range(130)), 2, 64)] == [44, 43, 43]  # the batch limit wins


def test_server_answers_are_checked():
    url = "http://x:1"
    good = {"9": {"images": [{"filename": "a.png", "subfolder": "", "type": "temp"}]}}
    assert comfy_client.image_refs(url, good, "9", 1) == [comfy_client.ImageRef("a.png", "", "temp")]
    for outputs in ({}, {"9": {"images": [{"filename": "a.png", "type": "input"}]}},
                    {"9": {"images": [{"filename": 7}]}}, {"9": {"images": ["a.png"]}}, good):
        with pytest.raises(comfy_client.RunFailed, match="http://x:1"):
            comfy_client.image_refs(url, outputs, "9", 2 if outputs is good else 1)
    for data in (b"<html>", b"\x89PNG\r\n\x1a\n" + b"\0" * 40):
        with pytest.raises(comfy_client.RunFailed, match="not a readable PNG"):
            comfy_client.decode_png(url, data, (64, 64))
    for bad in ("ftp://x", "http://", "x:8188", "http://a:1,http://a:1", " , "):
        with pytest.raises(ValueError):
            comfy_client.parse_servers(bad)


def test_photo_is_not_shared_out(tmp_path):
    assert bokeh_sweep.main(["--photo", str(tmp_path / "me.jpg"), "--servers", "http://127.0.0.1:1"]) == 2


def test_no_server_for_the_work_fails_clearly(servers, tmp_path):
    bare, down = servers["c"].url, closed_port_url()
    with pytest.raises(shard_sweep.NoServerLeft) as err:
        run([bare, down], tmp_path)
    assert f"{bare}: the Bokeh Diffusion pack is not installed" in str(err.value) and f"{down}: " in str(err.value)
    assert not list(tmp_path.iterdir())


def test_differing_pivots_are_reported_not_mixed(servers, tmp_path):
    a, b = servers["a"].url, servers["b"].url
    with pytest.raises(shard_sweep.PivotMismatch) as err:
        run([a, b], tmp_path, "--adapter", MISMATCH)
    message = str(err.value)
    assert f"shard 1 on {a} (ComfyUI " in message and f"shard 2 on {b} (ComfyUI " in message
    assert "differs by" in message and "nothing is written" in message
    assert not list(tmp_path.glob("*.png"))


def test_the_runner_reports_servers_without_the_pack_down_or_without_a_model(servers, single, tmp_path):
    """The user's command: c has no pack, one URL has no server, b lacks the adapter file; a renders
    b's shard too, and the sweep is the single batch's (the adapter on a has the default one's weights)."""
    bare, down, a, b = servers["c"].url, closed_port_url(), servers["a"].url, servers["b"].url
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(RUNNER), *ARGV, "--adapter", ONLY_ON_A, "--servers", f"{bare},{down},{b},{a}",
                           "--output", str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"{bare}: the Bokeh Diffusion pack is not installed there" in proc.stderr
    assert f"{down}: GET /object_info failed" in proc.stderr
    assert f"{b}: refused the graph" in proc.stderr and ONLY_ON_A in proc.stderr
    assert f"Rendered: shard 1 (K 0, 6, 12) on {a}; shard 2 (K 20, 28) on {a}" in proc.stdout
    assert proc.stderr.count("sweep on 2 servers") >= 1 and "100%" in proc.stderr  # one progress bar
    files = sweep_files(out)
    assert len(files) == ROWS and (out / "sheet_00001_.png").exists() and (out / "blur_meter.txt").exists()
    assert np.array_equal(np.stack([pixels(f) for f in files]), single[0].images)


def test_sharded_sweep_equals_the_single_server_batch(servers, single, tmp_path):
    one, one_out = single
    a, b = servers["a"].url, servers["b"].url
    two = run([a, b], tmp_path)
    assert [s.levels for s in two.shards] == [[0, 6, 12], [20, 28]]
    assert two.rendered_by == {0: a, 1: b} and not two.faults
    assert two.ks == one.ks == [15.0, 0, 6, 12, 20, 28]
    assert two.pivot_diff == (0.0, 0.0)
    diff = np.abs(two.images.astype(np.int16) - one.images.astype(np.int16))
    assert diff.max() == 0, f"sharded vs single batch: max |difference| {diff.max()}/255, mean {diff.mean():.4f}/255"
    # The written files: every row once (the pivot first), the same pixels as the single batch's.
    files = sweep_files(tmp_path)
    assert [f.name for f in files] == [f"sweep_{i:05}_.png" for i in range(1, ROWS + 1)]
    for mine, theirs in zip(files, sweep_files(one_out)):
        assert np.array_equal(pixels(mine), pixels(theirs)), mine.name
    assert np.array_equal(pixels(tmp_path / "sheet_00001_.png"), pixels(one_out / "sheet_00001_.png"))
    report = (tmp_path / "blur_meter.txt").read_text()
    assert report == (one_out / "blur_meter.txt").read_text()
    assert report.count("| K ") == ROWS and "K 15 (pivot)" in report and "corr(K, blur)" in report
    assert (tmp_path / "blur_plot.png").stat().st_size > 1000


def test_a_server_killed_mid_run_still_yields_the_whole_sweep(servers, single, tmp_path):
    """Kills server b (SIGKILL, by its PID) as soon as its shard starts running. Runs last: b is gone after it."""
    a, b = servers["a"], servers["b"]
    events = []

    def on_event(kind, url, shard):
        events.append((kind, url, shard.index))
        if kind == "started" and url == b.url:
            b.proc.kill()
            b.proc.wait()

    result = run([a.url, b.url], tmp_path, on_event=on_event)
    assert b.proc.returncode == -9
    assert ("started", b.url, 1) in events and ("failed", b.url, 1) in events
    assert result.rendered_by == {0: a.url, 1: a.url} and b.url in result.faults
    assert sorted(e for e in events if e[0] == "done") == [("done", a.url, 0), ("done", a.url, 1)]
    assert np.array_equal(result.images, single[0].images)
    assert len(sweep_files(tmp_path)) == ROWS
