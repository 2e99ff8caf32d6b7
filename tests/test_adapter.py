"""The adapter on a real ComfyUI FLUX: parity with the independent reference, invariants."""

import harness
import pytest
import reference
import torch

CFG = harness.TINY
N_BLOCKS = CFG["depth"] + CFG["depth_single_blocks"]


def rel_err(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def inputs(batch, seed=3, tokens=8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 16, 8, 8, generator=g)
    ctx = torch.randn(batch, tokens, CFG["context_in_dim"], generator=g)
    y = torch.randn(batch, CFG["vec_in_dim"], generator=g)
    t = torch.full((batch,), 0.7)
    guidance = torch.full((batch,), 3.0)
    return x, t, ctx, y, guidance


def apply(model, adapter_path, blur, bokeh_scale=1.0, lora_scale=1.0):
    nodes_mod = harness.pack_module("nodes.adapter")
    loaded = nodes_mod.BokehAdapterLoader.execute(adapter_path.name).result[0]
    return nodes_mod.BokehApplyAdapter.execute(model, loaded, blur, bokeh_scale, lora_scale).result[0][0]


@pytest.fixture(scope="module")
def adapter_sd():
    return reference.random_adapter_sd(CFG["hidden_size"], range(N_BLOCKS), seed=11)


@pytest.fixture(scope="module")
def adapter_path(pack, adapter_sd, tmp_path_factory):
    return harness.write_adapter(tmp_path_factory.mktemp("bokeh_models"), adapter_sd)


@pytest.fixture(scope="module")
def base_model(pack):
    return harness.tiny_flux(seed=5)


def host_rms_eps(model):
    """The eps of the host's FLUX QK norm, for the reference. torch.nn.RMSNorm (ComfyUI 0.14 on)
    carries it as ``.eps`` (None: torch's default for the dtype); FLUX's own RMSNorm (up to 0.13)
    has no such attribute and uses 1e-6 (comfy/ldm/flux/layers.py, RMSNorm.forward)."""
    query_norm = model.model.diffusion_model.double_blocks[0].img_attn.norm.query_norm
    return getattr(query_norm, "eps", reference.EPS)


def reference_out(model, adapter_sd, args, k_inputs, **kw):
    sd = model.model.diffusion_model.state_dict()
    adapter = reference.Adapter(adapter_sd, **kw) if adapter_sd is not None else None
    return reference.forward(sd, CFG, *args, adapter=adapter, k_inputs=k_inputs, rms_eps=host_rms_eps(model))


def test_one_k_matches_reference(base_model, adapter_sd, adapter_path):
    patched = apply(base_model, adapter_path, 12.0)
    args = inputs(2)
    out = harness.diffusion_forward(patched, *args)
    ref = reference_out(base_model, adapter_sd, args, [12 / 30] * 2)
    assert rel_err(out, ref) <= 1e-5
    # and the adapter does something: the unpatched model differs clearly
    plain = harness.diffusion_forward(base_model, *args)
    assert rel_err(plain, ref) > 1e-3


def test_scales_match_reference(base_model, adapter_sd, adapter_path):
    patched = apply(base_model, adapter_path, 4.0, bokeh_scale=0.5, lora_scale=1.5)
    args = inputs(1)
    out = harness.diffusion_forward(patched, *args)
    ref = reference_out(base_model, adapter_sd, args, [4 / 30], bokeh_scale=0.5, lora_scale=1.5)
    assert rel_err(out, ref) <= 1e-5


def test_several_k_in_one_batch_match_reference(base_model, adapter_sd, adapter_path):
    patch = harness.pack_module("attention.patch")
    ks = [0.0, 12.0, 28.0]
    patched = patch.rebind(apply(base_model, adapter_path, 5.0), k_values=ks)
    args = inputs(3)
    out = harness.diffusion_forward(patched, *args)
    ref = reference_out(base_model, adapter_sd, args, [k / 30 for k in ks])
    assert rel_err(out, ref) <= 1e-5
    # each row equals that row run alone with its own K
    for r, k in enumerate(ks):
        alone = harness.diffusion_forward(apply(base_model, adapter_path, k), *(a[r : r + 1] for a in args))
        assert rel_err(out[r : r + 1], alone) <= 1e-5


def test_cfg_negative_chunk_gets_uncond_input(base_model, adapter_sd, adapter_path):
    patched = apply(base_model, adapter_path, 18.0)
    args = inputs(4)  # chunks [negative (2 rows), positive (2 rows)], the order CFG > 1 used
    out = harness.diffusion_forward(patched, *args, cond_or_uncond=(1, 0))
    ref = reference_out(base_model, adapter_sd, args, [-1.0, -1.0, 18 / 30, 18 / 30])
    assert rel_err(out, ref) <= 1e-5


def test_zero_adapter_changes_nothing(pack, base_model, adapter_sd, tmp_path):
    zero = {k: torch.zeros_like(v) for k, v in adapter_sd.items()}
    path = harness.write_adapter(tmp_path, zero, name="zero.safetensors")
    args = inputs(2)
    plain = harness.diffusion_forward(base_model, *args)
    patched = harness.diffusion_forward(apply(base_model, path, 20.0), *args, cond_or_uncond=(0,))
    assert torch.equal(plain, patched)


def test_input_model_untouched(base_model, adapter_path):
    args = inputs(1)
    before = harness.diffusion_forward(base_model, *args)
    patches = dict(base_model.object_patches)
    options_keys = set(base_model.model_options.get("transformer_options", {}))
    additional = dict(base_model.additional_models)
    patched = apply(base_model, adapter_path, 25.0)
    harness.diffusion_forward(patched, *args)
    assert base_model.object_patches == patches
    assert set(base_model.model_options.get("transformer_options", {})) == options_keys
    assert base_model.additional_models == additional
    assert torch.equal(harness.diffusion_forward(base_model, *args), before)


def test_clone_shares_adapter_weights(base_model, adapter_path):
    patch = harness.pack_module("attention.patch")
    patched = apply(base_model, adapter_path, 8.0)
    clone = patched.clone()
    a = patch.current_binding(patched)
    b = patch.current_binding(clone)
    assert a is b
    ptrs = {p.data_ptr() for p in a.adapter.parameters()}
    (adapter_patcher,) = clone.additional_models[patch.ADDITIONAL_MODELS_KEY]
    assert {p.data_ptr() for p in adapter_patcher.model.parameters()} == ptrs
    norm = clone.object_patches["diffusion_model.double_blocks.0.img_attn.norm"]
    assert norm.to_q.down.weight.data_ptr() in ptrs
    # the norm wrapper keeps the host's parameter names (LoRA keys, model management):
    # query_norm.scale up to ComfyUI 0.13, query_norm.weight (torch.nn.RMSNorm) from 0.14 on
    host_norm = base_model.get_model_object("diffusion_model.double_blocks.0.img_attn.norm")
    assert {n for n, _ in norm.named_parameters()} == {n for n, _ in host_norm.named_parameters()}
    assert {n.rsplit(".", 1)[0] for n, _ in norm.named_parameters()} == {"query_norm", "key_norm"}


def test_applying_twice_replaces(base_model, adapter_sd, adapter_path, tmp_path, caplog):
    other = reference.random_adapter_sd(CFG["hidden_size"], [0, 3], seed=99)
    other_path = harness.write_adapter(tmp_path, other, name="other.safetensors")
    once = apply(base_model, other_path, 3.0)
    with caplog.at_level("INFO"):
        twice = apply(once, adapter_path, 12.0)
    assert "replacing" in caplog.text
    args = inputs(1)
    out = harness.diffusion_forward(twice, *args)
    ref = reference_out(base_model, adapter_sd, args, [12 / 30])
    assert rel_err(out, ref) <= 1e-5


def test_previous_override_is_called(base_model, adapter_sd, adapter_path):
    calls = []

    def other_pack_override(func, *args, **kwargs):
        calls.append(1)
        return func(*args, **kwargs)

    m = base_model.clone()
    m.model_options["transformer_options"]["optimized_attention_override"] = other_pack_override
    patched = apply(m, adapter_path, 12.0)
    args = inputs(1)
    out = harness.diffusion_forward(patched, *args)
    assert len(calls) == N_BLOCKS
    ref = reference_out(base_model, adapter_sd, args, [12 / 30])
    assert rel_err(out, ref) <= 1e-5
    # re-applying keeps the other pack's override, not our old one
    again = apply(patched, adapter_path, 3.0)
    calls.clear()
    harness.diffusion_forward(again, *args)
    assert len(calls) == N_BLOCKS


def test_partial_blocks_and_no_qk(pack, base_model, tmp_path):
    asd = reference.random_adapter_sd(CFG["hidden_size"], [1, 2], seed=4, qk=False)
    path = harness.write_adapter(tmp_path, asd, name="partial.safetensors")
    patched = apply(base_model, path, 20.0)
    args = inputs(1)
    out = harness.diffusion_forward(patched, *args)
    ref = reference_out(base_model, asd, args, [20 / 30])
    assert rel_err(out, ref) <= 1e-5


def test_alpha_from_config(pack, base_model, tmp_path):
    asd = reference.random_adapter_sd(CFG["hidden_size"], range(N_BLOCKS), rank=4, seed=8)
    path = harness.write_adapter(tmp_path, asd, name="alpha_config.safetensors", config={"lora_alpha": 2, "lora_rank": 4})
    patched = apply(base_model, path, 9.0)
    args = inputs(1)
    ref = reference_out(base_model, asd, args, [9 / 30], alpha=2)
    assert rel_err(harness.diffusion_forward(patched, *args), ref) <= 1e-5


def test_ksampler_graph_with_adapter(pack, adapter_path):
    prompt = harness.tiny_graph(adapter_path.name, blur=15.0, steps=3, cfg=2.0)
    result = harness.run_prompt(prompt)
    assert result.ok, result.errors
    with_adapter = result.outputs["sample"][0][0]["samples"]
    prompt["sample"]["inputs"]["model"] = ["model", 0]
    plain = harness.run_prompt(prompt).outputs["sample"][0][0]["samples"]
    assert rel_err(with_adapter, plain) > 1e-3


def test_bias_computed_once_per_run(base_model, adapter_path):
    import nodes

    patch = harness.pack_module("attention.patch")
    patched = apply(base_model, adapter_path, 7.0)
    adapter = patch.current_binding(patched).adapter
    calls = []
    original = adapter.bokeh_biases
    adapter.bokeh_biases = lambda inputs: calls.append(1) or original(inputs)
    try:
        cond = harness.flux_conditioning(1)
        nodes.common_ksampler(patched, 3, 5, 2.0, "euler", "simple", cond, harness.flux_conditioning(2),
                              {"samples": torch.zeros(1, 16, 8, 8)})
    finally:
        del adapter.bokeh_biases
    assert len(calls) == 1  # 5 steps x 2 chunks x 4 blocks, one computation


def test_each_sampling_run_starts_afresh(pack, adapter_sd, tmp_path):
    """What a binding keeps between model calls (the bias cache, the warnings logged) lives for one
    sampling run: the OUTER_SAMPLE wrapper clears it when a run starts and when it ends (as core
    EasyCache does). Two runs of one patched model through the real sampler, the adapter's bias
    weights changed in place between them, run 1's biases put back into the cache and a warning
    marked as logged: run 2 starts with neither and equals a fresh Apply's run bit for bit (same
    shapes, same process); a clone without the wrapper reuses the stale biases and differs."""
    import comfy.patcher_extension as ext
    import nodes

    patch = harness.pack_module("attention.patch")
    path = harness.write_adapter(tmp_path, adapter_sd, name="per_run.safetensors")  # its own weights, changed below
    model = harness.tiny_flux(seed=5)
    patched = apply(model, path, 14.0)
    binding = patch.current_binding(patched)
    seen = []  # (bias cache, warnings) as each run starts, and the cache as it ended

    def observe(executor, *args, **kwargs):  # SAMPLER_SAMPLE: inside the OUTER_SAMPLE wrapper
        seen.append(("start", dict(binding._bias_cache), set(binding._warned)))
        out = executor(*args, **kwargs)
        seen.append(("end", dict(binding._bias_cache), set(binding._warned)))
        return out

    def run(m):
        m = m.clone()
        m.add_wrapper_with_key(ext.WrappersMP.SAMPLER_SAMPLE, "test_observe", observe)
        return nodes.common_ksampler(m, 3, 3, 2.0, "euler", "simple", harness.flux_conditioning(1),
                                     harness.flux_conditioning(2), {"samples": torch.zeros(1, 16, 8, 8)})[0]["samples"]

    run(patched)
    assert seen[0][1] == {} and len(seen[1][1]) == 1  # run 1 filled the cache (one K set) ...
    assert binding._bias_cache == {} and binding._warned == set()  # ... and left nothing behind
    stale = seen[1][1]
    with torch.no_grad():
        for name, p in binding.adapter.named_parameters():
            if "to_v_bokeh.up" in name:  # the bias pair's product changes sign
                p.mul_(-1.0)
    binding._bias_cache.update(stale)  # what the cache held after run 1, before the reset existed
    binding._warned.add("photo-ref")
    seen.clear()
    second = run(patched)
    assert seen[0][1] == {} and seen[0][2] == set()  # cleared at the start of the run
    fresh = run(apply(model, path, 14.0))  # a new binding of the same (changed) weights
    assert torch.equal(second, fresh)
    # the stale state would have been used: without the wrapper the old biases give other latents
    unreset = patched.clone()
    unreset.remove_wrappers_with_key(ext.WrappersMP.OUTER_SAMPLE, patch.WRAPPER_KEY)
    binding._bias_cache.update(stale)
    assert rel_err(run(unreset), fresh) > 1e-3


def test_adapter_follows_model_dtype(pack, adapter_sd, adapter_path):
    patch = harness.pack_module("attention.patch")
    model = harness.tiny_flux(seed=5, dtype=torch.bfloat16)
    loaded = harness.pack_module("nodes.adapter").BokehAdapterLoader.execute(adapter_path.name).result[0]
    patched = apply(model, adapter_path, 12.0)
    adapter = patch.current_binding(patched).adapter
    assert {p.dtype for p in adapter.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in loaded.module.parameters()} == {torch.float32}  # the loaded file is untouched
    x, t, ctx, y, g = inputs(1)
    out = harness.diffusion_forward(patched, x.bfloat16(), t, ctx.bfloat16(), y.bfloat16(), g)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    ref = reference_out(harness.tiny_flux(seed=5), adapter_sd, (x, t, ctx, y, g), [12 / 30])
    assert rel_err(out.float(), ref) < 0.1  # bf16 end to end vs float32 reference


def test_lowrank_update_fast_and_general_paths_agree(pack):
    """add_lowrank's in-place GEMM (on the host's fresh q/k views) and its general path (einops
    head merge/split, any layout) compute the spec's q + s * up(down(q)) on the flat projection."""
    bokeh = harness.pack_module("attention.bokeh")
    g = torch.Generator().manual_seed(4)
    pair = bokeh.LowRank(64, 64, 4).requires_grad_(False)  # frozen as loaded; training takes the general path
    with torch.no_grad():
        pair.down.weight.copy_(torch.randn(4, 64, generator=g))
        pair.up.weight.copy_(torch.randn(64, 4, generator=g))
    flat = torch.randn(2, 10, 64, generator=g)
    expected = (flat + 0.7 * pair.up(pair.down(flat))).view(2, 10, 2, 32).transpose(1, 2)
    view = flat.clone().view(2, 10, 2, 32).transpose(1, 2)  # what the FLUX block hands the norm
    fast = bokeh.add_lowrank(view, pair, 0.7)
    assert fast.data_ptr() == view.data_ptr()  # updated in place
    general = bokeh.add_lowrank(flat.view(2, 10, 2, 32).transpose(1, 2).contiguous(), pair, 0.7)
    assert torch.allclose(fast, expected, atol=1e-5) and torch.allclose(general, expected, atol=1e-5)
