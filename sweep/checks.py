"""The checks of the values a user gives: blur levels, scales, shares. Pure (no ComfyUI), so that
the nodes (nodes/common.py) and the headless runner's command line (runner/args.py) share
one source of what is accepted and of the message that says so."""

from __future__ import annotations

import logging
import math

from ..attention.k_levels import K_RANGE, PHOTO, PHOTO_K_MIN, TEXT, effective_k
from ..attention.errors import BokehInputError
from .levels import plain_number

log = logging.getLogger(__name__)

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
