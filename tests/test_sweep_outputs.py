"""The sweep's outputs in one function (sweep/outputs.py): the Blur Meter and Contact Sheet nodes
give exactly what it gives, and it gives exactly what the sharded runner composed by hand."""

import harness
import kornia
import pytest
import torch
from test_images import photo  # noqa: F401 (a fixture, used by name)


@pytest.fixture(scope="module")
def batch(photo):  # noqa: F811
    """Four images blurred more and more: a sweep whose sharpness falls with K."""
    blurred = [kornia.filters.gaussian_blur2d(photo.movedim(-1, 1), (25, 25), (s, s)).movedim(1, -1) for s in (1.0, 2.0, 4.0)]
    return torch.cat([photo] + blurred)[:, :96, :128]


@pytest.mark.parametrize("ks, pivot, count", [
    ((10.0, 0.0, 20.0, 30.0), 0, 4),  # the whole sweep, the pivot first
    ((0.0, 10.0, 20.0, 30.0), 1, 4),  # the pivot in another row
    ((15.0, 0.0, 20.0, 30.0, 5.0), 0, 4),  # the pivot dropped upstream
    ((0.0, 10.0, 20.0, 30.0), None, 4),  # no pivot (Bokeh Blur Levels)
    ((0.0, 30.0), 0, 4),  # a sweep of another size: numbered
    (None, None, 4),  # no sweep linked
])
def test_the_nodes_give_what_sweep_outputs_gives(mods, batch, ks, pivot, count):
    images = batch[:count]
    sweep = mods.levels.Sweep(k_values=ks, pivot_row=pivot) if ks is not None else None
    want = mods.outputs.sweep_outputs(images, ks, pivot, 2)
    report, sharpness, plot = mods.blur_meter.BokehBlurMeter.execute(images, sweep).result
    sheet = mods.contact_sheet.BokehContactSheet.execute(images, sweep, 2).result[0]
    assert report == want.report and sharpness == want.blur.sharpness  # same arithmetic: bit-equal
    assert torch.equal(plot, want.plot) and torch.equal(sheet, want.sheet)
    assert len(want.labels) == count and want.ks == (sweep.ks_for(count) if sweep is not None else None)


def test_the_sharded_runners_composition_is_sweep_outputs(mods, batch):
    """runner/shard_files.py write_outputs as it composed the outputs before issue 19 (pivot row 0,
    the sheet's columns, the plot with the pivot marked): sweep_outputs gives the same, bit for bit."""
    meter, sheets, plots = (harness.pack_module(f"sweep.{m}") for m in ("blur_meter", "contact_sheet", "plot"))
    ks = [2.0, 8.0, 18.0, 28.0]
    images = (batch * 255).round() / 255  # the runner measures the 8-bit images
    labels = mods.levels.Sweep(tuple(ks), 0).labels(len(ks))
    blur = meter.measure_sweep(images, ks)
    plot = plots.sweep_plot(ks, blur.sharpness, 0, f"Blur vs K: {blur.trend_text()}", blur.correlations(), min_span=5 * meter.NOISE)
    out = mods.outputs.sweep_outputs(images, ks, 0, 3)
    assert out.labels == labels == ["K 2 (pivot)", "K 8", "K 18", "K 28"]
    assert out.report == blur.report(labels, ks) and "monotonic: blur rises with K" in out.report
    assert torch.equal(out.sheet, sheets.contact_sheet(images, labels, 3)) and torch.equal(out.plot, plot)
    assert out.summary == blur.verdict()


def test_only_the_parts_asked_for(mods, batch):
    ks = (15.0, 0.0, 30.0)
    sheet_only = mods.outputs.sweep_outputs(batch[:3], ks, 0, 0, meter=False)
    assert sheet_only.blur is None and sheet_only.report is None and sheet_only.plot is None and sheet_only.summary is None
    assert sheet_only.sheet.shape[0] == 1 and sheet_only.labels == ["K 15 (pivot)", "K 0", "K 30"]
    meter_only = mods.outputs.sweep_outputs(batch[:3], ks, 0, 0, sheet=False)
    assert meter_only.sheet is None and meter_only.plot.shape == (1, 440, 720, 3) and len(meter_only.blur.sharpness) == 3
    dropped = mods.outputs.sweep_outputs(batch[:2], ks, 0, 0, sheet=False)
    assert dropped.labels == ["K 0", "K 30"] and dropped.ks == [0.0, 30.0]
    alone = mods.outputs.sweep_outputs(batch[:1], None, None, 0)
    assert alone.labels == ["#0"] and alone.ks is None and alone.summary.startswith("1 image(s); sharpness ")
