"""Bokeh Render (classical): depth-based bokeh on any image with the classical BokehMe renderer
(shared/spec/bokeh-training.md sections 2.1-2.3). The maths is in training/render.py and
training/defocus.py; this node reads, checks and converts its inputs."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..attention.errors import BokehInputError
from ..training.defocus import IMAGE as FOCUS_ON_IMAGE_SCALE
from ..training.defocus import defocus_map, depth_from_map
from ..training.render import DEFOCUS_SCALE, GAMMA, GAMMA_RANGE, classical_render, window_radius
from .common import ADVANCED, CATEGORY, check_images, search_aliases

NEAR_BRIGHT = "near is bright (Depth Anything, MiDaS)"
FAR_BRIGHT = "far is bright (distance)"
SUBJECT = "subject mask"
PLANE = "focus plane"
K_MAX = 64.0
# One request's work is bounded: (2R + 1)^2 passes over every pixel of the batch. 2^35 is a
# 2048 x 2048 image at K 45 or a 512 x 512 batch of 8 at K 64.
MAX_WORK = 2**35


def _map(values, what: str, b: int, h: int, w: int) -> torch.Tensor:
    """A depth map or mask (IMAGE (B, H, W, C) or MASK (B, H, W)/(H, W)) as (B, H, W) float."""
    if not isinstance(values, torch.Tensor):
        raise BokehInputError(f"The {what} is a {type(values).__name__}; expected an IMAGE or MASK.")
    v = values[None] if values.ndim == 2 else values
    if v.ndim == 4:
        if v.shape[-1] not in (1, 3, 4):
            raise BokehInputError(f"The {what} has {v.shape[-1]} channels; expected a grey IMAGE (1, 3 or 4 channels) or a MASK.")
        v = v[..., :3].mean(dim=-1)
    if v.ndim != 3 or v.shape[0] == 0:
        raise BokehInputError(f"The {what} is {tuple(values.shape)}; expected an IMAGE (B, H, W, C) or a MASK (B, H, W).")
    if tuple(v.shape[1:]) != (h, w):
        raise BokehInputError(f"The {what} is {v.shape[2]}x{v.shape[1]} pixels but the image is {w}x{h}; expected the "
                              f"same size. Resize it to {w}x{h} first (Upscale Image / ImageScale).")
    if v.shape[0] not in (1, b):
        raise BokehInputError(f"The {what} holds {v.shape[0]} maps for {b} images; expected 1 (shared) or {b}.")
    if not bool(torch.isfinite(v).all()):
        raise BokehInputError(f"The {what} contains NaN or infinite values; check the node that made it.")
    return v.float().expand(b, h, w)


class BokehRenderClassical(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BokehRenderClassical",
            display_name="Bokeh Render (classical)",
            category=CATEGORY,
            **search_aliases("lens blur", "zdefocus", "depth blur", "render"),
            description="Renders depth-based bokeh on any image with the classical BokehMe scatter renderer (the "
            "synthesis the bokeh adapters were trained on): a circular kernel per pixel, sized by the distance of "
            "its depth from the focus plane, in gamma space. No model; pure computation.",
            inputs=[
                io.Image.Input("image", display_name="Image", tooltip="The sharp (all-in-focus) photo."),
                io.MultiType.Input(
                    "depth", [io.Image, io.Mask], display_name="Depth",
                    tooltip="Its depth map, the same size: an IMAGE from a depth estimator (grey) or a MASK. One map for "
                    "the whole batch, or one per image."),
                io.Combo.Input("depth_order", display_name="Depth Order", options=[NEAR_BRIGHT, FAR_BRIGHT], default=NEAR_BRIGHT,
                               tooltip="How the depth map is coded: depth estimators (Depth Anything, MiDaS, Zoe) paint "
                               "near things bright; a distance map paints far things bright."),
                io.Float.Input("blur", display_name="Blur (K)", default=15.0, min=0.0, max=K_MAX, step=0.5, round=0.01,
                               tooltip="K: the blur radius in pixels between the nearest and the farthest depth (the "
                               "authors' training draws 1..30 at 512 px). Time grows with K squared."),
                io.Combo.Input("focus", display_name="Focus", options=[SUBJECT, PLANE], default=SUBJECT,
                               tooltip="Subject mask: focus on the subject as the training data does (its nearer part; "
                               "without a mask, the median depth). Focus plane: on the depth set by Focus Plane."),
                io.Float.Input("focus_plane", display_name="Focus Plane", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="With Focus = focus plane: the in-focus depth, 0 = farthest, 1 = nearest (on the "
                               "depth map's normalised inverse depth)."),
                io.Boolean.Input("subject_sharp", display_name="Whole Subject Sharp", default=True,
                                 tooltip="With a subject mask: keep the whole subject (its nearer 96 %) exactly in focus "
                                 "and focus at its far side, the training rule for shallow subjects. Off: focus on the "
                                 "median of the subject's nearer half; its own depth blurs a little."),
                io.Float.Input("gamma", display_name="Gamma", default=GAMMA, min=GAMMA_RANGE[0], max=GAMMA_RANGE[1],
                               step=0.1, round=0.01, **ADVANCED,
                               tooltip="The renderer blurs I^gamma, so bright spots bloom into discs. 2.2 as in the "
                               "training data; BokehMe's demo uses 4."),
                io.Mask.Input("mask", display_name="Subject Mask", optional=True,
                              tooltip="Optional: the subject (foreground) to keep sharp, white = subject (e.g. from a "
                              "background remover). One mask for the batch, or one per image."),
            ],
            outputs=[
                io.Image.Output(display_name="Image", tooltip="The photo with rendered bokeh."),
                io.Mask.Output(display_name="Blur Map", tooltip="Blur radius per pixel as a share of K: 0 = in focus, 1 = K pixels."),
            ],
        )

    @classmethod
    def execute(cls, image, depth, depth_order=NEAR_BRIGHT, blur=15.0, focus=SUBJECT, focus_plane=0.5,
                subject_sharp=True, gamma=GAMMA, mask=None) -> io.NodeOutput:
        import comfy.model_management as mm
        import comfy.utils

        image = check_images(image)
        b, h, w = image.shape[:3]
        k, plane, g = float(blur), float(focus_plane), float(gamma)
        if not 0.0 <= k <= K_MAX or not 0.0 <= plane <= 1.0 or not GAMMA_RANGE[0] <= g <= GAMMA_RANGE[1]:
            raise BokehInputError(f"Blur {k:g}, Focus Plane {plane:g}, Gamma {g:g}: expected Blur 0..{K_MAX:g}, Focus "
                                  f"Plane 0..1 and Gamma {GAMMA_RANGE[0]:g}..{GAMMA_RANGE[1]:g}.")
        if depth_order not in (NEAR_BRIGHT, FAR_BRIGHT) or focus not in (SUBJECT, PLANE):
            raise BokehInputError(f"Depth Order {depth_order!r} / Focus {focus!r}: pick one of the listed options.")
        rel_depth = depth_from_map(_map(depth, "depth map", b, h, w), depth_order == NEAR_BRIGHT)
        subject = None
        if mask is not None and focus == SUBJECT:
            subject = _map(mask, "subject mask", b, h, w)
            empty = [i for i in range(b) if not bool((subject[i] > 0.5).any())]
            if empty:
                raise BokehInputError(f"The subject mask is empty for image(s) {empty} (no pixel above 0.5); expected the "
                                      f"subject in white. Fix the mask, disconnect it (focus on the median depth), or "
                                      f"use Focus = focus plane.")
        # Relative depth has no metres, so the spec's 10 m shallow-subject test becomes the toggle.
        maps = defocus_map(rel_depth, subject, k, flat_range=float("inf") if subject_sharp else None,
                           flat_focus=FOCUS_ON_IMAGE_SCALE, focus=plane if focus == PLANE else None)
        big = window_radius(maps.defocus * DEFOCUS_SCALE)
        work = (2 * big + 1) ** 2 * b * h * w
        if work > MAX_WORK:
            raise BokehInputError(f"Rendering {b} image(s) of {w}x{h} at Blur {k:g} takes {(2 * big + 1) ** 2} passes "
                                  f"per pixel, beyond this node's bound; lower Blur or render a smaller image.")
        device = mm.get_torch_device()
        bar = comfy.utils.ProgressBar(2 * big + 1)

        def progress(done, total):
            mm.throw_exception_if_processing_interrupted()
            bar.update_absolute(done, total)

        bokeh, _ = classical_render(image.movedim(-1, 1).to(device), maps.defocus.to(device), g, DEFOCUS_SCALE, progress)
        out = bokeh.movedim(1, -1).clamp(0.0, 1.0).to(image.device, image.dtype)
        share = (maps.defocus[:, 0] * DEFOCUS_SCALE / k).abs().clamp(0.0, 1.0) if k > 0 else torch.zeros(b, h, w)
        return io.NodeOutput(out, share.to(image.device))
