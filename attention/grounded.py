"""Grounded self-attention in plain torch (spec section 3). No ComfyUI import here.

For the positive rows of one latent batch, inside the grounding window:

    O_row = softmax(Q_pivot [K_row ; K_pivot]^T / sqrt(d)) [V_row ; V_row]

This module only builds the attention inputs; the caller runs its attention backend on
them, so the host's (or another pack's) attention implementation is kept.
"""

from __future__ import annotations

import torch


def grounded_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pivot: int, extend_keys: bool = True):
    """q, k, v: (R, H, L, D), the rows of one positive chunk after RoPE; pivot: row index in it.

    Returns (q', k', v') with q' (R, H, L, D) the pivot's queries for every row and, when
    ``extend_keys``, k' = [k ; k_pivot] and v' = [v ; v] of shape (R, H, 2L, D). Without a
    key update in the block (the checkpoint has no ``to_k_adp``) the reference swaps the
    queries only, so keys and values are returned as they are.
    For the pivot row the result equals its ungrounded attention: duplicating every key
    together with its own value leaves the softmax-weighted average unchanged.
    """
    rows = q.shape[0]
    q_g = q[pivot : pivot + 1].expand(rows, -1, -1, -1)
    if not extend_keys:
        return q_g, k, v
    k_g = torch.cat((k, k[pivot : pivot + 1].expand(rows, -1, -1, -1)), dim=2)
    v_g = torch.cat((v, v), dim=2)
    return q_g, k_g, v_g


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
