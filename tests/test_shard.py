"""The sweep shared out over real ComfyUI servers (scripts/bokeh_sweep.py --servers).

Three real `main.py --cpu` servers on loopback, started together once for the module and
stopped by their processes: a and b are folders made as the README tells a user to make them
(scripts/tiny_server.py: this pack, the test-only tiny model nodes of fixtures/test_nodes and a tiny
random adapter in models/bokeh_diffusion), with more adapters added; c is a bare ComfyUI without the pack. The runner's --check mode swaps
the FLUX loaders for those tiny nodes, so the images are noise, but every image goes through
the real sampler, the pack's grounding, the server's queue, websocket, /history and /view.

What "the same images" means here: the shards' batches are 4 and 3 rows, the single batch 6.
Every row is the same maths, but CPU kernels block and sum a batch differently by its size, so
the float images agree to rounding and the 8-bit images within one rounding step (1/255) per
value, in a few values. On one machine they are often equal to the pixel; on another CPU of the
same kind some values differ by 1 (seen on AMD EPYC with AVX-512). A wrong row (another K, the
pivot, rows out of order) differs by more, in most values: the tests check the comparison sees it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import comfy_client
import harness
import hostile_servers
import numpy as np
import pytest
import requests
import shard_sweep
from model_files import ADAPTER
from PIL import Image

import bokeh_sweep  # noqa: E402 (runner/sweep_command.py, tests/conftest.py)

RUNNER = harness.REPO / "scripts" / "bokeh_sweep.py"
TARGETS = "0, 6, 12, 20, 28"  # 5 targets: shards of 3 and 2 on two servers
ARGV = ["--check", "--steps", "2", "--grounding-steps", "1", "--width", "64", "--height", "64", "--seed", "7",
        "--targets", TARGETS]
ROWS = 6
NAMES = ["sweep_00_k15_pivot.png", "sweep_01_k0.png", "sweep_02_k6.png", "sweep_03_k12.png", "sweep_04_k20.png", "sweep_05_k28.png"]
MISMATCH = "bokeh_shard_mismatch.safetensors"  # a different random adapter on a and on b
ONLY_ON_A = "bokeh_shard_only_on_a.safetensors"


def tiny_server_folder(base):
    """A server folder as the README tells a user to make one: scripts/tiny_server.py, run as a command."""
    proc = subprocess.run([sys.executable, str(harness.REPO / "scripts" / "tiny_server.py"), str(base)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"--base-directory {base}" in proc.stdout and "bokeh_sweep.py --check --servers" in proc.stdout
    return base


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("shard_servers")
    bases = [harness.add_adapters(tiny_server_folder(root / "a"), {MISMATCH: 101, ONLY_ON_A: 41}),
             harness.add_adapters(tiny_server_folder(root / "b"), {MISMATCH: 102}),
             harness.server_base(root / "c", pack=False)]
    with harness.comfy_servers(bases) as procs:
        yield dict(zip("abc", procs))


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once the socket is closed


# A stall limit for runs beside stand-in servers: the tiny models' runs move on every second or
# so even on a busy 2-core machine, so 15 s without progress can only be a stalled server.
TEST_STALL = 15.0


def run(urls, out, *extra, on_event=None, stall=comfy_client.STALL):
    args = bokeh_sweep.parse_args(ARGV + list(extra) + ["--output", str(out)])
    return shard_sweep.sweep(urls, lambda defs: bokeh_sweep.remote_prompt(args, defs), out, on_event=on_event,
                             progress=False, stall=stall)


# One 8-bit rounding step: the most that batches of different sizes may differ by (see above),
# in a small share of the values (values within a float rounding of a step's edge; in practice a
# handful of the 6 x 64 x 64 x 3).
ROUNDING = 1
ROUNDED_SHARE = 0.01


def differences(got: np.ndarray, want: np.ndarray) -> tuple[int, float]:
    """(largest |difference| in 0..255 levels, share of values that differ)."""
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    return int(diff.max()), float((diff > 0).mean())


def assert_same_images(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    largest, share = differences(got, want)
    assert largest <= ROUNDING and share <= ROUNDED_SHARE, (
        f"{what}: max |difference| {largest}/255 in {share:.2%} of the values; expected within {ROUNDING}/255 "
        f"(one rounding step) in at most {ROUNDED_SHARE:.0%}")


def meter_rows(report: str) -> list[tuple[str, float]]:
    """(label, sharpness) per row of a blur_meter.txt table."""
    rows = [line.split("|")[1:3] for line in report.splitlines() if line.startswith("| K ")]
    return [(label.strip(), float(value)) for label, value in rows]


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
    # A server's long validation text is cut at a word's end, never mid-word.
    words = " ".join(f"word{i}" for i in range(200))
    refused = comfy_client.prompt_error({"error": {"message": "Prompt outputs failed validation"}, "node_errors": {
        "3": {"class_type": "UNETLoader", "errors": [{"message": "Value not in list", "details": words}]}}})
    assert refused.endswith(" ...") and refused[:-4].split()[-1] in words.split() and len(refused) < 600
    for bad in ("ftp://x", "http://", "x:8188", "http://a:1,http://a:1", " , "):
        with pytest.raises(ValueError):
            comfy_client.parse_servers(bad)


def test_photo_is_not_shared_out(tmp_path):
    with pytest.raises(SystemExit) as stop:
        bokeh_sweep.main(["--photo", str(tmp_path / "me.jpg"), "--servers", "http://127.0.0.1:1"])
    assert stop.value.code == 2


def test_servers_that_lack_model_files_name_each_file_and_exit_2(servers, tmp_path):
    """Every server lacks the adapter named: each file per server, where it goes there and where it
    comes from, in whole words; exit 2 as a local run with missing files."""
    a, b = servers["a"].url, servers["b"].url
    proc = subprocess.run([sys.executable, str(RUNNER), *ARGV, "--adapter", "no_such_adapter.safetensors", "--servers", f"{a},{b}",
                           "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "..." not in proc.stderr and "Start the servers" not in proc.stderr
    for url in (a, b):
        assert (f"  {url}: missing model files:\n    no_such_adapter.safetensors\n        goes in: models/bokeh_diffusion on "
                "that server") in proc.stderr
    assert proc.stderr.count("        get it: the Bokeh Diffusion adapter from the authors") == 2
    assert not (tmp_path / "out").exists()


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
    """The user's command: c has no pack, one URL has no server, b lacks the adapter file (seen in
    its node list, before any run); a renders the whole sweep, the single batch's (the adapter on a
    has the default one's weights)."""
    bare, down, a, b = servers["c"].url, closed_port_url(), servers["a"].url, servers["b"].url
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(RUNNER), *ARGV, "--adapter", ONLY_ON_A, "--servers", f"{bare},{down},{b},{a}",
                           "--output", str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"{bare}: the Bokeh Diffusion pack is not installed there" in proc.stderr
    assert f"{down}: GET /object_info failed" in proc.stderr
    assert f"{b}: lacks the model file {ONLY_ON_A} (in models/bokeh_diffusion). Left out." in proc.stderr
    assert "5 targets in 1 shard on 1 server: shard 1 (K 0, 6, 12, 20, 28)" in proc.stderr
    assert f"Rendered: shard 1 (K 0, 6, 12, 20, 28) on {a}" in proc.stdout
    # One progress bar: a step per sampler step and one for the shard's images, so it is full only
    # once every image is in.
    assert proc.stderr.count("sweep on 1 server") >= 1 and "100%" in proc.stderr and "| 3/3 [" in proc.stderr
    files = sweep_files(out)
    assert [f.name for f in files] == NAMES and (out / "sheet.png").exists() and (out / "blur_meter.txt").exists()
    assert f"Wrote to {out}:\n  " + "\n  ".join(NAMES + ["sheet.png", "blur_plot.png", "blur_meter.txt"]) in proc.stdout
    # --check's images are noise: the last line says the verdict means nothing.
    assert proc.stdout.rstrip().splitlines()[-1].startswith("--check: these images are noise")
    assert_same_images(np.stack([pixels(f) for f in files]), single[0].images, "runner vs single batch")


def test_the_comparison_sees_a_wrong_row(single):
    """The tolerance is far below what a wrong row makes: any two rows of the sweep (another K, or
    the pivot) differ in far more of the values (with the tiny random models, rows of nearby K
    differ by a step or two in 15% of the values or more)."""
    images = single[0].images
    for i in range(ROWS):
        for j in range(i + 1, ROWS):
            largest, share = differences(images[i], images[j])
            assert largest >= ROUNDING and share > 10 * ROUNDED_SHARE, (i, j, largest, share)


def test_sharded_sweep_equals_the_single_server_batch(servers, single, tmp_path):
    one, one_out = single
    a, b = servers["a"].url, servers["b"].url
    two = run([a, b], tmp_path)
    assert [s.levels for s in two.shards] == [[0, 6, 12], [20, 28]]
    assert two.rendered_by == {0: a, 1: b} and not two.faults
    assert two.ks == one.ks == [15.0, 0, 6, 12, 20, 28]
    largest, mean = two.pivot_diff  # the two shards' pivots: batches of 4 and 3 rows
    assert largest <= ROUNDING and mean < 0.1, two.pivot_diff
    assert_same_images(two.images, one.images, "sharded vs single batch")
    # The written files: every row once (the pivot first), the single batch's pixels within rounding.
    files = sweep_files(tmp_path)
    assert [f.name for f in files] == NAMES
    for mine, theirs in zip(files, sweep_files(one_out)):
        assert_same_images(pixels(mine), pixels(theirs), mine.name)
    assert_same_images(pixels(tmp_path / "sheet.png"), pixels(one_out / "sheet.png"), "contact sheet")
    report = (tmp_path / "blur_meter.txt").read_text()
    assert report.count("| K ") == ROWS and "K 15 (pivot)" in report and "corr(K, blur)" in report
    # The meter reads the 8-bit images: a value one step off moves a sharpness in its 4th digit.
    mine, theirs = meter_rows(report), meter_rows((one_out / "blur_meter.txt").read_text())
    assert [label for label, _ in mine] == [label for label, _ in theirs]
    assert all(abs(a - b) <= 0.01 for (_, a), (_, b) in zip(mine, theirs)), (mine, theirs)
    assert (tmp_path / "blur_plot.png").stat().st_size > 1000


# -- broken and hostile servers beside a good one (tests/hostile_servers.py) -----------------

@pytest.fixture(scope="module")
def object_info(servers):
    """A real server's node list, which the stand-ins serve so that the runner builds its graph for them."""
    return requests.get(servers["a"].url + "/object_info", timeout=60).content


FAULTS = {  # stand-in mode -> how the runner names what it did
    "deep_object_info": "its node list (/object_info) is not a JSON object",
    "deep_prompt": "POST /prompt answered HTTP 200",
    "deep_history": "/history is not a JSON object",
    "deep_ws": "sent a websocket message that is not JSON (JSON nested too deeply)",
    "redirect": "GET /object_info answered HTTP 302",
    "stall": f"no progress for {TEST_STALL:g} s while running (execution_start)",
    "drip": f"no progress for {TEST_STALL:g} s while running (execution_start)",
    "other_id": f"no progress for {TEST_STALL:g} s while waiting for the run",
}


@pytest.mark.parametrize("mode", sorted(FAULTS))
def test_a_hostile_server_is_left_out_and_the_sweep_finishes(servers, single, object_info, tmp_path, mode):
    """Deep JSON anywhere, redirects to another host, a run that starts and never moves on: the
    server is named with the reason, its shard is rendered by the good one, the sweep is whole."""
    a = servers["a"].url
    with hostile_servers.stand_in(mode, object_info, redirect_to=a) as bad:
        result = run([bad.url, a], tmp_path, stall=TEST_STALL)
    assert FAULTS[mode] in result.faults.get(bad.url, ""), result.faults
    assert set(result.rendered_by.values()) == {a}
    assert_same_images(result.images, single[0].images, f"beside a stand-in ({mode})")
    if mode in ("stall", "drip", "other_id"):  # the stalled prompt was taken off that server
        assert hostile_servers.PROMPT_ID in bad.forgotten


def test_a_server_that_never_answers_is_left_out(servers, single, tmp_path):
    """A socket that accepts connections and never answers: left out after the stall limit, not 5 minutes."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        result = run([url, servers["a"].url], tmp_path, stall=TEST_STALL)
    assert f"GET /object_info got no whole answer in {TEST_STALL:g} s" in result.faults[url]
    assert time.monotonic() - start < 120
    assert_same_images(result.images, single[0].images, "beside a silent server")


def test_ctrl_c_keeps_the_finished_shards(servers, single, object_info, tmp_path):
    """The user's command beside a server that stalls: Ctrl-C once the good server's shard is
    done writes that shard as a labelled partial sweep, takes the stalled prompt off, exits 130."""
    a = servers["a"].url
    out, err_path = tmp_path / "out", tmp_path / "stderr.txt"
    with hostile_servers.stand_in("stall", object_info) as bad, open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, str(RUNNER), *ARGV, "--servers", f"{a},{bad.url}", "--output", str(out)],
                                stdout=subprocess.PIPE, stderr=err, text=True, cwd=tmp_path)
        deadline = time.monotonic() + 300
        while "1/2 shards done" not in err_path.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=60)
        stderr = err_path.read_text()
        assert proc.returncode == 130, stderr[-3000:]
        assert hostile_servers.PROMPT_ID in bad.forgotten
    assert "Traceback" not in stderr and "Stopped. The shards queued or running on the servers were taken off them." in stderr
    assert "Kept the finished shards: 3 of 5 targets and the pivot" in stderr and "not rendered: K 20, 28" in stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["partial.txt", "partial_00_k15_pivot.png", "partial_01_k0.png", "partial_02_k6.png", "partial_03_k12.png"]
    assert "PARTIAL" in (out / "partial.txt").read_text() and "Not rendered: K 20, 28." in (out / "partial.txt").read_text()
    got = np.stack([pixels(out / n) for n in names[1:]])
    assert_same_images(got, single[0].images[:4], "the partial sweep")


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
    assert_same_images(result.images, single[0].images, "after a server was killed")
    assert len(sweep_files(tmp_path)) == ROWS
