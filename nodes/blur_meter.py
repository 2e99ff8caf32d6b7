"""Bokeh Blur Meter: how sharp each image is and how blur follows K (sweep.outputs makes it)."""

from __future__ import annotations

from comfy_api.latest import io, ui

from ..sweep.outputs import sweep_outputs
from .common import CATEGORY, BokehSweepType, check_images, search_aliases, show_on_node, sweep_plan


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
        out = sweep_outputs(images, *sweep_plan(sweep), sheet=False)
        show_on_node(cls, out.summary)
        return io.NodeOutput(out.report, out.blur.sharpness, out.plot, ui=ui.PreviewImage(out.plot, cls=cls))
