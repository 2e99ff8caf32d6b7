"""Bokeh Contact Sheet: a sweep in one labelled grid (sweep.outputs makes it)."""

from __future__ import annotations

from comfy_api.latest import io

from ..sweep.outputs import sweep_outputs
from .common import CATEGORY, BokehSweepType, check_images, search_aliases, sweep_plan


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
        return io.NodeOutput(sweep_outputs(images, *sweep_plan(sweep), columns, meter=False).sheet)
