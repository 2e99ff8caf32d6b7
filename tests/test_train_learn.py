"""The trainer learns to use K (spec bokeh-training.md 4.6, issue 23 item 5), on the tiny random
FLUX of the tests.

A bounded CPU run of the whole trainer (real-photo batches and grounded render groups) on
synthetic scenes, a sharp subject before a tiled background with depth, rendered by the pack's
renderer (tests/learn_scenes.py says why these scenes and the linear latent encoder). Afterwards,
on new scenes, the held-out loss with each row's true K is clearly below the loss with the rows'
K shuffled (the adapter uses K), where the untrained adapter gives the same loss bit for bit;
the held-out loss falls; the trained file loads and samples through the ordinary nodes.

What the tiny random base cannot show: blur of a texture that differs per scene. There the
effect of K depends on the scene, and only a base that can denoise applies it; with random
textures the gap stays at noise level (bench/bench_learn.py measures both).
"""

import time

import harness
import learn_scenes as ls
import pytest
import tiny_nodes
import torch

STEPS = 400  # measured (bench/bench_learn.py): gap 7.9 to 9.1 % of the loss over 3 seeds, 5.2 to 5.7 standard errors


@pytest.fixture(scope="module")
def trained(mods, tmp_path_factory):
    model = harness.tiny_flux(seed=0)  # the weights of the ordinary test graph's model (BokehTestTinyFlux seed 0)
    encoder, clip = ls.PatchEncoder(), tiny_nodes.TinyTextEncoder("tiny")
    recipe = ls.recipe(mods, STEPS, seed=3)
    trainer = mods.trainer.Trainer(model, encoder, clip, ls.samples(mods, range(6)), recipe, base="tiny test FLUX")
    batches = ls.held_out(mods, mods.trainer.Trainer, model, encoder, clip, recipe)  # new scenes
    before = ls.losses(mods, trainer.model, trainer.adapter, batches)
    start = time.monotonic()
    folder = tmp_path_factory.mktemp("trained_models")
    path = trainer.run(out=folder / "bokeh_trained_test.safetensors")
    seconds = time.monotonic() - start
    after = ls.losses(mods, trainer.model, trainer.adapter, batches)
    print(f"\nlearning test: {STEPS} steps in {seconds:.1f} s ({seconds / STEPS * 1000:.0f} ms/step); held-out loss true K "
          f"{before.true:.4f} -> {after.true:.4f}, shuffled K {before.shuffled:.4f} -> {after.shuffled:.4f}; gap "
          f"{after.gap:.4f} ({after.gap / after.true * 100:.1f} % of the loss, standard error {after.gap_se:.4f}); batches "
          f"{ {k: trainer.kinds.count(k) for k in set(trainer.kinds)} }")
    return trainer, path, before, after


def test_untrained_adapter_ignores_k(trained):
    _, _, before, _ = trained
    # up = 0 at init: K cannot reach the output, so true and shuffled K give the same loss exactly
    assert before.shuffled == before.true and before.gap_se == 0.0


def test_training_lowers_the_held_out_loss(trained):
    trainer, _, before, after = trained
    assert after.true < 0.8 * before.true  # new scenes
    assert set(trainer.kinds) == {"real", "group"} and len(trainer.losses) == STEPS


def test_adapter_uses_k(trained):
    """The held-out gap (shuffled K minus true K, the same batches, noise and sigmas) is clearly
    above its noise: more than 3 standard errors of the per-batch gap, and at least 3 % of the
    loss (measured 7.9 to 9.1 % over 3 seeds)."""
    _, _, _, after = trained
    assert after.gap > 3 * after.gap_se and after.gap > 0.03 * after.true, after


def test_trained_file_loads_and_samples_through_the_nodes(mods, trained):
    import folder_paths

    trainer, path, _, _ = trained
    meta = mods.io.read_metadata(path)
    assert meta["steps"] == STEPS and meta["base"] == "tiny test FLUX" and meta["recipe"]["swap_prob"] == 0.2
    folder_paths.add_model_folder_path("bokeh_diffusion", str(path.parent))
    results = {}
    for k in (2.0, 28.0):
        result = harness.run_prompt(harness.tiny_graph(path.name, blur=k, steps=2))
        assert result.ok, result.errors
        results[k] = result.outputs["sample"][0][0]["samples"]
    assert torch.isfinite(results[2.0]).all()
    assert not torch.equal(results[2.0], results[28.0])  # the trained K embedding acts at sampling time
    loaded = harness.pack_module("weights.folder").load_named(path.name)
    assert loaded.dims.flavour == "text" and loaded.dims.rank == 4
