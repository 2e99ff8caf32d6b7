"""A sweep's outputs, made in one place: the label of each image, the blur meter (report, numbers,
plot) and the contact sheet. The Blur Meter and Contact Sheet nodes and both headless runners
(one ComfyUI, or the sweep shared out over servers) call ``sweep_outputs``, so what a user sees
on the canvas and what a run writes are the same."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .blur_meter import NOISE, SweepBlur, measure_sweep
from .contact_sheet import contact_sheet
from .levels import Sweep
from .plot import sweep_plot


@dataclass(frozen=True)
class SweepOutputs:
    """What ``sweep_outputs`` made. ``blur``, ``report``, ``summary`` and ``plot`` are None when the
    meter was not asked for, ``sheet`` when the contact sheet was not."""

    labels: list[str]  # one per image: "K 12", "K 15 (pivot)", or "#3" where K is not known
    ks: list[float] | None  # K per image; None without a sweep or when the count does not match it
    blur: SweepBlur | None  # the meter's numbers: sharpness, blur rank, correlations, trend
    report: str | None  # the Markdown table and the verdict (the Blur Meter's Report output)
    summary: str | None  # one line: the verdict, or the sharpness per image (shown on the node)
    plot: torch.Tensor | None  # (1, 440, 720, 3) in 0..1: sharpness against K
    sheet: torch.Tensor | None  # (1, rows * (H + strip), columns * W, 3) in 0..1: the labelled grid


def sweep_outputs(images: torch.Tensor, k_values, pivot_row: int | None, columns: int = 0, *,
                  meter: bool = True, sheet: bool = True) -> SweepOutputs:
    """images: (B, H, W, 3) in 0..1, the whole sweep or the sweep with the pivot dropped (at least
    3x3 pixels for the meter); k_values: K of every row of the sweep, pivot included (None: no
    sweep, images are numbered); pivot_row: the pivot's row in ``k_values`` (None: a sweep without
    pivot); columns: the sheet's cells per row, 0 = automatic. The caller checks the images
    (nodes.common.check_images)."""
    n = images.shape[0]
    plan = Sweep(tuple(float(k) for k in k_values), pivot_row) if k_values is not None else None
    labels = plan.labels(n) if plan is not None else [f"#{i}" for i in range(n)]
    ks = plan.ks_for(n) if plan is not None else None
    blur = report = summary = plot = None
    if meter:
        blur = measure_sweep(images, ks)
        report = blur.report(labels, ks)
        if ks is not None and len(ks) >= 2:
            pivot = plan.pivot_row if n == len(plan.k_values) else None  # the pivot dropped upstream: none to mark
            plot = sweep_plot(ks, blur.sharpness, pivot, f"Blur vs K: {blur.trend_text()}", blur.correlations(), min_span=5 * NOISE)
            summary = blur.verdict()
        else:
            plot = sweep_plot([float(i) for i in range(n)], blur.sharpness, None, "Sharpness per image", "x: image number")
            summary = f"{n} image(s); sharpness " + ", ".join(f"{s:.2f}" for s in blur.sharpness)
    grid = contact_sheet(images, labels, int(columns)) if sheet else None
    return SweepOutputs(labels, ks, blur, report, summary, plot, grid)
