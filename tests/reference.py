"""An independent reference forward of FLUX + Bokeh adapter + grounded self-attention.

Written from the spec (shared/spec/bokeh-diffusion.md) and the FLUX architecture in plain
torch, from raw state dicts, in float32 by default (the dtype the host runs the tiny model
in, so the comparison measures the method and not float32-vs-float64 drift of a random net). It calls neither this pack's attention code nor
ComfyUI's modules, so a match is evidence, not a tautology.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EPS = 1e-6  # FLUX's layer norms, and its QK RMS norm up to ComfyUI 0.13 (FLUX's own RMSNorm)


def lin(sd, name, x):
    w = sd[name + ".weight"]
    b = sd.get(name + ".bias")
    return F.linear(x, w, b)


def t_embed(t, dim=256, max_period=10000, time_factor=1000.0):
    t = t * time_factor
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=t.dtype) / half)
    args = t[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def mlp_embed(sd, name, x):
    return lin(sd, name + ".out_layer", F.silu(lin(sd, name + ".in_layer", x)))


def layer_norm(x):
    return F.layer_norm(x, x.shape[-1:], eps=EPS)


def rms(x, scale, eps=EPS):
    """RMS norm; ``eps=None`` is torch.nn.RMSNorm's default (the dtype's machine epsilon),
    what ComfyUI 0.14 on uses for FLUX's QK norm."""
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * scale


def norm_weight(sd, name):
    """An RMS norm's weight under whichever name the state dict has: ``scale`` (FLUX's own
    RMSNorm, ComfyUI up to 0.13) or ``weight`` (torch.nn.RMSNorm, 0.14 on)."""
    for key in (name + ".scale", name + ".weight"):
        if key in sd:
            return sd[key]
    raise KeyError(f"{name}.scale / {name}.weight")


def rope_angles(ids, axes_dim, theta):
    """ids: (L, n_axes) -> angles (L, sum(axes_dim)/2)."""
    parts = []
    for i, d in enumerate(axes_dim):
        omega = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
        parts.append(ids[:, i : i + 1].double() * omega[None])
    return torch.cat(parts, dim=-1)


def rotate(x, angles):
    """x: (B, H, L, D) with pairs (x0, x1) along D; angles in float64."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    out = torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1)
    return out.flatten(-2)


def softmax_attention(q, k, v):
    """q: (H, Lq, D), k, v: (H, Lk, D) -> (Lq, H*D)."""
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    o = w @ v
    return o.transpose(0, 1).reshape(q.shape[1], -1)


class Adapter:
    """The adapter's math from raw file tensors (spec sections 1-2)."""

    def __init__(self, asd, bokeh_scale=1.0, lora_scale=1.0, alpha=None, dtype=torch.float32, value_pair="to_v_bokeh"):
        self.dtype = dtype
        self.sd = {k: v.to(dtype) for k, v in asd.items()}
        self.value_pair = value_pair  # "to_v_dof" for the photo adapter (bokehdepth-photo.md section 1)
        self.bokeh_scale = bokeh_scale
        self.lora_scale = lora_scale
        self.alpha = alpha

    def has(self, block, name):
        return f"adapter_modules.{block}.{name}.down.weight" in self.sd

    def pair(self, block, name, x):
        down = self.sd[f"adapter_modules.{block}.{name}.down.weight"]
        up = self.sd[f"adapter_modules.{block}.{name}.up.weight"]
        scale = 1.0 if self.alpha is None else self.alpha / down.shape[0]
        return (x @ down.T) @ up.T * scale

    def embed(self, k_input):
        x = torch.tensor([[k_input]], dtype=self.dtype)
        h = torch.relu(x @ self.sd["embedding_layer.0.weight"].T + self.sd["embedding_layer.0.bias"])
        return (h @ self.sd["embedding_layer.2.weight"].T + self.sd["embedding_layer.2.bias"])[0]

    def bias(self, block, k_input):
        if not self.has(block, self.value_pair):
            return 0.0
        return self.bokeh_scale * self.pair(block, self.value_pair, self.embed(k_input)[None])[0]

    def adapted(self, block):
        return any(k.startswith(f"adapter_modules.{block}.") for k in self.sd)


def joint_attention(q, k, v, angles, adapter, block, k_inputs, ground):
    """q, k, v: (B, H, L, D) before RoPE. ground: {row: pivot_row} for grounded rows, or a
    function block -> such a dict (training grounds only some blocks, bokeh-training.md 1.10)."""
    ground = ground(block) if callable(ground) else ground
    q, k = rotate(q, angles), rotate(k, angles)
    outs = []
    for r in range(q.shape[0]):
        qr, kr, vr = q[r], k[r], v[r]
        if adapter is not None and adapter.adapted(block) and r in ground:
            p = ground[r]
            qr = q[p]
            if adapter.has(block, "to_k_adp"):
                kr = torch.cat([k[r], k[p]], dim=1)
                vr = torch.cat([v[r], v[r]], dim=1)
        o = softmax_attention(qr, kr, vr)
        if adapter is not None and adapter.adapted(block):
            o = o + adapter.bias(block, k_inputs[r])
        outs.append(o)
    return torch.stack(outs)


def qk_update(adapter, block, x, name):
    """x: (B, L, hidden) flat projection; spec 2.2."""
    if adapter is None or not adapter.has(block, name):
        return x
    return x + adapter.lora_scale * adapter.pair(block, name, x)


def heads(x, h):
    b, l, hd = x.shape
    return x.view(b, l, h, hd // h).transpose(1, 2)


def patchify(x, ps, first_id=0):
    """(B, C, H, W) -> tokens (B, L, C*ps*ps) and position ids (L, 3): (first_id, row, column)."""
    b, c, hh, ww = x.shape
    gh, gw = hh // ps, ww // ps
    tokens = x.view(b, c, gh, ps, gw, ps).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * ps * ps)
    ids = torch.stack(torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij"), -1).reshape(-1, 2)
    return tokens, torch.cat([torch.full((gh * gw, 1), first_id, dtype=torch.long), ids], 1)


def forward(sd, cfg, x, timestep, context, y, guidance, adapter=None, k_inputs=None, ground=None, dtype=torch.float32,
            rms_eps=EPS, ref=None):
    """The FLUX diffusion model's output for latent x (B, C, H, W). k_inputs: network input per
    row (K/30 or -1.0). ground: {row: pivot row} for rows grounded at this evaluation.
    rms_eps: the QK RMS norm's eps (the host's; None = torch's default for the dtype).
    ref: a FLUX.1 Kontext reference latent (B, C, H', W'): its tokens follow the noisy ones in
    the image stream with first position id 1 (bokehdepth-photo.md section 3, step 5), take part
    in every block like image tokens, and are dropped from the output."""
    sd = {k: v.to(dtype) for k, v in sd.items()}
    x, context, y, timestep, guidance = (a.to(dtype) for a in (x, context, y, timestep, guidance))
    ground = ground or {}
    hsz, nh, ps = cfg["hidden_size"], cfg["num_heads"], cfg["patch_size"]
    b, c, hh, ww = x.shape
    gh, gw = hh // ps, ww // ps
    img, img_ids = patchify(x, ps)
    n_img = img.shape[1]
    if ref is not None:
        ref_tokens, ref_ids = patchify(ref.to(dtype), ps, first_id=1)
        img, img_ids = torch.cat([img, ref_tokens], 1), torch.cat([img_ids, ref_ids], 0)
    txt_ids = torch.zeros(context.shape[1], 3, dtype=torch.long)
    angles = rope_angles(torch.cat([txt_ids, img_ids]), cfg["axes_dim"], cfg["theta"])

    img = lin(sd, "img_in", img)
    vec = mlp_embed(sd, "time_in", t_embed(timestep))
    vec = vec + mlp_embed(sd, "guidance_in", t_embed(guidance))
    vec = vec + mlp_embed(sd, "vector_in", y)
    txt = lin(sd, "txt_in", context)
    n_txt = txt.shape[1]

    def mod(name, n):
        return lin(sd, name, F.silu(vec))[:, None].chunk(n, dim=-1)

    for i in range(cfg["depth"]):
        p = f"double_blocks.{i}."
        ish, isc, ig, ish2, isc2, ig2 = mod(p + "img_mod.lin", 6)
        tsh, tsc, tg, tsh2, tsc2, tg2 = mod(p + "txt_mod.lin", 6)
        iq, ik, iv = lin(sd, p + "img_attn.qkv", layer_norm(img) * (1 + isc) + ish).chunk(3, dim=-1)
        tq, tk, tv = lin(sd, p + "txt_attn.qkv", layer_norm(txt) * (1 + tsc) + tsh).chunk(3, dim=-1)
        iq, ik = qk_update(adapter, i, iq, "to_q_adp"), qk_update(adapter, i, ik, "to_k_adp")
        iq, ik, iv, tq, tk, tv = (heads(t, nh) for t in (iq, ik, iv, tq, tk, tv))
        iq = rms(iq, norm_weight(sd, p + "img_attn.norm.query_norm"), rms_eps)
        ik = rms(ik, norm_weight(sd, p + "img_attn.norm.key_norm"), rms_eps)
        tq = rms(tq, norm_weight(sd, p + "txt_attn.norm.query_norm"), rms_eps)
        tk = rms(tk, norm_weight(sd, p + "txt_attn.norm.key_norm"), rms_eps)
        q, k, v = torch.cat([tq, iq], 2), torch.cat([tk, ik], 2), torch.cat([tv, iv], 2)
        attn = joint_attention(q, k, v, angles, adapter, i, k_inputs, ground)
        ta, ia = attn[:, :n_txt], attn[:, n_txt:]
        img = img + ig * lin(sd, p + "img_attn.proj", ia)
        h = layer_norm(img) * (1 + isc2) + ish2
        img = img + ig2 * lin(sd, p + "img_mlp.2", F.gelu(lin(sd, p + "img_mlp.0", h), approximate="tanh"))
        txt = txt + tg * lin(sd, p + "txt_attn.proj", ta)
        h = layer_norm(txt) * (1 + tsc2) + tsh2
        txt = txt + tg2 * lin(sd, p + "txt_mlp.2", F.gelu(lin(sd, p + "txt_mlp.0", h), approximate="tanh"))

    xs = torch.cat([txt, img], 1)
    mlp_hidden = int(hsz * cfg["mlp_ratio"])
    for j in range(cfg["depth_single_blocks"]):
        p = f"single_blocks.{j}."
        block = cfg["depth"] + j
        sh, sc, g = mod(p + "modulation.lin", 3)
        h = lin(sd, p + "linear1", layer_norm(xs) * (1 + sc) + sh)
        q, k, v, mlp = torch.split(h, [hsz, hsz, hsz, mlp_hidden], dim=-1)
        q, k = qk_update(adapter, block, q, "to_q_adp"), qk_update(adapter, block, k, "to_k_adp")
        q, k, v = heads(q, nh), heads(k, nh), heads(v, nh)
        q, k = rms(q, norm_weight(sd, p + "norm.query_norm"), rms_eps), rms(k, norm_weight(sd, p + "norm.key_norm"), rms_eps)
        attn = joint_attention(q, k, v, angles, adapter, block, k_inputs, ground)
        xs = xs + g * lin(sd, p + "linear2", torch.cat([attn, F.gelu(mlp, approximate="tanh")], -1))

    img = xs[:, n_txt:n_txt + n_img]
    shift, scale = lin(sd, "final_layer.adaLN_modulation.1", F.silu(vec))[:, None].chunk(2, dim=-1)
    img = lin(sd, "final_layer.linear", layer_norm(img) * (1 + scale) + shift)
    out = img.view(b, gh, gw, -1, ps, ps).permute(0, 3, 1, 4, 2, 5).reshape(b, -1, gh * ps, gw * ps)
    return out


# The random adapter maker lives with the tiny test models (fixtures/tiny_models.py).
from harness import random_adapter_sd  # noqa: E402,F401
