"""Grounded self-attention in plain torch (spec section 3). No ComfyUI import here.

For the positive rows of one latent batch, inside the grounding window:

    O_row = softmax(Q_pivot [K_row ; K_pivot]^T / sqrt(d)) [V_row ; V_row]

This module only builds the attention inputs; the caller runs its attention backend on
them, so the host's (or another pack's) attention implementation is kept.
"""

from __future__ import annotations

import torch


def plan_rows(cond_or_uncond, rows: int, pivot: int, extend_keys: bool):
    """Split a model call's rows into two groups of (row, query row) pairs:
    ``normal`` (attention over the row's own L keys) and ``extended`` (keys [K_row ; K_pivot],
    values [V_row ; V_row], 2L long).

    Row r of the call is latent image r % rows of chunk r // rows; chunk c is positive when
    cond_or_uncond[c] == 0. Positive target rows take the pivot's queries. The pivot row and
    negative rows stay normal: for the pivot, duplicating every key with its own value leaves
    the softmax average unchanged, so grounding it would only cost time. Without a key update
    in the block (no ``to_k_adp``) the reference swaps the queries only: no extension.
    """
    normal, extended = [], []
    for c, kind in enumerate(cond_or_uncond):
        piv = c * rows + pivot
        for r in range(c * rows, (c + 1) * rows):
            if kind != 0 or r == piv:
                normal.append((r, r))
            elif extend_keys:
                extended.append((r, piv))
            else:
                normal.append((r, piv))
    return normal, extended


def plan_indices(plan, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, query rows) of a ``plan_rows`` group as index tensors on ``device``."""
    return (torch.tensor([r for r, _ in plan], device=device), torch.tensor([qr for _, qr in plan], device=device))


def gather(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask, rows: torch.Tensor, qrows: torch.Tensor, extended: bool):
    """The attention inputs of one group of ``plan_rows`` (as ``plan_indices``).
    q, k, v: (B, H, L, D) after RoPE.

    Returns (q', k', v', mask') with q' (N, H, L, D) and k', v' (N, H, L or 2L, D).
    A mask with one row per batch row is gathered (and extended) like the keys; a shared
    mask is extended along the key axis.
    """
    qg = q.index_select(0, qrows)
    kg, vg = k.index_select(0, rows), v.index_select(0, rows)
    per_row = mask is not None and mask.ndim >= 3 and mask.shape[0] == q.shape[0]
    mg = mask.index_select(0, rows) if per_row else mask
    if extended:
        kg = torch.cat((kg, k.index_select(0, qrows)), dim=2)
        vg = torch.cat((vg, vg), dim=2)
        if mask is not None:
            mg = torch.cat((mg, mask.index_select(0, qrows) if per_row else mask), dim=-1)
    return qg, kg, vg, mg


def grounding_steps(total_steps: int, fraction: float, steps: int) -> int:
    """How many of the sampler's first steps are grounded: ``steps`` when >= 0, else
    round(fraction * total_steps) (0.8 of 30 = 24, the reference's example)."""
    if steps >= 0:
        return min(steps, total_steps)
    return min(total_steps, int(round(fraction * total_steps)))


def in_window(sigma: float, schedule: list[float], grounded_steps: int) -> bool:
    """Whether an evaluation at ``sigma`` belongs to the first ``grounded_steps`` steps of
    ``schedule`` (the sampler's sigmas, steps + 1 values, decreasing).

    Step i evaluates at sigma_i (and, for multi-evaluation samplers such as dpm2, at sigmas
    between sigma_i and sigma_{i+1}), so "inside" means sigma > sigma_G. An evaluation at
    exactly sigma_G (heun's corrector of step G-1) counts as outside.
    """
    if grounded_steps <= 0 or len(schedule) < 2:
        return False
    g = min(grounded_steps, len(schedule) - 1)
    threshold = schedule[g]
    # Relative tolerance: the sigma the model sees went through a float32 round trip.
    return sigma > threshold * (1.0 + 1e-5) + 1e-8
