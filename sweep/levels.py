"""Blur sweeps: lists of K values and the descriptor that travels with a pivot batch."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..attention.errors import BokehInputError

# One sampling run holds pivot + targets; beyond this, split the sweep. Every list of K a node
# takes (levels text, count, FLOAT lists) is held to it: ComfyUI runs the nodes after a list once
# per item, so an unbounded list is unbounded work from one prompt.
MAX_TARGETS = 64


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


# A plain decimal number: ASCII digits, an optional sign and point. Python's float() also takes
# '1_0', '1e3', 'nan', 'inf' and non-ASCII digits ('\u0663', fullwidth '\uff11\uff10'), none
# of which a user means as a blur level.
PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", re.ASCII)
SEPARATORS = re.compile(r"[^,;\s]+")


def plain_number(text: str, where: str) -> float:
    """'12.5' -> 12.5; anything but a plain decimal number is the pack's error, which says the
    value was found in ``where`` ("The targets list")."""
    if not PLAIN_NUMBER.fullmatch(text):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise BokehInputError(f"{where} has {ascii(shown)}, which is not a plain decimal number. Write blur levels "
                              "0..30 with ASCII digits and an optional point, separated by commas, e.g. '0, 4, 8, 12.5, 18, 28'.")
    return float(text)


def parse_levels(text: str, what: str = "blur levels", most: int | None = MAX_TARGETS) -> list[float]:
    """'0, 4, 8 12;18' -> [0, 4, 8, 12, 18]. Entries must be plain decimal numbers; more than
    ``most`` entries is an error found before the rest of the text is read (a node input can be
    any size). The range of each value is the caller's to check (nodes.common.check_blur)."""
    out = []
    for match in SEPARATORS.finditer(text or ""):
        if most is not None and len(out) == most:
            raise BokehInputError(f"The {what} list has more than {most} entries; one sampling run renders at most "
                                  f"{most}. Split the sweep over several runs.")
        out.append(plain_number(match.group(), f"The {what} list"))
    return out


def linspace_levels(start: float, end: float, count: int) -> list[float]:
    if not 1 <= count <= MAX_TARGETS:
        raise BokehInputError(f"count is {count}; expected 1 to {MAX_TARGETS} blur levels (one sampling run renders at most {MAX_TARGETS}).")
    if count == 1:
        return [float(start)]
    return [round(start + (end - start) * i / (count - 1), 4) for i in range(count)]


def format_levels(levels: list[float]) -> str:
    return ", ".join(f"{k:g}" for k in levels)
