"""Blur sweeps: lists of K values and the descriptor that travels with a pivot batch."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..attention.errors import BokehInputError

MAX_TARGETS = 64  # one sampling run holds pivot + targets; beyond this, split the sweep


@dataclass(frozen=True)
class Sweep:
    """What downstream nodes need to know of a sweep: K per row and the pivot's row (None: a
    sweep without pivot, e.g. Bokeh Blur Levels' list for a photo)."""

    k_values: tuple[float, ...]
    pivot_row: int | None = 0

    def labels(self, count: int) -> list[str]:
        """Labels for ``count`` images: the whole batch, or the batch with the pivot dropped."""
        rows = list(range(len(self.k_values)))
        if count == len(rows) - 1 and self.pivot_row is not None:
            rows.remove(self.pivot_row)
        elif count != len(rows):
            return [f"#{i}" for i in range(count)]
        return [f"K {self.k_values[r]:g}" + (" (pivot)" if r == self.pivot_row else "") for r in rows]

    def ks_for(self, count: int) -> list[float] | None:
        if count == len(self.k_values):
            return list(self.k_values)
        if count == len(self.k_values) - 1 and self.pivot_row is not None:
            return [k for r, k in enumerate(self.k_values) if r != self.pivot_row]
        return None


def parse_levels(text: str, what: str = "blur levels") -> list[float]:
    """'0, 4, 8 12;18' -> [0, 4, 8, 12, 18]. Non-numeric entries are errors; the range of each
    value is the caller's to check (nodes.common.check_blur)."""
    parts = [p for p in re.split(r"[,;\s]+", text or "") if p]
    out = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            shown = p if len(p) <= 40 else p[:37] + "..."
            raise BokehInputError(f"The {what} list has {shown!r}, which is not a number. Write numbers 0..30 separated by commas, e.g. '0, 4, 8, 12, 18, 28'.") from None
        out.append(v)
    return out


def linspace_levels(start: float, end: float, count: int) -> list[float]:
    if count < 1:
        raise BokehInputError(f"count is {count}; a sweep needs at least one blur level.")
    if count == 1:
        return [float(start)]
    return [round(start + (end - start) * i / (count - 1), 4) for i in range(count)]


def format_levels(levels: list[float]) -> str:
    return ", ".join(f"{k:g}" for k in levels)
