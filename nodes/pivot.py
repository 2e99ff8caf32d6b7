"""Bokeh Pivot Batch: one sampling run renders a pivot and its targets with one scene."""

from __future__ import annotations

from comfy_api.latest import io

from ..attention.binding import Grounding
from ..attention.bokeh import PHOTO
from ..attention.errors import BokehInputError, BokehModelError
from ..attention.patch import current_binding, rebind
from ..sweep.levels import MAX_TARGETS, parse_levels
from ..sweep.participants import MAX_PARTICIPANTS, PlannedSweep, check_participant, own_slice
from ..sweep.pivot_latents import pivot_latent
from .common import ADVANCED, CATEGORY, BokehSweepType, blur_input, check_blur, check_fraction, search_aliases, show_on_node


def _one(value):
    """is_input_list hands every input over as a list; widgets and single links carry one item."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _steps(value) -> int:
    try:
        steps = int(value)
    except (TypeError, ValueError, OverflowError):
        raise BokehInputError(f"grounding_steps must be a whole number; got a {type(value).__name__}.") from None
    if steps < -1:
        raise BokehInputError(f"grounding_steps is {steps}; expected -1 (use the 'grounding' share) or a number of steps from 0 up.")
    return steps


class BokehPivotBatch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BokehPivotBatch",
            display_name="Bokeh Pivot Batch",
            category=CATEGORY,
            **search_aliases("blur sweep", "scene consistency"),
            description="Turns one latent into a batch [pivot, target 1..N] sharing one seed's noise, and makes "
            "the model ground every target on the pivot (grounded self-attention) so the scene stays the same "
            "while the blur changes. Feed both outputs to one KSampler.",
            is_input_list=True,
            inputs=[
                io.Model.Input("model", display_name="Model", tooltip="A model with Apply Bokeh Adapter on it."),
                io.Latent.Input("latent", display_name="Latent", tooltip="One empty latent (batch size 1), e.g. EmptySD3LatentImage."),
                blur_input("pivot_blur", 15.0, display_name="Pivot Blur", tooltip="Blur level of the pivot image that anchors the scene. The paper uses 10..20 (15 in its example)."),
                io.String.Input("targets", display_name="Targets", default="0, 4, 8, 12, 18, 28", tooltip="Target blur levels, separated by commas."),
                io.Float.Input("grounding", display_name="Grounding", default=0.8, min=0.0, max=1.0, step=0.05, display_mode=io.NumberDisplay.slider,
                               tooltip="Share of the sampler's steps grounded on the pivot: 0.8 = 24 of 30 steps (the reference). "
                               "0 = independent images from the same noise. Not used while Grounding Steps is 0 or more."),
                io.Float.Input("target_levels", display_name="Target Levels", optional=True, force_input=True,
                               tooltip="Optional FLOAT list (Bokeh Blur Levels) of targets; used instead of the text."),
                io.Int.Input("grounding_steps", display_name="Grounding Steps", default=-1, min=-1, max=10000, optional=True, **ADVANCED,
                             tooltip="Advanced: exact number of grounded steps. When 0 or more it wins over Grounding (the node "
                             "says so); -1 = off, Grounding decides."),
                io.Int.Input("participant", display_name="Participant", default=0, min=0, max=MAX_PARTICIPANTS - 1, optional=True,
                             tooltip="Which share of the targets this ComfyUI renders, 0 = the first. Link ComfyUI-Distributed's "
                             "DistributedSeed (seed 0) here: 0 on the master, 1, 2, ... on the workers."),
                io.Int.Input("participants", display_name="Participants", default=1, min=1, max=MAX_PARTICIPANTS, optional=True,
                             tooltip="How many ComfyUIs share the sweep (master + workers); 1 = not shared. Each renders the pivot "
                             "and its share of the targets; Bokeh Gather Sweep puts them back together."),
            ],
            outputs=[
                io.Model.Output(display_name="Model", tooltip="The model, grounding on the pivot row."),
                io.Latent.Output(display_name="Latent", tooltip="[pivot, targets...]: all rows get the same noise."),
                BokehSweepType.Output(display_name="Sweep", tooltip="K per row and the pivot row, for Colour Match, Contact Sheet and Blur Meter. "
                                      "Shared out: the whole sweep (every target, the participants) for Bokeh Gather Sweep."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, latent, pivot_blur, targets, grounding, target_levels=None, grounding_steps=None,
                participant=None, participants=None) -> io.NodeOutput:
        model, latent = _one(model), _one(latent)
        if isinstance(model, list) or isinstance(latent, list):
            raise BokehInputError("Bokeh Pivot Batch takes one MODEL and one LATENT, not lists; only 'target_levels' may be a list.")
        pivot = check_blur(_one(pivot_blur), "pivot blur")
        fraction = check_fraction(_one(grounding), "grounding")
        steps = _steps(_one(grounding_steps)) if grounding_steps is not None else -1
        if target_levels is not None:
            levels = target_levels if isinstance(target_levels, list) else [target_levels]
        else:
            levels = parse_levels(_one(targets), "targets")
        if not levels:
            raise BokehInputError("The targets list is empty. Write the blur levels to render, e.g. '0, 4, 8, 12, 18, 28'.")
        if len(levels) > MAX_TARGETS:  # before anything is done per level: a linked list can be any length
            raise BokehInputError(f"{len(levels)} targets in one batch is more than {MAX_TARGETS}; split the sweep over several Pivot Batch nodes.")
        levels = [check_blur(v, "target blur level") for v in levels]
        me, total = check_participant(0 if participant is None else _one(participant), 1 if participants is None else _one(participants))
        mine = own_slice(levels, me, total)  # every target when not shared out
        binding = current_binding(model)
        if binding is None:
            raise BokehModelError("This MODEL has no Bokeh adapter. Put 'Apply Bokeh Adapter' before 'Bokeh Pivot Batch'.")
        if binding.adapter.dims.flavour == PHOTO:
            raise BokehModelError(
                "The photo adapter (BokehDepth) was trained without grounding and renders one blur level per sampling: "
                "remove Bokeh Pivot Batch and drive Apply Bokeh Adapter and Bokeh Photo Prompt with a list of blur "
                "levels (Bokeh Blur Levels), as in the bokeh_photo_stack workflow."
            )

        out = pivot_latent(latent, 1 + len(mine))
        ks = (pivot, *mine)
        shared = f" Participant {me} of {total}: the pivot and target(s) {', '.join(f'{k:g}' for k in mine) or 'none'}." if total > 1 else ""
        if steps >= 0:  # one control must not silently cancel the other: say which one wins
            show_on_node(cls, f"Grounding Steps = {steps} wins over Grounding ({fraction:.2f}): the first {steps} "
                              f"sampler steps are grounded on the pivot (K {pivot:g}). Set Grounding Steps to -1 to use Grounding." + shared)
        else:
            show_on_node(cls, f"Grounding {fraction:.2f}: that share of the sampler's steps is grounded on the pivot "
                              f"(K {pivot:g}); {len(levels)} target(s)." + shared)
        patched = rebind(model, k_values=ks, grounding=Grounding(pivot=0, fraction=fraction, steps=steps))
        # The sweep output is the whole plan (every target), even when this ComfyUI renders a slice:
        # the master's Bokeh Gather Sweep checks and orders the collected rows against it.
        return io.NodeOutput(patched, out, PlannedSweep(k_values=(pivot, *levels), pivot_row=0, participants=total))
