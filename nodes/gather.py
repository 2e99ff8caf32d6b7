"""Bokeh Gather Sweep: the rows ComfyUI-Distributed's collector brings back, checked and put
back into one sweep (one pivot, then every target in order)."""

from __future__ import annotations

import logging

import torch
from comfy_api.latest import io

from ..attention.errors import BokehInputError, BokehModelError
from ..sweep.levels import Sweep
from ..sweep.participants import LEVEL, PlannedSweep, as_collected, expected_rows, participant_rows
from .common import CATEGORY, BokehSweepType, check_images, search_aliases, show_on_node

log = logging.getLogger(__name__)

# Largest mean |difference| of a participant's pivot from the master's, in 0..255 levels, still
# taken as the same image (the same rule as the headless --servers runner, runner/shard.py):
# the same models give 0 or 1 level after the 8-bit round trip on CPU (tests/
# test_distributed_servers.py); a GPU may round differently per batch size. A different seed,
# model or adapter differs by tens of levels.
PIVOT_TOLERANCE = 2.0

NO_SWEEP = (
    "Bokeh Gather Sweep has no Sweep input. Connect the Sweep output of the master's Bokeh Pivot Batch. If it is "
    "connected, ComfyUI-Distributed runs the master in delegate-only mode, which cuts the master's own branch "
    "(Pivot Batch included) from its prompt: the sweep plan never reaches this node and participant 0's targets are "
    "never rendered. Turn delegate-only off so the master renders its share, or leave Gather out of that graph."
)


def gather(images: torch.Tensor, sweep: PlannedSweep) -> tuple[torch.Tensor, float]:
    """(one pivot + every target, largest mean pivot difference in levels). Every row goes through
    the collector's 8-bit round trip (the master's rows have not had it; the workers' rows are
    unchanged by it, being 8-bit already)."""
    participants, targets = sweep.participants, len(sweep.k_values) - 1
    want = expected_rows(sweep)
    if images.shape[0] != want:
        raise BokehInputError(
            f"Bokeh Gather Sweep got {images.shape[0]} images; expected {want} ({participants} participants x 1 pivot "
            f"+ {targets} targets). A worker was offline when the graph was queued, or it stopped or timed out while "
            "rendering, and the collector passed on the rows it had: nothing is mixed or dropped, the sweep is not made. "
            "Check that every worker is running and enabled, and that participants = 1 + the number of workers."
        )
    images = as_collected(images)
    rows = participant_rows(sweep)
    reference = images[0]
    worst, odd = 0.0, []
    for index, (start, _) in enumerate(rows[1:], start=1):
        diff = (images[start] - reference).abs() / LEVEL
        mean, largest = float(diff.mean()), float(diff.max())
        worst = max(worst, mean)
        if mean > PIVOT_TOLERANCE:
            odd.append(f"participant {index} (worker number {index} in the master's list) differs by {mean:.1f}/255 on average, {largest:.0f}/255 at most")
    if odd:
        raise BokehModelError(
            "The participants' pivot images differ from the master's (participant 0), so they did not render the same "
            "scene: " + "; ".join(odd) + ". Likely causes: a different seed (DistributedSeed linked to the sampler's seed "
            "instead of Participant), or a different model, Bokeh adapter, pack version or ComfyUI on that worker. The "
            "sweep is not made."
        )
    pivot_row = images[:1]
    targets_rows = [images[start + 1:end] for start, end in rows]
    return torch.cat([pivot_row, *targets_rows]), worst


class BokehGatherSweep(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BokehGatherSweep",
            display_name="Bokeh Gather Sweep",
            category=CATEGORY,
            **search_aliases("distributed", "multi-GPU", "gather"),
            description="Puts a sweep shared out with ComfyUI-Distributed back together: checks that every participant "
            "delivered its rows and rendered the same pivot, keeps one pivot and every target in order, and gives all "
            "rows the same 8-bit rounding the collector gave the workers' images.",
            inputs=[
                io.Image.Input("images", display_name="Images", tooltip="DistributedCollector's images: the master's rows first, "
                               "then each worker's (pivot and its share of the targets)."),
                BokehSweepType.Input("sweep", display_name="Sweep", optional=True,
                                     tooltip="From the master's Bokeh Pivot Batch: the whole sweep and the number of participants."),
            ],
            outputs=[
                io.Image.Output(display_name="Images", tooltip="One pivot, then every target in order."),
                BokehSweepType.Output(display_name="Sweep", tooltip="The whole sweep, for Colour Match, Contact Sheet, Blur Meter and Save."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, images, sweep=None) -> io.NodeOutput:
        if sweep is None:
            raise BokehInputError(NO_SWEEP)
        if not isinstance(sweep, PlannedSweep) or sweep.pivot_row != 0:
            raise BokehInputError("Bokeh Gather Sweep's Sweep must come from Bokeh Pivot Batch (a pivot and its targets); "
                                  "a list of blur levels has no pivot to gather.")
        images = check_images(images)
        out, worst = gather(images, sweep)
        text = (f"{sweep.participants} participant(s), {out.shape[0] - 1} target(s) gathered; pivots agree "
                f"(largest mean difference {worst:.2f}/255).")
        log.info("Bokeh: %s", text)
        show_on_node(cls, text)
        return io.NodeOutput(out, Sweep(k_values=sweep.k_values, pivot_row=0))
