"""Colour match, blur meter, contact sheet, blur levels; and whole graphs in the host's executor."""

from pathlib import Path

import harness
import kornia
import numpy as np
import pytest
import reference
import torch
from test_adapter import CFG, N_BLOCKS


@pytest.fixture(scope="module")
def photo(pack):
    """The host's own input/example.png (part of every ComfyUI checkout), as a (1, H, W, 3) IMAGE."""
    import folder_paths
    from PIL import Image

    path = Path(folder_paths.get_input_directory()) / "example.png"
    if not path.is_file():
        path = harness.boot() / "input" / "example.png"
    img = np.asarray(Image.open(path).convert("RGB").resize((256, 256)), dtype=np.float32) / 255.0
    return torch.from_numpy(img)[None]


def tinted(photo):
    scales = torch.tensor([[1.0, 1.0, 1.0], [1.2, 0.9, 0.8], [0.7, 0.8, 1.1], [0.9, 1.1, 0.9]])
    return (photo * scales[:, None, None, :]).clamp(0, 1)


def test_colour_match_moves_lab_means_to_pivot(mods, photo):
    batch = tinted(photo)
    out = mods.color.BokehColorMatch.execute(batch, None, 0).result[0]
    means = mods.colormath.lab_means(out)
    assert torch.equal(out[0], batch[0])  # pivot unchanged
    assert (means[1:] - means[0]).abs().max() < 1.5  # Lab units; clipping keeps it from exact
    before = mods.colormath.lab_means(batch)
    assert (before[1:] - before[0]).abs().max() > 5
    assert out.device == batch.device and out.dtype == batch.dtype and out.shape == batch.shape


def test_colour_match_std_option_and_reference(mods, photo):
    batch = torch.cat([photo, (photo * 0.5 + 0.25)])  # same mean region, lower contrast
    lab = lambda im: kornia.color.rgb_to_lab(im.movedim(-1, 1))  # noqa: E731
    plain = mods.color.BokehColorMatch.execute(batch, None, 0).result[0]
    stdm = mods.color.BokehColorMatch.execute(batch, None, 0, None, True).result[0]
    std_pivot = lab(batch[:1]).std(dim=(2, 3))
    assert (lab(stdm[1:]).std(dim=(2, 3)) - std_pivot).abs().max() < (lab(plain[1:]).std(dim=(2, 3)) - std_pivot).abs().max()
    ref = torch.full_like(photo, 0.5)
    ref[..., 0] = 0.8
    to_ref = mods.color.BokehColorMatch.execute(batch, None, 0, ref).result[0]
    assert (mods.colormath.lab_means(to_ref) - mods.colormath.lab_means(ref)).abs().max() < 2.0
    dropped = mods.color.BokehColorMatch.execute(tinted(photo), None, 2, None, False, True).result[0]
    assert dropped.shape[0] == 3


def test_colour_match_on_a_sweep_without_pivot(mods, photo):
    """A photo stack (Blur Levels' sweep, no pivot row): every image is matched to the reference,
    the first one too; without a reference there is nothing to match to."""
    batch = tinted(photo)
    sweep = mods.levels.Sweep(k_values=(1.0, 10.0, 20.0, 30.0), pivot_row=None)
    ref = torch.full_like(photo, 0.5)
    out = mods.color.BokehColorMatch.execute(batch, sweep, 0, ref, True).result[0]
    assert not torch.equal(out[0], batch[0])
    assert (mods.colormath.lab_means(out) - mods.colormath.lab_means(ref)).abs().max() < 2.0
    with pytest.raises(mods.errors.BokehInputError, match="no pivot row"):
        mods.color.BokehColorMatch.execute(batch, sweep, 0)
    with pytest.raises(mods.errors.BokehInputError, match="drop_pivot"):
        mods.color.BokehColorMatch.execute(batch, sweep, 0, ref, False, True)


def test_colour_match_bad_input(mods, photo):
    with pytest.raises(mods.errors.BokehInputError, match="Pivot row 5"):
        mods.color.BokehColorMatch.execute(photo, None, 5)
    bad = photo.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(mods.errors.BokehInputError, match="NaN"):
        mods.color.BokehColorMatch.execute(bad, None, 0)
    with pytest.raises(mods.errors.BokehInputError, match="expected an IMAGE"):
        mods.color.BokehColorMatch.execute(photo[:0], None, 0)


def test_blur_meter_monotonic_on_a_real_image(mods, photo):
    sigmas = [0.0, 1.0, 2.0, 4.0, 8.0]
    blurred = [photo] + [kornia.filters.gaussian_blur2d(photo.movedim(-1, 1), (33, 33), (s, s)).movedim(1, -1) for s in sigmas[1:]]
    batch = torch.cat(blurred)
    sweep = mods.levels.Sweep(k_values=tuple(sigmas), pivot_row=0)
    out = mods.blur_meter.BokehBlurMeter.execute(batch, sweep)
    report, sharp, plot = out.result
    assert all(a > b for a, b in zip(sharp, sharp[1:]))
    assert "monotonic: blur rises with K" in report and "rank 1.000" in report
    assert out.ui is not None and plot.shape == (1, 440, 720, 3)
    shuffled = mods.blur_meter.BokehBlurMeter.execute(batch[[0, 3, 1, 4, 2]], sweep).result[0]
    assert "not monotonic" in shuffled
    backwards = mods.blur_meter.BokehBlurMeter.execute(batch.flip(0), sweep).result[0]
    assert "monotonic in the wrong direction: blur falls as K rises" in backwards and "rank -1.000" in backwards


def test_blur_meter_report_is_a_markdown_table(mods, photo):
    sweep = mods.levels.Sweep(k_values=(15.0, 0.0, 28.0), pivot_row=0)
    report = mods.blur_meter.BokehBlurMeter.execute(tinted(photo)[:3], sweep).result[0]
    lines = report.splitlines()
    assert lines[0] == "| image | sharpness | blur rank |" and lines[1] == "|---|---:|---:|"
    assert lines[2].startswith("| K 15 (pivot) | ") and lines[4].startswith("| K 28 | ")
    assert lines[5] == ""  # the table ends before the notes, so Markdown keeps it a table


def test_blur_meter_plot_marks_the_pivot(mods, photo):
    sigmas = [0.0, 2.0, 6.0]
    batch = torch.cat([photo] + [kornia.filters.gaussian_blur2d(photo.movedim(-1, 1), (25, 25), (s, s)).movedim(1, -1) for s in sigmas[1:]])
    with_pivot = mods.levels.Sweep(k_values=(0.0, 10.0, 30.0), pivot_row=1)
    plot = mods.blur_meter.BokehBlurMeter.execute(batch, with_pivot).result[2]
    no_pivot = mods.blur_meter.BokehBlurMeter.execute(batch[[0, 2]], with_pivot).result[2]  # pivot dropped upstream

    def orange(p):
        return int(((p[0, ..., 0] > 0.9) & (p[0, ..., 1] > 0.6) & (p[0, ..., 2] < 0.35)).sum())

    assert orange(plot) > 20 and orange(no_pivot) == 0  # the pivot's ring and label, only where it is


def test_blur_meter_shows_its_verdict_on_the_node(pack):
    """Through the executor, with a recorder in the place of the running server: the node sends
    its summary on the host's progress-text channel, addressed to its own node id."""
    import server

    class Recorder:
        def __init__(self):
            self.sent = []

        def send_progress_text(self, text, node_id, sid=None):
            self.sent.append((node_id, text))

    prompt = {"img": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 2, "color": 0}},
              "meter": {"class_type": "BokehBlurMeter", "inputs": {"images": ["img", 0]}}}
    saved = getattr(server.PromptServer, "instance", None)
    server.PromptServer.instance = recorder = Recorder()
    try:
        result = harness.run_prompt(prompt)
    finally:
        server.PromptServer.instance = saved
    assert result.ok, result.errors
    assert [n for n, _ in recorder.sent] == ["meter"] and "sharpness" in recorder.sent[0][1]
    assert result.ui["meter"]["images"]  # the plot is the node's preview


def test_contact_sheet_grid_and_labels(mods, photo):
    batch = tinted(photo)[:, :64, :96]
    sweep = mods.levels.Sweep(k_values=(15.0, 0.0, 12.0, 28.0), pivot_row=0)
    sheet = mods.contact_sheet.BokehContactSheet.execute(batch, sweep, 2).result[0]
    strip = max(14, 64 // 12)
    assert sheet.shape == (1, 2 * (64 + strip), 2 * 96, 3)
    assert torch.equal(sheet[0, :64, :96], batch[0])
    label_band = sheet[0, 64 : 64 + strip, :96]
    assert label_band.max() > 0.5  # text drawn on the dark strip
    assert sweep.labels(4) == ["K 15 (pivot)", "K 0", "K 12", "K 28"]
    assert sweep.labels(3) == ["K 0", "K 12", "K 28"]  # pivot dropped upstream
    a = sheet[0, 64 : 64 + strip, :96]
    b = sheet[0, 64 : 64 + strip, 96:]
    assert not torch.equal(a, b)  # different labels, different pixels


def test_blur_levels_node(mods):
    run = mods.blur_levels.BokehBlurLevels.execute
    values, text, sweep = run(0.0, 28.0, 5).result
    assert values == [0.0, 7.0, 14.0, 21.0, 28.0] and text == "0, 7, 14, 21, 28"
    assert sweep.k_values == (0.0, 7.0, 14.0, 21.0, 28.0) and sweep.pivot_row is None
    assert sweep.labels(5) == ["K 0", "K 7", "K 14", "K 21", "K 28"] and sweep.ks_for(4) is None
    values, text, _ = run(0.0, 28.0, 5, "0, 4; 8 12").result
    assert values == [0.0, 4.0, 8.0, 12.0] and text == "0, 4, 8, 12"
    with pytest.raises(mods.errors.BokehInputError, match="not a plain decimal number"):
        run(0.0, 1.0, 2, "0, x")


# -- whole graphs through the host's validate_prompt and PromptExecutor ----------------------

@pytest.fixture(scope="module")
def adapter_name(pack, tmp_path_factory):
    sd = reference.random_adapter_sd(CFG["hidden_size"], range(N_BLOCKS), seed=31)
    return harness.write_adapter(tmp_path_factory.mktemp("graph_models"), sd, name="graph.safetensors").name


def test_grounded_sweep_graph(adapter_name):
    g = harness.tiny_graph(adapter_name)
    g["pivot"] = {"class_type": "BokehPivotBatch", "inputs": {
        "model": ["apply", 0], "latent": ["latent", 0], "pivot_blur": 15.0, "targets": "0, 8, 28", "grounding": 0.8}}
    g["sample"] = harness.ksampler_node(["pivot", 0], ["pivot", 1])
    g["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["vae", 0]}}
    g["color"] = {"class_type": "BokehColorMatch", "inputs": {"images": ["decode", 0], "sweep": ["pivot", 2]}}
    g["sheet"] = {"class_type": "BokehContactSheet", "inputs": {"images": ["color", 0], "sweep": ["pivot", 2], "columns": 0}}
    g["meter"] = {"class_type": "BokehBlurMeter", "inputs": {"images": ["color", 0], "sweep": ["pivot", 2]}}
    g["save"] = {"class_type": "SaveImage", "inputs": {"images": ["sheet", 0], "filename_prefix": "bokeh_sweep"}}
    result = harness.run_prompt(g)
    assert result.ok, result.errors
    assert result.outputs["decode"][0][0].shape == (4, 64, 64, 3)
    assert result.outputs["sheet"][0][0].shape[0] == 1
    report = result.outputs["meter"][0][0]
    assert "K 15 (pivot)" in report and "K 28" in report and "corr(K, blur)" in report
    assert result.ui["meter"]["images"]  # the plot shows on the node
    assert result.ui["save"]["images"]


def test_blur_level_list_runs_once_per_value(adapter_name):
    g = harness.tiny_graph(adapter_name)
    g["levels"] = {"class_type": "BokehBlurLevels", "inputs": {"start": 0.0, "end": 30.0, "count": 3}}
    g["apply"]["inputs"]["blur_level"] = ["levels", 0]
    g["sample"] = harness.ksampler_node(["apply", 0], ["latent", 0])
    result = harness.run_prompt(g)
    assert result.ok, result.errors
    runs = result.outputs["sample"][0]
    assert len(runs) == 3
    a, b, c = (r["samples"] for r in runs)
    assert not torch.equal(a, b) and not torch.equal(b, c)
