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


@dataclass
class SweepBlur:
    sharpness: list[float]
    blur_rank: list[int]  # 0 = sharpest
    pearson: float  # linear correlation of K with blur (= -sharpness)
    spearman: float  # rank correlation of K with blur
    monotonic: bool  # blur never decreases as K increases

    def report(self, labels: list[str], has_k: bool) -> str:
        """One line per image (labels such as 'K 12' or 'K 15 (pivot)'), then the correlations."""
        lines = ["sharpness = log variance of the Laplacian; blur rank 0 = sharpest"]
        for label, s, r in zip(labels, self.sharpness, self.blur_rank):
            lines.append(f"{label:>14}  sharpness {s:7.3f}  blur rank {r}")
        if has_k:
            lines.append(f"corr(K, blur): linear {self.pearson:.3f}, rank {self.spearman:.3f}; "
                         f"{'monotonic' if self.monotonic else 'NOT monotonic'} in K")
        return "\n".join(lines)


def measure_sweep(images: torch.Tensor, ks: list[float] | None = None) -> SweepBlur:
    s = sharpness(images).cpu()
    blur_rank = [int(r) for r in torch.argsort(torch.argsort(-s, stable=True), stable=True)]
    if ks is None or len(ks) < 2:
        return SweepBlur(s.tolist(), blur_rank, float("nan"), float("nan"), True)
    k = torch.tensor(ks, dtype=torch.float64)
    blur = -s.double()
    order = torch.argsort(k, stable=True)
    mono = bool((blur[order][1:] >= blur[order][:-1] - 1e-9).all())
    return SweepBlur(s.tolist(), blur_rank, _pearson(k, blur), _pearson(_ranks(k), _ranks(blur)), mono)
