"""Bokeh Contact Sheet and Bokeh Blur Meter."""

from __future__ import annotations

from comfy_api.latest import io, ui

from ..sweep.blur_meter import measure_sweep
from ..sweep.contact_sheet import contact_sheet
from .color import check_images
from .common import CATEGORY, BokehSweepType


class BokehContactSheet(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BokehContactSheet",
            display_name="Bokeh Contact Sheet",
            category=CATEGORY,
            description="Lays a sweep out in one labelled grid (K per cell, the pivot marked).",
            inputs=[
                io.Image.Input("images", tooltip="The decoded sweep."),
                BokehSweepType.Input("sweep", optional=True, tooltip="From Bokeh Pivot Batch: the labels. Without it cells are numbered."),
                io.Int.Input("columns", default=0, min=0, max=64, optional=True, tooltip="Cells per row; 0 = automatic."),
            ],
            outputs=[io.Image.Output(display_name="sheet")],
        )

    @classmethod
    def execute(cls, images, sweep=None, columns=0) -> io.NodeOutput:
        images = check_images(images)
        n = images.shape[0]
        labels = sweep.labels(n) if sweep is not None else [f"#{i}" for i in range(n)]
        return io.NodeOutput(contact_sheet(images, labels, int(columns)))


class BokehBlurMeter(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BokehBlurMeter",
            display_name="Bokeh Blur Meter",
            category=CATEGORY,
            description="Measures each image's sharpness (log variance of the Laplacian) and, for a sweep, how well "
            "blur follows K: linear and rank correlation, and whether it is monotonic.",
            is_output_node=True,
            inputs=[
                io.Image.Input("images", tooltip="The decoded sweep (or any images)."),
                BokehSweepType.Input("sweep", optional=True, tooltip="From Bokeh Pivot Batch: the K of each image."),
            ],
            outputs=[
                io.String.Output(display_name="report", tooltip="One line per image and the correlations."),
                io.Float.Output(display_name="sharpness", is_output_list=True, tooltip="Sharpness per image (higher = sharper)."),
            ],
        )

    @classmethod
    def execute(cls, images, sweep=None) -> io.NodeOutput:
        images = check_images(images, min_side=3)  # the Laplacian is 3x3
        n = images.shape[0]
        ks = sweep.ks_for(n) if sweep is not None else None
        labels = sweep.labels(n) if sweep is not None else [f"#{i}" for i in range(n)]
        result = measure_sweep(images, ks)
        report = result.report(labels, ks is not None)
        return io.NodeOutput(report, result.sharpness, ui=ui.PreviewText(report))
