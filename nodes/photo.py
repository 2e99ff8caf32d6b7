"""Bokeh on the user's own photo (the BokehDepth photo adapter on FLUX.1 Kontext):
Bokeh Photo Prompt and Bokeh Photo Resize. Spec: shared/spec/bokehdepth-photo.md."""

from __future__ import annotations

import math

from comfy_api.latest import io

from ..attention.bokeh import PHOTO
from ..attention.errors import BokehInputError
from .common import CATEGORY, blur_input, check_blur, check_images, list_runs, search_aliases

# The prompt the authors sample the photo adapter with (spec section 2): the raw K, two decimals.
# (Training used four similar templates: training/batches.py I2I_TEMPLATES.)
PHOTO_PROMPT = (
    "Set dof_cond = {k:.2f} (stronger background defocus); preserve subject sharpness; "
    "keep composition, lighting, and colors unchanged."
)
REFERENCE_SIZE = "512 x 512 (reference)"
ASPECT_SIZE = "aspect kept, about 0.26 MP"
WORK_SIDE = 512  # the reference's working size; the aspect-kept size has the same area
SIDE_STEP = 16  # FLUX latents are 1/8 of the image and patched 2 x 2


def photo_prompt(k: float) -> str:
    return PHOTO_PROMPT.format(k=float(k))


def working_size(width: int, height: int, mode: str) -> tuple[int, int]:
    """(width, height) to render at: the reference's 512 x 512 (aspect not kept), or the photo's
    aspect at the same area (our choice), each side a multiple of 16."""
    if mode == REFERENCE_SIZE:
        return WORK_SIDE, WORK_SIDE
    scale = math.sqrt(WORK_SIDE * WORK_SIDE / (width * height))

    def side(n):
        return max(SIDE_STEP, round(n * scale / SIDE_STEP) * SIDE_STEP)

    return side(width), side(height)


class BokehPhotoPrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BokehPhotoPrompt",
            display_name="Bokeh Photo Prompt",
            category=CATEGORY,
            **search_aliases("photo", "kontext", "image edit"),
            description="Writes the prompt the BokehDepth authors sample the photo adapter with for a blur level and encodes "
            "it. Connect a FLOAT list (Bokeh Blur Levels) to get one prompt per level; give the same list to Apply "
            "Bokeh Adapter so each sampling gets its own level.",
            is_input_list=True,  # a FLOAT list's length is checked before any run (nodes.common.list_runs)
            inputs=[
                io.Clip.Input("clip", display_name="CLIP", tooltip="The FLUX text encoders (DualCLIPLoader: t5xxl + clip_l, type flux)."),
                blur_input(
                    "blur_level", 10.0, display_name="Blur Level",
                    tooltip="Background defocus K written into the prompt (two decimals): use the same value as on "
                    "Apply Bokeh Adapter. The photo adapter was trained on 1..30.",
                ),
            ],
            outputs=[
                io.Conditioning.Output(display_name="Conditioning", is_output_list=True,
                                       tooltip="The encoded prompt, for ReferenceLatent. One per blur level."),
                io.String.Output(display_name="Prompt", is_output_list=True, tooltip="The prompt text. One per blur level."),
            ],
        )

    @classmethod
    def execute(cls, clip, blur_level) -> io.NodeOutput:
        runs = list_runs("Bokeh Photo Prompt", clip=clip, blur_level=blur_level)
        ks = [check_blur(run["blur_level"], "Blur Level", PHOTO) for run in runs]
        if any(run["clip"] is None for run in runs):
            raise BokehInputError("The CLIP input is empty (a checkpoint without text encoders?). Load the FLUX text "
                                  "encoders with DualCLIPLoader (t5xxl and clip_l, type flux) and connect its CLIP.")
        texts = [photo_prompt(k) for k in ks]
        conds = [run["clip"].encode_from_tokens_scheduled(run["clip"].tokenize(text)) for run, text in zip(runs, texts)]
        return io.NodeOutput(conds, texts)


class BokehPhotoResize(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BokehPhotoResize",
            display_name="Bokeh Photo Resize",
            category=CATEGORY,
            **search_aliases("photo", "kontext", "resize"),
            description="Resizes a photo to the photo adapter's working size (Lanczos): 512 x 512 as in the reference "
            "(aspect not kept), or the photo's aspect at the same area. Width and height are for ModelSamplingFlux.",
            inputs=[
                io.Image.Input("image", display_name="Image", tooltip="Your photo (LoadImage)."),
                io.Combo.Input("size", display_name="Size", options=[REFERENCE_SIZE, ASPECT_SIZE], default=REFERENCE_SIZE,
                               tooltip="512 x 512: the reference procedure (the photo is stretched). Aspect kept: about "
                               "0.26 MP, sides multiples of 16 (our choice, not the reference's)."),
            ],
            outputs=[
                io.Image.Output(display_name="Image", tooltip="The resized photo: VAE Encode it, and use it as the colour reference."),
                io.Int.Output(display_name="Width", tooltip="Output width, for ModelSamplingFlux."),
                io.Int.Output(display_name="Height", tooltip="Output height, for ModelSamplingFlux."),
            ],
        )

    @classmethod
    def execute(cls, image, size) -> io.NodeOutput:
        import comfy.utils

        image = check_images(image, "photo")
        if size not in (REFERENCE_SIZE, ASPECT_SIZE):
            raise BokehInputError(f"Size must be {REFERENCE_SIZE!r} or {ASPECT_SIZE!r}.")
        width, height = working_size(image.shape[2], image.shape[1], size)
        out = comfy.utils.common_upscale(image.movedim(-1, 1), width, height, "lanczos", "disabled").movedim(1, -1)
        return io.NodeOutput(out.clamp(0.0, 1.0), width, height)
