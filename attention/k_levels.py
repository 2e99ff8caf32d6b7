"""Blur levels K as the adapters take them: the range, the two flavours and how each maps K.
Plain Python (no torch), so that the headless runner checks its command line with the nodes'
own checks (sweep/checks.py) before anything heavy loads."""

from __future__ import annotations

# Spec section 1: the network sees K / 30.
K_RANGE = 30.0
# Adapter flavours, told from the file's keys (weights/checkpoint.py).
TEXT = "text"  # Bokeh Diffusion, FLUX.1-dev text-to-image: K / 30, no clamp
PHOTO = "photo"  # BokehDepth stage 1, FLUX.1-Kontext-dev image-to-image: clamp(K, 1, 30) / 30
PHOTO_K_MIN = 1.0


def effective_k(k: float, flavour: str = TEXT) -> float:
    """The blur level the adapter acts on: the photo adapter was trained on 1..30 and its
    reference clamps K to that range (K 0.5 acts as 1, K 45 as 30); the text-to-image adapter
    takes K as it is."""
    k = float(k)
    return min(max(k, PHOTO_K_MIN), K_RANGE) if flavour == PHOTO else k
