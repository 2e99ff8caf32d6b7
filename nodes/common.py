"""Small helpers shared by the nodes: custom types and input checks."""

from __future__ import annotations

import logging
import math

from comfy_api.latest import io

from ..attention.bokeh import K_RANGE
from ..attention.errors import BokehInputError

log = logging.getLogger(__name__)

BokehAdapterType = io.Custom("BOKEH_ADAPTER")
BokehSweepType = io.Custom("BOKEH_SWEEP")
CATEGORY = "Bokeh Diffusion"


def blur_input(id: str, default: float, tooltip: str, display_name: str | None = None):
    return io.Float.Input(
        id, display_name=display_name, default=default, min=0.0, max=K_RANGE, step=0.5, round=0.01,
        display_mode=io.NumberDisplay.slider, tooltip=tooltip,
    )


def check_blur(value, what: str = "blur level") -> float:
    """A finite blur level; values outside 0..30 extrapolate (the reference does not clamp)."""
    try:
        k = float(value)
    except (TypeError, ValueError):
        raise BokehInputError(f"The {what} must be a number from 0 to 30; got {value!r}.") from None
    if not math.isfinite(k):
        raise BokehInputError(f"The {what} is {k}; expected a finite number from 0 (sharp) to 30 (strongest blur).")
    if not 0.0 <= k <= K_RANGE:
        log.warning("Bokeh: %s %g is outside 0..30 and extrapolates beyond the trained range", what, k)
    return k


def check_scale(value, what: str) -> float:
    k = float(value)
    if not math.isfinite(k):
        raise BokehInputError(f"{what} is {k}; expected a finite number (1.0 is the reference).")
    return k
