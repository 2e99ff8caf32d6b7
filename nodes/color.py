"""Bokeh Colour Match: each target's Lab mean moved to the pivot's (spec section 4)."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..sweep.color import match_lab
from ..attention.errors import BokehInputError
from .common import CATEGORY, BokehSweepType, check_images, search_aliases


class BokehColorMatch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BokehColorMatch",
            display_name="Bokeh Colour Match",
            category=CATEGORY,
            **search_aliases("colour transfer", "color match"),
            description="Harmonises the colours of a blur sweep: shifts each image's CIE Lab mean to the pivot's "
            "(Reinhard statistics matching, as in the paper). The pivot row itself is returned unchanged.",
            inputs=[
                io.Image.Input("images", display_name="Images", tooltip="The decoded sweep (pivot and targets)."),
                BokehSweepType.Input("sweep", display_name="Sweep", optional=True, tooltip="From Bokeh Pivot Batch: tells which row is the pivot."),
                io.Int.Input("pivot_index", display_name="Pivot Index", default=0, min=0, max=4096, optional=True, tooltip="Row of the pivot when no sweep is connected."),
                io.Image.Input("reference", display_name="Reference", optional=True, tooltip="Optional: match every image to this image instead of the pivot row."),
                io.Boolean.Input("match_std", display_name="Match Spread", default=False, optional=True, tooltip="Also match each Lab channel's spread (std). Off in the paper."),
                io.Boolean.Input("drop_pivot", display_name="Drop Pivot", default=False, optional=True, tooltip="Leave the pivot row out of the output."),
            ],
            outputs=[io.Image.Output(display_name="Images", tooltip="The colour-matched images (the pivot unchanged).")],
        )

    @classmethod
    def execute(cls, images, sweep=None, pivot_index=0, reference=None, match_std=False, drop_pivot=False) -> io.NodeOutput:
        images = check_images(images)
        pivot = sweep.pivot_row if sweep is not None else int(pivot_index)
        if pivot is None:  # a sweep without pivot (Bokeh Blur Levels): the reference is all there is
            if reference is None:
                raise BokehInputError("This sweep has no pivot row (a list of blur levels): connect the Reference input "
                                      "(e.g. your photo) to match the colours to.")
            if drop_pivot:
                raise BokehInputError("drop_pivot: this sweep has no pivot row (a list of blur levels). Turn drop_pivot off.")
        elif not 0 <= pivot < images.shape[0]:
            raise BokehInputError(f"Pivot row {pivot} does not exist in a batch of {images.shape[0]} images.")
        if reference is not None:
            ref = check_images(reference, "reference image")[:1]
            out = match_lab(images, ref, match_std)
        else:
            out = match_lab(images, images[pivot], match_std)
            out[pivot] = images[pivot]
        if drop_pivot:
            if images.shape[0] == 1:
                raise BokehInputError("drop_pivot would leave no image: the batch holds only the pivot. Turn drop_pivot off, or feed the whole sweep.")
            out = torch.cat((out[:pivot], out[pivot + 1 :]))
        return io.NodeOutput(out)
