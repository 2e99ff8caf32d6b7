"""Grounded self-attention and the Pivot Batch node, on a real ComfyUI FLUX and sampler."""

import harness
import pytest
import reference
import torch
from test_adapter import CFG, N_BLOCKS, apply, host_rms_eps, inputs, rel_err

SCHEDULE = torch.tensor([1.0, 0.8, 0.5, 0.2, 0.0])  # 4 steps; 2 grounded: sigma > 0.5


@pytest.fixture(scope="module")
def adapter_sd():
    return reference.random_adapter_sd(CFG["hidden_size"], range(N_BLOCKS), seed=21)


@pytest.fixture(scope="module")
def adapter_path(pack, adapter_sd, tmp_path_factory):
    return harness.write_adapter(tmp_path_factory.mktemp("ground_models"), adapter_sd, name="ground.safetensors")


@pytest.fixture(scope="module")
def base_model(pack):
    return harness.tiny_flux(seed=6)


def grounded(mods, model, path, ks, pivot=0, steps=2, fraction=0.8):
    return mods.patch.rebind(apply(model, path, ks[0]), k_values=ks,
                               grounding=mods.binding.Grounding(pivot=pivot, fraction=fraction, steps=steps))


def ref(model, asd, args, k_inputs, ground):
    return reference.forward(model.model.diffusion_model.state_dict(), CFG, *args,
                             adapter=reference.Adapter(asd), k_inputs=k_inputs, ground=ground,
                             rms_eps=host_rms_eps(model))


def test_grounded_forward_matches_reference(mods, base_model, adapter_sd, adapter_path):
    ks = [15.0, 0.0, 28.0]
    model = grounded(mods, base_model, adapter_path, ks)
    args = inputs(3)  # sigma 0.7: inside the window (> 0.5)
    out = harness.diffusion_forward(model, *args, sample_sigmas=SCHEDULE)
    want = ref(base_model, adapter_sd, args, [k / 30 for k in ks], {0: 0, 1: 0, 2: 0})
    assert rel_err(out, want) <= 1e-5
    # grounding really changes the targets, and never the pivot
    ungrounded = ref(base_model, adapter_sd, args, [k / 30 for k in ks], {})
    assert rel_err(out[1:], ungrounded[1:]) > 1e-3
    assert rel_err(out[:1], ungrounded[:1]) <= 1e-5


def test_outside_window_is_ungrounded(mods, base_model, adapter_sd, adapter_path):
    ks = [15.0, 4.0]
    model = grounded(mods, base_model, adapter_path, ks)
    x, _, ctx, y, g = inputs(2)
    t = torch.full((2,), 0.5)  # exactly sigma_G: the first ungrounded step
    out = harness.diffusion_forward(model, x, t, ctx, y, g, sample_sigmas=SCHEDULE)
    assert rel_err(out, ref(base_model, adapter_sd, (x, t, ctx, y, g), [k / 30 for k in ks], {})) <= 1e-5


def test_cfg_negative_rows_not_grounded(mods, base_model, adapter_sd, adapter_path):
    ks = [12.0, 0.0, 28.0]
    model = grounded(mods, base_model, adapter_path, ks)
    args = inputs(6)  # chunks [negative x3, positive x3]
    out = harness.diffusion_forward(model, *args, cond_or_uncond=(1, 0), sample_sigmas=SCHEDULE)
    want = ref(base_model, adapter_sd, args, [-1.0] * 3 + [k / 30 for k in ks], {3: 3, 4: 3, 5: 3})
    assert rel_err(out, want) <= 1e-5
    # and in the other chunk order
    out = harness.diffusion_forward(model, *args, cond_or_uncond=(0, 1), sample_sigmas=SCHEDULE)
    want = ref(base_model, adapter_sd, args, [k / 30 for k in ks] + [-1.0] * 3, {0: 0, 1: 0, 2: 0})
    assert rel_err(out, want) <= 1e-5


def test_no_key_update_swaps_queries_only(mods, base_model, tmp_path):
    asd = reference.random_adapter_sd(CFG["hidden_size"], [0, 2, 3], seed=5, qk=False)
    path = harness.write_adapter(tmp_path, asd, name="noqk.safetensors")
    ks = [15.0, 2.0]
    model = grounded(mods, base_model, path, ks)
    args = inputs(2)
    out = harness.diffusion_forward(model, *args, sample_sigmas=SCHEDULE)
    assert rel_err(out, ref(base_model, asd, args, [k / 30 for k in ks], {0: 0, 1: 0})) <= 1e-5


# -- sampling through the host's KSampler function -------------------------------------------

def sample(model, latent, steps=4, cfg=1.0, seed=7, sampler="euler"):
    import nodes

    cond = harness.flux_conditioning(1)
    neg = harness.flux_conditioning(2)
    return nodes.common_ksampler(model, seed, steps, cfg, sampler, "simple", cond, neg, latent)[0]["samples"]


def empty_latent(rows=1):
    return {"samples": torch.zeros(rows, 16, 8, 8)}


def pivot_batch(mods, model, pivot, targets, grounding=0.8, steps=-1):
    out = mods.pivot.BokehPivotBatch.execute([model], [empty_latent()], [pivot], [targets], [grounding], None, [steps])
    return out.result


def test_batch_equals_reference_two_row_procedure(mods, base_model, adapter_path):
    targets = [0.0, 8.0, 28.0]
    model, latent, sweep = pivot_batch(mods, apply(base_model, adapter_path, 15.0), 15.0, "0, 8, 28")
    assert sweep.k_values == (15.0, 0.0, 8.0, 28.0) and latent["batch_index"] == [0] * 4
    big = sample(model, latent)
    for i, t in enumerate(targets):
        # the reference procedure: a 2-row batch [target, pivot], the pivot in row 1
        two = grounded(mods, base_model, adapter_path, [t, 15.0], pivot=1, steps=-1)
        pair = sample(two, {"samples": torch.zeros(2, 16, 8, 8), "batch_index": [0, 0]})
        assert rel_err(big[1 + i], pair[0]) <= 1e-4
        assert rel_err(big[0], pair[1]) <= 1e-4


def test_pivot_row_equals_pivot_alone(mods, base_model, adapter_path):
    model, latent, _ = pivot_batch(mods, apply(base_model, adapter_path, 15.0), 15.0, "0, 28")
    alone = sample(apply(base_model, adapter_path, 15.0), empty_latent())
    assert rel_err(sample(model, latent)[0], alone[0]) <= 1e-5


def test_all_rows_equal_when_k_equals_pivot(mods, base_model, adapter_path):
    model, latent, _ = pivot_batch(mods, apply(base_model, adapter_path, 15.0), 15.0, "15, 15")
    out = sample(model, latent)
    assert rel_err(out[1], out[0]) <= 1e-5 and rel_err(out[2], out[0]) <= 1e-5


def test_window_zero_gives_independent_rows_with_shared_noise(mods, base_model, adapter_path):
    model, latent, _ = pivot_batch(mods, apply(base_model, adapter_path, 15.0), 15.0, "0, 28", grounding=0.0)
    out = sample(model, latent)
    for row, k in ((1, 0.0), (2, 28.0)):
        alone = sample(apply(base_model, adapter_path, k), empty_latent())
        assert rel_err(out[row], alone[0]) <= 1e-5


def test_grounding_changes_targets_and_cfg_runs(mods, base_model, adapter_path):
    grounded_model, latent, _ = pivot_batch(mods, apply(base_model, adapter_path, 15.0), 15.0, "0, 28")
    free_model, _, _ = pivot_batch(mods, apply(base_model, adapter_path, 15.0), 15.0, "0, 28", grounding=0.0)
    a, b = sample(grounded_model, latent), sample(free_model, latent)
    assert rel_err(a[1:], b[1:]) > 1e-4
    # grounded targets sit closer to the pivot than free ones: the point of grounding
    assert (a[1:] - a[:1]).norm() < (b[1:] - b[:1]).norm()
    c = sample(grounded_model, latent, cfg=3.0)
    assert torch.isfinite(c).all() and rel_err(c[0], sample(apply(base_model, adapter_path, 15.0), empty_latent(), cfg=3.0)[0]) <= 1e-5


@pytest.mark.parametrize("sampler", ["heun", "dpm_2"])
def test_multi_evaluation_samplers(mods, base_model, adapter_path, sampler):
    model, latent, _ = pivot_batch(mods, apply(base_model, adapter_path, 15.0), 15.0, "4")
    out = sample(model, latent, sampler=sampler)
    alone = sample(apply(base_model, adapter_path, 15.0), empty_latent(), sampler=sampler)
    assert rel_err(out[0], alone[0]) <= 1e-5


def test_bad_pivot_batch_inputs(mods, base_model, adapter_path):
    patched = apply(base_model, adapter_path, 15.0)
    E = mods.errors
    run = mods.pivot.BokehPivotBatch.execute
    with pytest.raises(E.BokehInputError, match="exactly one"):
        run([patched], [empty_latent(2)], [15.0], ["0, 4"], [0.8])
    with pytest.raises(E.BokehInputError, match="empty"):
        run([patched], [empty_latent()], [15.0], [" , "], [0.8])
    with pytest.raises(E.BokehInputError, match="not a plain decimal number"):
        run([patched], [empty_latent()], [15.0], ["0, four"], [0.8])
    with pytest.raises(E.BokehInputError, match="more than 64"):
        run([patched], [empty_latent()], [15.0], [", ".join(["1"] * 65)], [0.8])
    with pytest.raises(E.BokehInputError):
        run([patched], [empty_latent()], [float("nan")], ["0"], [0.8])
    with pytest.raises(E.BokehModelError, match="no Bokeh adapter"):
        run([base_model], [empty_latent()], [15.0], ["0"], [0.8])
    # a model that carries a 3-row sweep, sampled with a 2-row latent
    model, _, _ = pivot_batch(mods, patched, 15.0, "0, 4")
    with pytest.raises(E.BokehInputError, match="3 blur levels"):
        sample(model, {"samples": torch.zeros(2, 16, 8, 8)})


def test_float_list_targets(mods, base_model, adapter_path):
    out = mods.pivot.BokehPivotBatch.execute([apply(base_model, adapter_path, 15.0)], [empty_latent()], [12.0], ["ignored"], [0.8], [0.0, 6.0, 30.0], [-1])
    assert out.result[2].k_values == (12.0, 0.0, 6.0, 30.0)
    assert out.result[1]["samples"].shape[0] == 4
