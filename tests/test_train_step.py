"""One training step (training/step.py) on a real ComfyUI FLUX: loss and gradients against the
independent reference (tests/reference_train.py), the adapter at init equals the base model, and
gradient checkpointing changes nothing."""

import harness
import pytest
import reference_train
import torch
from test_adapter import CFG, N_BLOCKS, host_rms_eps, rel_err


@pytest.fixture(scope="module")
def base_model(pack):
    return harness.tiny_flux(seed=21)


def random_adapter(mods, seed=4):
    """An adapter of the training's own making with random (non-zero) up weights."""
    adapter = mods.io.new_adapter(CFG["hidden_size"], range(N_BLOCKS), rank=4, context=16, embed_hidden=8, seed=seed)
    sd = reference_train.reference.random_adapter_sd(CFG["hidden_size"], range(N_BLOCKS), seed=seed)
    adapter.load_state_dict(sd, strict=True)
    return adapter


def make_batch(mods, rows=4, size=(8, 8), seed=0, reference=False, swap=None, swap_blocks="single", tokens=6):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(rows, 16, *size, generator=g)
    # noise with the authors' offset term (spec 1.5 step 3), drawn here: the step draws nothing
    noise = torch.randn(rows, 16, *size, generator=g) + 0.05 * torch.randn(rows, 16, 1, 1, generator=g)
    return mods.step.Batch(
        latents=x0, noise=noise, sigmas=torch.rand(rows, generator=g) * 0.9 + 0.05,
        k_inputs=torch.tensor([0.3, -1.0, 1.0, 0.7][:rows]),
        context=torch.randn(rows, tokens, CFG["context_in_dim"], generator=g),
        pooled=torch.randn(rows, CFG["vec_in_dim"], generator=g), guidance=torch.ones(rows),
        reference=torch.randn(rows, 16, *size, generator=g) if reference else None,
        swap=None if swap is None else torch.tensor(swap), swap_blocks=swap_blocks)


def reference_loss_and_grads(model, adapter, batch):
    sd = reference_train.leaves(adapter.state_dict())
    swap = None if batch.swap is None else batch.swap.tolist()
    loss = reference_train.loss(
        model.model.diffusion_model.state_dict(), CFG, sd, batch.latents, batch.noise, batch.sigmas, batch.k_inputs,
        batch.context, batch.pooled, batch.guidance, ref=batch.reference, swap=swap, swap_blocks=batch.swap_blocks,
        rms_eps=host_rms_eps(model))
    loss.backward()
    return loss, {k: v.grad for k, v in sd.items()}


def pack_loss_and_grads(mods, model, adapter, batch, checkpointing=False):
    adapter.zero_grad(set_to_none=True)
    bound = mods.train_binding.bind_for_training(model, adapter)
    loss = mods.step.adapter_loss(bound, adapter, batch, gradient_checkpointing=checkpointing)
    loss.backward()
    return loss, {k: p.grad for k, p in adapter.named_parameters()}


LAYOUTS = {
    "photo": dict(reference=True),  # FLUX.1 Kontext: target tokens then reference tokens (1, r, c)
    "text": dict(),  # text-to-image, no reference
    "group-single": dict(swap=[2, 1, 2, 0]),  # a grounded synthetic group, swap in the single blocks (authors)
    "group-all": dict(swap=[1, 1, 1, 3], swap_blocks="all"),  # swap in every block (Bokeh Diffusion's inference)
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_loss_and_gradients_match_reference(mods, base_model, layout):
    adapter = random_adapter(mods)
    batch = make_batch(mods, size=(8, 12) if layout == "photo" else (8, 8), **LAYOUTS[layout])
    loss, grads = pack_loss_and_grads(mods, base_model, adapter, batch)
    want, want_grads = reference_loss_and_grads(base_model, adapter, batch)
    # float32 on both sides, different summation orders: 1e-5 relative (spec 4.4)
    assert rel_err(loss.detach(), want.detach()) <= 1e-5
    checked = 0
    for key, g in grads.items():
        if ".to_k_bokeh." in key:
            # softmax over one bokeh key is 1: to_k_bokeh/to_k_dof cannot change the loss (spec 1.12-12)
            assert g is None or float(g.abs().max()) < 1e-9, key
            continue
        assert g is not None and want_grads[key] is not None, key
        assert float(want_grads[key].norm()) > 0, key
        assert rel_err(g, want_grads[key]) <= 1e-5, (key, rel_err(g, want_grads[key]))
        checked += 1
    assert checked == 4 + 6 * N_BLOCKS  # the embedding (4) and q, k, v pairs (down, up) of every block


def test_swap_changes_the_loss(mods, base_model):
    """The grounding is not inert: the same batch without the swap gives another loss."""
    adapter = random_adapter(mods)
    swapped = pack_loss_and_grads(mods, base_model, adapter, make_batch(mods, swap=[2, 1, 2, 0]))[0]
    plain = make_batch(mods)
    plain.noise, plain.sigmas = plain.noise[[2, 1, 2, 0]], plain.sigmas[[2, 1, 2, 0]]
    assert rel_err(pack_loss_and_grads(mods, base_model, adapter, plain)[0].detach(), swapped.detach()) > 1e-4


@pytest.mark.parametrize("layout", ["photo", "text"])
def test_adapter_at_init_is_the_base_model(mods, base_model, layout):
    """up = 0 at init (spec 1.3): every q/k update and bokeh bias is exactly zero, so the prediction
    through the bound adapter equals the unpatched model's, bit for bit (same kernels, same shapes)."""
    adapter = mods.io.new_adapter(CFG["hidden_size"], range(N_BLOCKS), rank=4, context=16, embed_hidden=8, seed=9)
    batch = make_batch(mods, **LAYOUTS[layout])
    got = mods.step.predict(mods.train_binding.bind_for_training(base_model, adapter), adapter, batch)
    harness.load_for_inference(base_model)
    x_t, t, kwargs, _ = mods.step.model_inputs(base_model, batch)
    with torch.no_grad():
        want = base_model.model.diffusion_model(x_t, t, transformer_options={}, **kwargs)
    assert torch.equal(got.detach(), want)


def test_gradient_checkpointing_changes_nothing(mods, base_model):
    """Checkpointing reruns each block's forward during backward with the same kernels on the same
    shapes: the loss is bit-equal; the gradients are compared at 1e-6 relative, not bit-equal,
    because a recomputed block may keep different intermediates alive and a backend may pick
    another kernel for the second forward on other machines."""
    adapter = random_adapter(mods, seed=6)
    batch = make_batch(mods, swap=[0, 0, 3, 3], reference=True)
    off, grads_off = pack_loss_and_grads(mods, base_model, adapter, batch, checkpointing=False)
    grads_off = {k: None if g is None else g.clone() for k, g in grads_off.items()}
    on, grads_on = pack_loss_and_grads(mods, base_model, adapter, batch, checkpointing=True)
    assert torch.equal(on, off)
    # and it does checkpoint: far fewer tensors are kept for backward
    bound = mods.train_binding.bind_for_training(base_model, adapter)
    kept = {}
    for flag in (False, True):
        count = [0]

        def pack_hook(t, count=count):
            count[0] += 1
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack_hook, lambda t: t):
            mods.step.adapter_loss(bound, adapter, batch, gradient_checkpointing=flag)
        kept[flag] = count[0]
    assert kept[True] * 3 < kept[False], kept
    for key, g in grads_off.items():
        if g is None:
            assert grads_on[key] is None, key
        else:
            assert rel_err(grads_on[key], g) <= 1e-6, key


def test_bad_batches_are_refused(mods, base_model):
    adapter = random_adapter(mods)
    bound = mods.train_binding.bind_for_training(base_model, adapter)
    errors = harness.pack_module("attention.errors")
    with pytest.raises(errors.BokehInputError, match="swap indices"):
        mods.step.adapter_loss(bound, adapter, make_batch(mods, swap=[0, 1, 2, 9]))
    with pytest.raises(errors.BokehInputError, match="swap_blocks"):
        mods.step.adapter_loss(bound, adapter, make_batch(mods, swap=[0, 1, 2, 3], swap_blocks="double"))
    other = random_adapter(mods, seed=1)
    with pytest.raises(errors.BokehModelError, match="not bound"):
        mods.step.adapter_loss(bound, other, make_batch(mods))
