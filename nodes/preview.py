"""Bokeh Contact Sheet and Bokeh Blur Meter."""

from __future__ import annotations

from comfy_api.latest import io, ui

from ..sweep.blur_meter import NOISE, measure_sweep
from ..sweep.contact_sheet import contact_sheet
from ..sweep.plot import sweep_plot
from .color import check_images
from .common import CATEGORY, BokehSweepType, search_aliases, show_on_node


class BokehContactSheet(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BokehContactSheet",
            display_name="Bokeh Contact Sheet",
            category=CATEGORY,
            **search_aliases("contact sheet", "grid"),
            description="Lays a sweep out in one labelled grid (K per cell, the pivot marked).",
            inputs=[
                io.Image.Input("images", display_name="Images", tooltip="The decoded sweep."),
                BokehSweepType.Input("sweep", display_name="Sweep", optional=True, tooltip="From Bokeh Pivot Batch: the labels. Without it cells are numbered."),
                io.Int.Input("columns", display_name="Columns", default=0, min=0, max=64, optional=True, tooltip="Cells per row; 0 = automatic."),
            ],
            outputs=[io.Image.Output(display_name="Sheet", tooltip="One image: the grid with a K label under each cell.")],
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
            **search_aliases("sharpness", "blur meter"),
            description="Measures each image's sharpness (log variance of the Laplacian) and, for a sweep, how well "
            "blur follows K: linear and rank correlation, and whether blur rises with K. Shows a plot of "
            "sharpness against K on the node.",
            is_output_node=True,
            inputs=[
                io.Image.Input("images", display_name="Images", tooltip="The decoded sweep (or any images, at least 3x3 pixels)."),
                BokehSweepType.Input("sweep", display_name="Sweep", optional=True, tooltip="From Bokeh Pivot Batch: the K of each image."),
            ],
            outputs=[
                io.String.Output(display_name="Report", tooltip="A table (Markdown) of sharpness and blur rank per image, and the correlations."),
                io.Float.Output(display_name="Sharpness", is_output_list=True, tooltip="Sharpness per image (higher = sharper)."),
                io.Image.Output(display_name="Plot", tooltip="Sharpness against K, the pivot marked, the verdict in the title."),
            ],
            hidden=[io.Hidden.unique_id, io.Hidden.prompt, io.Hidden.extra_pnginfo],
        )

    @classmethod
    def execute(cls, images, sweep=None) -> io.NodeOutput:
        images = check_images(images, min_side=3)  # the Laplacian is 3x3
        n = images.shape[0]
        ks = sweep.ks_for(n) if sweep is not None else None
        labels = sweep.labels(n) if sweep is not None else [f"#{i}" for i in range(n)]
        result = measure_sweep(images, ks)
        report = result.report(labels, ks)
        if ks is not None and len(ks) >= 2:
            pivot = sweep.pivot_row if n == len(sweep.k_values) else None
            title, subtitle = f"Blur vs K: {result.trend_text()}", result.correlations()
            plot = sweep_plot(ks, result.sharpness, pivot, title, subtitle, min_span=5 * NOISE)
            summary = result.verdict()
        else:
            plot = sweep_plot([float(i) for i in range(n)], result.sharpness, None, "Sharpness per image", "x: image number")
            summary = f"{n} image(s); sharpness " + ", ".join(f"{s:.2f}" for s in result.sharpness)
        show_on_node(cls, summary)
        return io.NodeOutput(report, result.sharpness, plot, ui=ui.PreviewImage(plot, cls=cls))
