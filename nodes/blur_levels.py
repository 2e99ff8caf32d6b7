"""Bokeh Blur Levels: a list of K values, as a FLOAT list and as text."""

from __future__ import annotations

from comfy_api.latest import io

from ..sweep.levels import Sweep, format_levels, linspace_levels, parse_levels
from .common import CATEGORY, BokehSweepType, check_blur, search_aliases


class BokehBlurLevels(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BokehBlurLevels",
            display_name="Bokeh Blur Levels",
            category=CATEGORY,
            **search_aliases("blur sweep"),
            description="Makes a list of blur levels. The FLOAT list runs connected nodes once per level "
            "(e.g. Apply Bokeh Adapter's Blur Level, Bokeh Photo Prompt); the text feeds Bokeh Pivot Batch's "
            "targets; the sweep labels Contact Sheet and Blur Meter by K.",
            inputs=[
                io.Float.Input("start", display_name="Start", default=0.0, min=0.0, max=30.0, step=0.5, tooltip="First blur level (used when 'levels' is empty)."),
                io.Float.Input("end", display_name="End", default=28.0, min=0.0, max=30.0, step=0.5, tooltip="Last blur level (used when 'levels' is empty)."),
                io.Int.Input("count", display_name="Count", default=6, min=1, max=64, tooltip="How many evenly spaced levels from start to end (used when 'levels' is empty)."),
                io.String.Input("levels", display_name="Levels", default="", optional=True, tooltip="Optional explicit list, e.g. '0, 4, 8, 12, 18, 28'. When filled, start/end/count are ignored."),
            ],
            outputs=[
                io.Float.Output(display_name="Blur Levels", is_output_list=True, tooltip="One value per level: downstream nodes run once per value."),
                io.String.Output(display_name="Levels Text", tooltip="The levels as text, for Bokeh Pivot Batch's targets."),
                BokehSweepType.Output(display_name="Sweep", tooltip="The levels as a sweep without pivot, for Contact Sheet and "
                                      "Blur Meter when the images were rendered one per level (a list)."),
            ],
        )

    @classmethod
    def execute(cls, start, end, count, levels="") -> io.NodeOutput:
        values = parse_levels(levels, "levels") if (levels or "").strip() else linspace_levels(start, end, count)
        values = [check_blur(v, "blur level") for v in values]
        return io.NodeOutput(values, format_levels(values), Sweep(k_values=tuple(values), pivot_row=None))
