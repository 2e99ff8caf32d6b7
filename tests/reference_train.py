"""An independent reference of one training step's loss, written from shared/spec/bokeh-training.md
(1.5 steps 3-12, 1.10) on top of the plain-torch FLUX + adapter forward of tests/reference.py.
It calls neither the pack's training code nor its attention code, nor ComfyUI's modules.

Gradients come from autograd through this forward: the adapter tensors are leaves here.
"""

from __future__ import annotations

import reference
import torch


def leaves(tensors: dict) -> dict:
    """Detached float32 copies that collect their own gradients."""
    return {k: v.detach().clone().float().requires_grad_(True) for k, v in tensors.items()}


def loss(sd, cfg, adapter_sd, x0, noise, sigmas, k_inputs, context, pooled, guidance, ref=None, swap=None,
         swap_blocks="single", rms_eps=reference.EPS, value_pair="to_v_bokeh"):
    """The flow-matching loss of one batch. swap: a list (row -> row whose queries, noise and
    sigma it takes); swap_blocks: "single" (FLUX single blocks only) or "all"."""
    if swap is not None:
        noise, sigmas = noise[swap], sigmas[swap]
    s = sigmas.view(-1, 1, 1, 1)
    x_t = (1 - s) * x0 + s * noise
    ground = None
    if swap is not None:
        # A row mapped to itself attends over [K_r ; K_r] with [V_r ; V_r] in the authors' code,
        # which is ordinary attention (each key twice, same value: same softmax average), so the
        # reference grounds only the rows that take another row.
        rows = {r: p for r, p in enumerate(swap) if p != r}
        ground = lambda block: rows if (swap_blocks == "all" or block >= cfg["depth"]) else {}  # noqa: E731
    adapter = reference.Adapter(adapter_sd, value_pair=value_pair)
    out = reference.forward(sd, cfg, x_t, sigmas, context, pooled, guidance, adapter=adapter,
                            k_inputs=[float(k) for k in k_inputs], ground=ground, rms_eps=rms_eps, ref=ref)
    return ((out - (noise - x0)) ** 2).mean(dim=(1, 2, 3)).mean()
