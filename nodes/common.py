"""Small helpers shared by the nodes: custom types and input checks."""

from __future__ import annotations

import inspect
import logging
import math

from comfy_api.latest import io

from ..attention.bokeh import K_RANGE, PHOTO, PHOTO_K_MIN, TEXT, effective_k
from ..attention.errors import BokehInputError
from ..sweep.levels import MAX_TARGETS, plain_number

log = logging.getLogger(__name__)

BokehAdapterType = io.Custom("BOKEH_ADAPTER")
BokehSweepType = io.Custom("BOKEH_SWEEP")
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


def blur_input(id: str, default: float, tooltip: str, display_name: str | None = None):
    return io.Float.Input(
        id, display_name=display_name, default=default, min=0.0, max=K_RANGE, step=0.5, round=0.01,
        display_mode=io.NumberDisplay.slider, tooltip=tooltip,
    )


# Accepted blur levels. The adapter was trained on 0..30 and the reference does not clamp;
# a modest extrapolation (a third of the range either side) is allowed with a warning, beyond
# that the embedding's inputs are far from anything it saw and the images break down.
K_ACCEPTED = (-10.0, 40.0)
SCALE_ACCEPTED = (-10.0, 10.0)  # bokeh_scale / lora_scale, as their widgets


def check_blur(value, what: str = "blur level", flavour: str = TEXT) -> float:
    """A blur level in the accepted range (K_ACCEPTED). Outside the trained range the
    text-to-image adapter extrapolates (warned); the photo adapter clamps to 1..30 (said)."""
    k = _number(value, f"The {what}", "a number from 0 to 30")
    low, high = K_ACCEPTED
    if not math.isfinite(k) or (flavour != PHOTO and not low <= k <= high):  # the photo adapter clamps any K
        raise BokehInputError(
            f"The {what} is {k:g}; expected 0 (sharp) to 30 (strongest blur), the trained range. Values from "
            f"{low:g} to {high:g} are accepted as an extrapolation; anything beyond produces broken images."
        )
    if flavour == PHOTO:
        acts = effective_k(k, flavour)
        if acts != k:
            log.info("Bokeh: %s %g acts as %g with the photo adapter (trained on %g..%g)", what, k, acts, PHOTO_K_MIN, K_RANGE)
    elif not 0.0 <= k <= K_RANGE:
        log.warning("Bokeh: %s %g is outside 0..30 and extrapolates beyond the trained range", what, k)
    return k


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


def _number(value, what: str, expected: str) -> float:
    if isinstance(value, str):  # an API client may send text where a number belongs
        return plain_number(value.strip(), what)
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise BokehInputError(f"{what} must be {expected}; got a {type(value).__name__}.") from None


def check_scale(value, what: str) -> float:
    s = _number(value, what, "a number (1.0 is the reference)")
    low, high = SCALE_ACCEPTED
    if not math.isfinite(s) or not low <= s <= high:
        raise BokehInputError(f"{what} is {s:g}; expected a number from {low:g} to {high:g} (1.0 is the reference).")
    return s


def check_fraction(value, what: str) -> float:
    """A share from 0 to 1 (e.g. the grounded share of the steps)."""
    f = _number(value, what, "a number from 0 to 1")
    if not math.isfinite(f) or not 0.0 <= f <= 1.0:
        raise BokehInputError(f"{what} is {f:g}; expected a share from 0 (none) to 1 (every step).")
    return f
