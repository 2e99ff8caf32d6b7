"""The trainer's fidelity to the authors' recipe (spec bokeh-training.md 1.5-1.7), on tiny models:
the I2I captions (their four templates, the keep probability), VAE latents drawn from the
posterior, exact I2I / T2I counts per epoch, and one AdamW step against the update formula."""

import math

import harness
import pytest
import torch

SIZE = 32

# Spec 1.5 step 9e: the authors' four I2I templates (BokehDepth train_flux_I2I.py:1362-1379), K to 2 decimals.
AUTHORS = (
    "Set dof_cond = 12.35 (stronger background defocus), no changes to composition, lighting, or colors.",
    "Increase dof_cond to 12.35 to enhance background blur; preserve subject sharpness and keep composition, lighting, "
    "colors unchanged.",
    "Apply dof_cond = 12.35 for stronger bokeh; keep the main subject crisp, do not alter composition, lighting, or "
    "color tone.",
    "Use dof_cond = 12.35 to intensify background defocus; maintain original framing, lighting, and color fidelity.",
)
# bokehdepth-photo.md 2: the prompt the photo adapter is sampled with (option i2i_prompts="inference").
INFERENCE = ("Set dof_cond = 12.35 (stronger background defocus); preserve subject sharpness; keep composition, "
             "lighting, and colors unchanged.")


def scenes(mods, n, sharp=True, k=6.0, prefix="s"):
    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(i)
        depth = torch.full((1, SIZE, SIZE), 20.0)
        depth[:, 8:24, 8:24] = 1.0
        out.append(mods.data.Sample(name=f"{prefix}{i}", image=torch.rand(3, SIZE, SIZE, generator=g),
                                    depth=depth if sharp else None, mask=(depth < 5).float() if sharp else None,
                                    captions=("a box",), sharp=sharp, k=k + i))
    return out


def recipe(mods, **changes):
    return mods.recipe.Recipe(**{**dict(flavour="photo", steps=4, rank=2, context=8, embed_hidden=4, k_max=4.0, k_levels=3,
                                        warmup=1, lr=1e-2, seed=5, gradient_checkpointing=False), **changes})


def trainer(mods, samples=None, **changes):
    import tiny_nodes

    return mods.trainer.Trainer(harness.tiny_flux(seed=2), tiny_nodes.BokehTestTinyVAE().build(0)[0],
                                tiny_nodes.TinyTextEncoder("tiny"), samples or scenes(mods, 3), recipe(mods, **changes), base="tiny")


def within(count, n, p, sds=5.0):
    """A binomial count within ``sds`` standard deviations of n p (a false failure ~ 6e-7 at 5)."""
    return abs(count - n * p) <= sds * math.sqrt(n * p * (1 - p))


# -- 1. I2I captions -------------------------------------------------------------------------------
def test_i2i_captions_are_the_authors_templates(mods):
    """Kept with probability 0.35 when non-empty; otherwise one of the four templates, uniformly,
    with K to two decimals; an empty (or blank) caption always takes a template."""
    maker = mods.batches.BatchMaker(scenes(mods, 1), None, None, None, recipe(mods))
    g = torch.Generator().manual_seed(0)
    n = 20000
    got = [maker.i2i_caption("a red ball", 12.3456, g) for _ in range(n)]
    assert set(got) == {"a red ball", *AUTHORS}  # the exact texts
    assert within(got.count("a red ball"), n, 0.35)
    for text in AUTHORS:
        assert within(got.count(text), n, 0.65 / 4), (text, got.count(text))
    for blank in ("", "  "):
        empty = [maker.i2i_caption(blank, 12.3456, g) for _ in range(4000)]
        assert set(empty) == set(AUTHORS) and all(within(empty.count(t), 4000, 0.25) for t in AUTHORS)
    # every draw comes from the generator it is given: the same seed, the same captions
    same = [torch.Generator().manual_seed(4) for _ in range(2)]
    assert [maker.i2i_caption("x", 2.0, same[0]) for _ in range(50)] == [maker.i2i_caption("x", 2.0, same[1]) for _ in range(50)]
    inference = mods.batches.BatchMaker(scenes(mods, 1), None, None, None, recipe(mods, i2i_prompts="inference"))
    assert {inference.i2i_caption("", 12.3456, g) for _ in range(50)} == {INFERENCE}
    with pytest.raises(mods.errors.BokehInputError, match="i2i_prompts"):
        recipe(mods, i2i_prompts="mine").check()


def test_i2i_batches_encode_the_templates(mods):
    """An I2I batch's captions (all dropped here) are the templates with each row's K."""
    t = trainer(mods, caption_dropout=1.0)
    batch = t.maker.make(torch.Generator().manual_seed(1), kind="i2i")
    ks = [f"{float(k) * 4.0:.2f}" for k in batch.k_inputs]  # K / k_max, K on the levels 1, 2.5, 4
    encoded = set(t.maker._text)
    assert encoded and all(any(text == a.replace("12.35", k) for a in AUTHORS for k in ks) for text in encoded)
    for row, k in enumerate(ks):  # each row's encoding is one of its K's templates
        options = [t.maker.text(a.replace("12.35", k))[0] for a in AUTHORS]
        assert any(torch.equal(batch.context[row, :len(o)], o) for o in options)


# -- 2. VAE latents ---------------------------------------------------------------------------------
def test_vae_latents_sample_the_posterior(mods):
    """The default draws z = mean + std e from the posterior (e from the trainer's generator),
    then the latent format; the "mean" option is the old path bit for bit. The reference
    posterior is computed here from the first-stage model's encoder (moments = quant_conv(
    encoder(2x - 1)), std = exp(logvar / 2)): the same float32 kernels on the CPU, so it agrees
    within a few float32 roundings (1e-6 relative)."""
    t = trainer(mods)
    maker, vae, model = t.maker, t.maker.vae, t.maker.model
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():  # as the batch maker encodes (the tiny VAE may hold inference tensors from an earlier graph)
        old = model.model.process_latent_in(vae.encode(images.movedim(1, -1))).float().cpu()  # the previous code's latents
    mean_maker = trainer(mods, vae_latents="mean").maker
    assert torch.equal(mean_maker.latents(images), old)
    assert torch.equal(mean_maker.latents(images, torch.Generator().manual_seed(1)), old)  # the mean draws nothing
    assert torch.equal(maker.latents(images), old)  # no generator: the posterior's mean

    fsm = vae.first_stage_model
    with torch.no_grad():
        moments = fsm.quant_conv(fsm.encoder(images * 2 - 1))
    mean, logvar = moments.chunk(2, dim=1)
    std = torch.exp(0.5 * logvar.clamp(-30, 20))
    assert torch.allclose(maker.encode(images)[0], mean, rtol=1e-6, atol=1e-6)
    assert torch.allclose(maker.encode(images)[1], std, rtol=1e-6, atol=1e-6)

    sampled = maker.latents(images, torch.Generator().manual_seed(7))
    e = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
    fmt = model.model.latent_format
    expected = (mean + std * e - fmt.shift_factor) * fmt.scale_factor
    assert not torch.equal(sampled, old)
    assert torch.allclose(sampled, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(maker.latents(images, torch.Generator().manual_seed(7)), sampled)  # same seed, same latents

    # in batches: a fresh draw each time a photo is used, reproducible from the trainer's seed
    a = trainer(mods).maker.make(torch.Generator().manual_seed(2), kind="i2i")
    b = trainer(mods).maker.make(torch.Generator().manual_seed(2), kind="i2i")
    assert torch.equal(a.latents, b.latents) and torch.equal(a.reference, b.reference)
    c = trainer(mods, vae_latents="mean").maker.make(torch.Generator().manual_seed(2), kind="i2i")
    assert not torch.equal(a.reference, c.reference)
    g = torch.Generator().manual_seed(0)
    photo = maker.i2i[0]
    assert not torch.equal(maker.photo_latent(photo, g), maker.photo_latent(photo, g))


def test_vae_without_a_gaussian_posterior_is_refused(mods):
    t = trainer(mods)
    fsm = t.maker.vae.first_stage_model
    regulariser = fsm.regularization
    fsm.regularization = torch.nn.Identity()
    try:
        with pytest.raises(mods.errors.BokehInputError, match="vae_latents=mean"):
            t.maker.encode(torch.rand(1, 3, SIZE, SIZE))
    finally:
        fsm.regularization = regulariser


# -- 3. I2I / T2I per epoch -------------------------------------------------------------------------
def test_i2i_steps_per_epoch_are_exact(mods):
    """Spec 1.7: per epoch exactly int(n (1 - i2i_ratio)) T2I steps, the rest I2I, in random order.
    n (1.6, one process): max(ceil(real / batch), sharp photos) + ceil(I2I samples / batch)."""
    samples = scenes(mods, 5) + scenes(mods, 6, sharp=False, prefix="real")
    r = recipe(mods, batch_size=2, i2i_ratio=0.3)
    maker = mods.batches.BatchMaker(samples, None, None, None, r)
    n = max(math.ceil(6 / 2), 5) + math.ceil(5 / 2)
    assert maker.epoch_steps() == n == 8
    g = torch.Generator().manual_seed(0)
    epochs = [[maker.kind(g, step) for step in range(e * n, (e + 1) * n)] for e in range(30)]
    t2i = int(n * (1 - 0.3))
    assert all(sum(k == "i2i" for k in kinds) == n - t2i for kinds in epochs)
    assert len({tuple(k == "i2i" for k in kinds) for kinds in epochs}) > 5  # the order is shuffled per epoch
    assert {k for kinds in epochs for k in kinds} == {"i2i", "real", "group"}
    # the option: one draw per step (counts vary between epochs)
    per_step = mods.batches.BatchMaker(samples, None, None, None, recipe(mods, batch_size=2, i2i_ratio=0.3, i2i_mix="step"))
    counts = {sum(per_step.kind(g, s) == "i2i" for s in range(e * n, (e + 1) * n)) for e in range(30)}
    assert len(counts) > 1
    # text flavour: no I2I steps at all
    text = mods.batches.BatchMaker(samples, None, None, None, recipe(mods, flavour="text", batch_size=2))
    assert text.epoch_steps() == 5 and all(text.kind(g, s) != "i2i" for s in range(20))


def test_trainer_runs_the_epoch_schedule(mods):
    """The trainer's own steps: 2 sharp photos, batch 2 -> an epoch of 2 + 1 = 3 steps, of which
    int(3 * 0.5) = 1 is T2I and 2 are I2I, in every epoch."""
    t = trainer(mods, samples=scenes(mods, 2), batch_size=2, steps=9)
    assert t.maker.epoch_steps() == 3
    t.run()
    epochs = [t.kinds[i:i + 3] for i in range(0, 9, 3)]
    assert all(e.count("i2i") == 2 for e in epochs), t.kinds


# -- 4. one AdamW step against the formula ----------------------------------------------------------
U = 2.0 ** -24  # float32 unit roundoff


def test_adamw_steps_match_the_formula(mods):
    """Four optimiser steps of the trainer (warm-up 2, 5 steps: LR multipliers 0, 0.5, 1, 0.75)
    against AdamW written here from its definition (decoupled weight decay, Loshchilov & Hutter;
    eps added to the bias-corrected root, as torch and the authors' trainer use it) in float64,
    with the spec's settings (1.6: weight decay 0.01, betas 0.9 / 0.999, eps 1e-8) and the cosine
    of diffusers (k / warm-up, then 0.5 (1 + cos(pi progress))), for every trainable tensor.

    Tolerance, per element: the trainer computes in float32, each operation rounding by at most
    u = 2^-24 relative. The decay and the final subtraction: 2 u (|p| + |p_new|). The first moment
    m = b1 m + (1 - b1) g can cancel, so its error is bounded absolutely, accumulated over steps:
    e_m <- b1 e_m + 4 u (b1 |m| + (1 - b1) |g|). The second moment has positive terms only:
    relative error 4 u t after t steps; the root, the bias corrections and eps add 4 u. The update
    lr / c1 m / (sqrt(v / c2) + eps) then errs by |update| (8 + 2 t) u + lr / c1 e_m / denominator.
    Twice that bound is allowed; a reference with another weight decay must fail it."""
    t = trainer(mods, steps=5, warmup=2, lr=1e-2)
    names = {id(p): n for n, p in t.adapter.named_parameters() if p.requires_grad}
    groups = t.optimizer.param_groups
    assert len(groups) == 1 and {id(p) for p in groups[0]["params"]} == set(names)  # every trainable tensor, one group
    seen = []  # before each optimiser step: the group's LR, each tensor and its gradient

    def before(opt, args, kwargs):
        group = opt.param_groups[0]
        seen.append((group["lr"], {id(p): (p.detach().clone(), None if p.grad is None else p.grad.detach().clone())
                                   for p in group["params"]}))

    t.optimizer.register_step_pre_hook(before)
    b1, b2, eps, wd, lr0 = 0.9, 0.999, 1e-8, 0.01, 1e-2
    state = {i: [torch.zeros((), dtype=torch.float64)] * 3 for i in names}  # m, v, e_m
    params = dict(t.adapter.named_parameters())
    no_grad = set()
    for step in range(4):
        t.train_step()
        lr_seen, tensors = seen[step]
        mult = step / 2 if step < 2 else 0.5 * (1 + math.cos(math.pi * (step - 2) / (5 - 2)))
        lr = lr0 * mult
        assert lr_seen == pytest.approx(lr, rel=1e-12, abs=0)
        tc = step + 1
        c1, c2 = 1 - b1 ** tc, 1 - b2 ** tc
        worst, wrong_wd = 0.0, False
        for i, name in names.items():
            p32, g32 = tensors[i]
            if g32 is None:  # no gradient (to_k_dof, here to_k_bokeh: spec 1.12-12): AdamW leaves the tensor and its moments alone
                no_grad.add(name)
                assert torch.equal(params[name].detach(), p32), name
                continue
            p, g = p32.double(), g32.double()
            m, v, e_m = state[i]
            e_m = b1 * e_m + 4 * U * (b1 * m.abs() + (1 - b1) * g.abs())
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            state[i] = [m, v, e_m]
            denom = torch.sqrt(v / c2) + eps
            update = lr / c1 * m / denom
            ref = p * (1 - lr * wd) - update
            tol = 2 * (2 * U * (p.abs() + ref.abs()) + update.abs() * (8 + 2 * tc) * U + lr / c1 * e_m / denom)
            got = params[name].detach().double()
            if lr == 0:
                assert torch.equal(params[name].detach(), p32), name  # warm-up's first step moves nothing
            err = (got - ref).abs()
            assert torch.all(err <= tol), (step, name, float((err - tol).max()))
            worst = max(worst, float((err / tol.clamp_min(1e-300)).max()))
            other = p * (1 - lr * 0.0) - update  # weight decay 0 instead of 0.01
            wrong_wd |= bool(torch.any((got - other).abs() > tol))
        assert lr == 0 or wrong_wd  # the tolerance is tight enough to see the weight decay
    print(f"\nAdamW parity: worst error / tolerance {worst:.3g}; tensors without a gradient: {sorted(no_grad)[:4]}... ({len(no_grad)})")
    assert no_grad and all("to_k_bokeh" in n for n in no_grad), sorted(no_grad)  # the pack's name of to_k_dof
    changed = [n for n, p in params.items() if p.requires_grad and not torch.equal(p.detach(), seen[0][1][id(p)][0])]
    assert set(changed) == set(names.values()) - no_grad  # 4 steps: every tensor with a gradient has moved


# -- 5. settings a client can send -----------------------------------------------------------------
@pytest.mark.parametrize("values, found", [
    ({"context": 10**9}, "context 1000000000 (at most 4096)"),  # memory grows with it
    ({"k_levels": 100_000}, "k_levels 100000 (at most 256)"),  # renders made and encoded per level
    ({"group_size": 1000}, "group_size 1000 (at most 16)"),
    ({"steps": 10**12}, "steps 1000000000000 (at most 1000000)"),
    ({"context": "wide"}, "context 'wide' (expected a whole number)"),
    ({"noise_offset": float("nan")}, "noise_offset nan (expected a number)"),
    ({"max_grad_norm": "1"}, "max_grad_norm '1' (expected a number or null)"),
    ({"paired_targets": 1}, "paired_targets 1 (expected true or false)"),
])
def test_settings_out_of_bounds_or_of_the_wrong_type_are_one_line(mods, values, found):
    """Recipe settings also come from the node's Settings text, which any client of a server can
    send: a size that would take unbounded memory or work, or a value of the wrong type, is refused
    in one line before anything is built."""
    with pytest.raises(mods.errors.BokehInputError, match="Training settings not usable") as caught:
        mods.recipe.Recipe.from_dict(values)
    assert found in str(caught.value) and "\n" not in str(caught.value)
    assert mods.recipe.Recipe.from_dict({"context": 4096, "k_levels": 256, "max_grad_norm": None}).context == 4096
