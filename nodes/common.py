"""Small helpers shared by the nodes: custom types and input checks."""

from __future__ import annotations

import inspect

import torch
from comfy_api.latest import io

from ..attention.bokeh import K_RANGE
from ..attention.errors import BokehInputError
from ..sweep.checks import K_ACCEPTED, SCALE_ACCEPTED, check_blur, check_fraction, check_scale  # noqa: F401 (the nodes' checks)
from ..sweep.levels import MAX_TARGETS


BokehAdapterType = io.Custom("BOKEH_ADAPTER")
BokehSweepType = io.Custom("BOKEH_SWEEP")
BokehTrainingDataType = io.Custom("BOKEH_TRAINING_DATA")
CATEGORY = "Bokeh Diffusion"
ALIASES = ("bokeh", "depth of field", "DoF", "aperture", "defocus", "focus blur")

# Hosts with the V3 "advanced" input flag (0.30.0) hide such inputs behind "Show advanced
# inputs"; older ones (0.3.75) have no such flag and show them. Feature-probed.
ADVANCED = {"advanced": True} if "advanced" in inspect.signature(io.Float.Input.__init__).parameters else {}


def search_aliases(*extra: str) -> dict:
    """Schema keywords for node search, where the host's Schema has them (0.30.0, not 0.3.75)."""
    if "search_aliases" not in getattr(io.Schema, "__dataclass_fields__", {}):
        return {}
    return {"search_aliases": [*ALIASES, *extra]}


def show_on_node(cls, text: str) -> None:
    """Show ``text`` on the running node in the frontend, through the host's progress-text
    channel (as core's Get Image Size shows the size). Needs ``io.Hidden.unique_id`` in the
    node's schema; does nothing where no server runs (the headless runner, tests)."""
    node_id = getattr(getattr(cls, "hidden", None), "unique_id", None)
    try:
        from server import PromptServer
    except ImportError:
        return
    server = getattr(PromptServer, "instance", None)
    if node_id is not None and server is not None:
        server.send_progress_text(text, node_id)


def check_images(images, what="images", min_side: int = 1) -> torch.Tensor:
    """An IMAGE batch (B, H, W, 3+) with B >= 1, finite, each side at least ``min_side`` pixels."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0 or images.shape[-1] < 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise BokehInputError(f"The {what} input is {shape}; expected an IMAGE batch (B, H, W, 3) with at least one image.")
    if min(images.shape[1], images.shape[2]) < min_side:
        raise BokehInputError(
            f"The {what} are {images.shape[2]}x{images.shape[1]} pixels; this node needs at least "
            f"{min_side}x{min_side}."
        )
    if not bool(torch.isfinite(images).all()):
        raise BokehInputError(f"The {what} contain NaN or infinite values; check the VAE decode upstream.")
    return images[..., :3]


def sweep_plan(sweep) -> tuple:
    """(K of every row, the pivot's row) of a BOKEH_SWEEP input for sweep.outputs.sweep_outputs;
    (None, None) when none is linked (the images are numbered)."""
    return (sweep.k_values, sweep.pivot_row) if sweep is not None else (None, None)


def blur_input(id: str, default: float, tooltip: str, display_name: str | None = None):
    return io.Float.Input(
        id, display_name=display_name, default=default, min=0.0, max=K_RANGE, step=0.5, round=0.01,
        display_mode=io.NumberDisplay.slider, tooltip=tooltip,
    )


def list_runs(node: str, **inputs) -> list[dict]:
    """The runs of a node that takes FLOAT lists (``is_input_list``), by ComfyUI's own rule for
    nodes run over lists (execution.py, _map_node_over_list): as many runs as the longest input
    list, a shorter list repeating its last item. The count is checked before anything runs:
    every run is a sampling downstream, so at most MAX_TARGETS runs come from one list."""
    lists = {k: v if isinstance(v, list) else [v] for k, v in inputs.items()}
    empty = sorted(k for k, v in lists.items() if not v)
    if empty:
        raise BokehInputError(f"{node}: the input {empty[0]!r} is an empty list; expected at least one value.")
    runs = max(len(v) for v in lists.values())
    if runs > MAX_TARGETS:
        raise BokehInputError(f"{node} got a list of {runs} values; one list may drive at most {MAX_TARGETS} runs "
                              "(one sampling each). Split the sweep over several graphs.")
    return [{k: v[min(i, len(v) - 1)] for k, v in lists.items()} for i in range(runs)]
