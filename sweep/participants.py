"""One sweep shared out over several participants (ComfyUI-Distributed's master and workers):
which targets each one renders, and how their rows are put back together.

Every participant renders ``[pivot, its slice]`` from the same seed and noise, so its pivot row
is the same image; the gathered sweep is one pivot, then all targets in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..attention.errors import BokehInputError
from .levels import Sweep

# Participants beyond this are refused: ComfyUI-Distributed's own worker lists are far smaller,
# and the gather step holds P pivot rows in memory.
MAX_PARTICIPANTS = 256

# The collector sends a worker's image as an 8-bit PNG: ``(255 * x).astype(uint8)``, i.e. the
# value truncated (not rounded) to 1/255 (ComfyUI-Distributed 1.4.4, utils/image.py). Two
# renders of one pivot may straddle a level boundary, so they differ by up to this after it.
LEVEL = 1.0 / 255.0


@dataclass(frozen=True)
class PlannedSweep(Sweep):
    """The whole sweep of a Pivot Batch shared by ``participants`` (K of the pivot and of all N
    targets, not only this participant's slice): what Bokeh Gather Sweep checks against."""

    participants: int = 1


def slice_bounds(count: int, participants: int) -> list[tuple[int, int]]:
    """[start, end) of each participant's targets: ``count`` targets cut in order into
    ``participants`` contiguous slices whose sizes differ by at most one, the first ones larger
    (5 over 3: 2, 2, 1). A slice may be empty (more participants than targets)."""
    if count < 0 or participants < 1:
        raise BokehInputError(f"{count} targets over {participants} participants; expected 0 or more targets and 1 or more participants.")
    base, extra = divmod(count, participants)
    bounds, start = [], 0
    for i in range(participants):
        end = start + base + (1 if i < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


def check_participant(participant, participants) -> tuple[int, int]:
    """(participant, participants) as whole numbers with 0 <= participant < participants."""
    try:
        p, total = int(participant), int(participants)
    except (TypeError, ValueError, OverflowError):
        raise BokehInputError(
            f"participant and participants must be whole numbers; got {type(participant).__name__} and {type(participants).__name__}."
        ) from None
    if not 1 <= total <= MAX_PARTICIPANTS:
        raise BokehInputError(f"participants is {total}; expected 1 (not shared out) to {MAX_PARTICIPANTS}.")
    if not 0 <= p < total:
        raise BokehInputError(
            f"participant is {p} but participants is {total}; expected 0 to {total - 1}. With ComfyUI-Distributed, link "
            "DistributedSeed (seed 0) to participant and set participants to 1 + the number of workers that run."
        )
    return p, total


def own_slice(levels: list[float], participant: int, participants: int) -> list[float]:
    start, end = slice_bounds(len(levels), participants)[participant]
    return list(levels[start:end])


def expected_rows(sweep: PlannedSweep) -> int:
    """Rows the collector returns when every participant delivered: one pivot each plus all targets."""
    return sweep.participants + len(sweep.k_values) - 1


def participant_rows(sweep: PlannedSweep) -> list[tuple[int, int]]:
    """[start, end) of each participant's rows in the collected batch (master first, then the
    workers in participant order): 1 pivot + its slice each."""
    rows, start = [], 0
    for a, b in slice_bounds(len(sweep.k_values) - 1, sweep.participants):
        rows.append((start, start + 1 + b - a))
        start += 1 + b - a
    return rows


def as_collected(images: torch.Tensor) -> torch.Tensor:
    """The 8-bit round trip the collector applies to a worker's rows (truncation to 1/255, as
    ``(255 * x).astype(uint8) / 255`` in float32): applied to the master's rows so every row of
    the gathered sweep has had the same treatment. Values are clamped to 0..1 first, as a decoded
    image is (the collector's uint8 cast would wrap values outside)."""
    scaled = images.to(torch.float32).clamp(0.0, 1.0) * 255.0
    return torch.floor(scaled).to(torch.uint8).to(torch.float32) / 255.0
