"""A blur meter: per-image sharpness as the log variance of the Laplacian (the quantity behind
the paper's LVCorr, spec section 7), and how a sweep's sharpness follows its K values."""

from __future__ import annotations

from dataclasses import dataclass

import kornia
import torch


def sharpness(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) in 0..1 -> (B,) log(var(Laplacian(gray)) + 1e-12), higher = sharper."""
    gray = kornia.color.rgb_to_grayscale(images.movedim(-1, 1).float())
    lap = kornia.filters.laplacian(gray, kernel_size=3)
    return torch.log(lap.flatten(1).var(dim=1, unbiased=False) + 1e-12)


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share their mean rank), 0-based."""
    order = torch.argsort(x, stable=True)
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = torch.arange(len(x), dtype=torch.float64)
    for v in torch.unique(x):
        tie = x == v
        if int(tie.sum()) > 1:
            ranks[tie] = ranks[tie].mean()
    return ranks


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    den = float(a.norm() * b.norm())
    return float((a * b).sum()) / den if den > 0 else float("nan")


# Sharpness differences below this are measurement noise, not blur: one 8-bit rounding step in 1%
# of an image's values moves its sharpness by up to 0.01 (measured on tiny-model sweeps rendered
# in batches of other sizes, tests/test_shard.py); twice that is no evidence of a trend.
NOISE = 0.02

TRENDS = {
    "noise": f"within measurement noise: sharpness varies by less than {NOISE:g}, no verdict",
    "rising": "monotonic: blur rises with K",
    "falling": "monotonic in the wrong direction: blur falls as K rises",
    "mixed": "not monotonic: blur goes up and down as K rises",
    "flat": "flat: every image is equally sharp",
}


@dataclass
class SweepBlur:
    sharpness: list[float]
    blur_rank: list[int]  # 0 = sharpest
    pearson: float  # linear correlation of K with blur (= -sharpness)
    spearman: float  # rank correlation of K with blur
    trend: str  # a key of TRENDS: how blur follows K (rows sorted by K)

    @property
    def monotonic(self) -> bool:
        """Blur never decreases as K increases."""
        return self.trend in ("rising", "flat")

    def trend_text(self) -> str:
        return TRENDS[self.trend]

    def correlations(self) -> str:
        return f"corr(K, blur): linear {self.pearson:.3f}, rank {self.spearman:.3f}"

    def verdict(self) -> str:
        return f"{self.correlations()}; {self.trend_text()}"

    def report(self, labels: list[str], ks: list[float] | None) -> str:
        """A Markdown table, one row per image (labels such as 'K 12' or 'K 15 (pivot)'), then the
        correlations: it renders as a table where Markdown is rendered and reads as text elsewhere."""
        lines = ["| image | sharpness | blur rank |", "|---|---:|---:|"]
        for label, s, r in zip(labels, self.sharpness, self.blur_rank):
            lines.append(f"| {label} | {s:.3f} | {r} |")
        lines.append("")
        lines.append("sharpness = log variance of the Laplacian (higher = sharper); blur rank 0 = sharpest.")
        if ks is not None and len(ks) >= 2:
            lines.append("")
            lines.append(self.verdict())
        return "\n".join(lines)


def _trend(ks: torch.Tensor, blur: torch.Tensor) -> str:
    """How blur follows K, over the images sorted by K (ties in K keep their order); "noise" when
    the whole range is within NOISE."""
    if float(blur.max() - blur.min()) < NOISE:
        return "noise"
    order = torch.argsort(ks, stable=True)
    steps = blur[order][1:] - blur[order][:-1]
    up, down = bool((steps > 1e-9).any()), bool((steps < -1e-9).any())
    return {(True, False): "rising", (False, True): "falling", (True, True): "mixed", (False, False): "flat"}[(up, down)]


def measure_sweep(images: torch.Tensor, ks: list[float] | None = None) -> SweepBlur:
    s = sharpness(images).cpu()
    blur_rank = [int(r) for r in torch.argsort(torch.argsort(-s, stable=True), stable=True)]
    if ks is None or len(ks) < 2:
        return SweepBlur(s.tolist(), blur_rank, float("nan"), float("nan"), "flat")
    k = torch.tensor(ks, dtype=torch.float64)
    blur = -s.double()
    return SweepBlur(s.tolist(), blur_rank, _pearson(k, blur), _pearson(_ranks(k), _ranks(blur)), _trend(k, blur))
