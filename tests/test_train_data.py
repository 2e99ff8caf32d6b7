"""Training data and loop: samples from a folder or a CSV manifest, bad data named in a typed
error, the batch maker's draws (grounded groups, I2I), the schedule (the authors' 4x cosine),
resuming, the optional Prodigy."""

import importlib.util
import subprocess
import sys

import harness
import numpy as np
import pytest
import torch
from PIL import Image

SIZE = 32


def photo(path, w=48, h=40, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def sharp_sample(folder, name, w=48, h=40):
    photo(folder / f"{name}.png", w, h)
    depth = np.full((h, w), 20.0, np.float32)
    depth[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1.0
    np.save(folder / f"{name}.depth.npy", depth)
    Image.fromarray(((depth < 5) * 255).astype(np.uint8)).save(folder / f"{name}.mask.png")
    (folder / f"{name}.txt").write_text("a red ball\na ball on a carpet\n")


def test_folder_samples(mods, tmp_path):
    sharp_sample(tmp_path, "scene")
    photo(tmp_path / "blurry.png", seed=1)
    (tmp_path / "blurry.k.txt").write_text("12.5\n")
    samples = {s.name: s for s in mods.data.from_folder(tmp_path, size=SIZE)}
    assert set(samples) == {"scene.png", "blurry.png"}  # side files are not samples
    scene, blurry = samples["scene.png"], samples["blurry.png"]
    assert scene.sharp and scene.image.shape == (3, SIZE, SIZE) and scene.depth.shape == (1, SIZE, SIZE)
    assert scene.captions == ("a red ball", "a ball on a carpet") and set(scene.mask.unique().tolist()) == {0.0, 1.0}
    assert not blurry.sharp and blurry.k == 12.5 and blurry.depth is None


def test_manifest_samples(mods, tmp_path):
    sharp_sample(tmp_path, "scene")
    photo(tmp_path / "real.png", 60, 40, seed=2)
    (tmp_path / "m.csv").write_text(
        "input_image_path,depth_map_path,fg_mask_path,captions,dof_cond,N,fmm,f35mm,s1,suitable_for_synthetic\n"
        "scene.png,scene.depth.npy,scene.mask.png,one|two,,,,,,true\n"
        "real.png,,,a street,,2.0,50,50,1.8,false\n")
    scene, real = mods.data.from_manifest(tmp_path / "m.csv", size=SIZE)
    assert scene.sharp and scene.captions == ("one", "two")
    # K from the EXIF columns (spec 3.3), with the image's own width and height
    assert real.k == pytest.approx(mods.exif.k_from_exif(2.0, 50, 50, 1.8, 60, 40)) and not real.sharp


@pytest.mark.parametrize("case", ["empty", "unreadable", "nan-depth", "missing-depth", "odd-size", "tiny", "no-depth-no-k", "outside"])
def test_bad_data_is_named(mods, tmp_path, case):
    bad, load = None, lambda: mods.data.from_folder(tmp_path, size=SIZE)
    if case == "unreadable":
        (tmp_path / "broken.png").write_bytes(b"not an image at all")
        bad = "broken.png"
    elif case == "nan-depth":
        photo(tmp_path / "scene.png")
        np.save(tmp_path / "scene.depth.npy", np.full((40, 48), np.nan, np.float32))
        bad = "scene.depth.npy"
    elif case == "missing-depth":
        photo(tmp_path / "scene.png")
        (tmp_path / "m.csv").write_text("input_image_path,depth_map_path\nscene.png,gone.npy\n")
        load, bad = (lambda: mods.data.from_manifest(tmp_path / "m.csv", size=SIZE)), "gone.npy"
    elif case == "odd-size":
        photo(tmp_path / "scene.png", 48, 40)
        np.save(tmp_path / "scene.depth.npy", np.ones((40, 20), np.float32))
        bad = "scene.depth.npy"
    elif case == "tiny":
        photo(tmp_path / "small.png", 8, 8)
        (tmp_path / "small.k.txt").write_text("3")
        bad = "small.png"
    elif case == "no-depth-no-k":
        photo(tmp_path / "plain.png")
        bad = "plain.png"
    elif case == "outside":
        (tmp_path / "m.csv").write_text("input_image_path,dof_cond\n../elsewhere.png,3\n")
        load, bad = (lambda: mods.data.from_manifest(tmp_path / "m.csv", size=SIZE, inside=True)), "leaves the dataset folder"
    with pytest.raises(mods.errors.BokehInputError) as err:
        load()
    assert (bad or "no images") in str(err.value)
    assert "\n" not in str(err.value)


def test_schedule_matches_the_authors_runs(mods):
    f = mods.recipe.lr_multiplier
    # spec 1.6 [RUN]: the 4-process run's multipliers at steps 0/100/1000/2000/3000/3999 of 4000
    got = [f(s, 100, 4000, speed=4) for s in (0, 100, 1000, 2000, 3000, 3999)]
    assert got == pytest.approx([0.0, 0.99, 0.0, 1.0, 0.007, 0.99], abs=0.006)
    # one process: warm-up over 100 steps, then one cosine down to 0
    assert f(50, 100, 4000) == 0.5 and f(4000, 100, 4000) == pytest.approx(0.0) and f(2050, 100, 4000) == pytest.approx(0.5)


def test_bad_settings_and_missing_prodigy(mods):
    with pytest.raises(mods.errors.BokehInputError, match="swap_prob"):
        mods.recipe.Recipe(swap_prob=1.5).check()
    with pytest.raises(mods.errors.BokehInputError, match="Unknown training settings"):
        mods.recipe.Recipe.from_dict({"rnak": 4})
    if importlib.util.find_spec("prodigyopt") is None:
        with pytest.raises(mods.errors.BokehInputError, match="pip install prodigyopt"):
            mods.trainer.make_optimizer([torch.nn.Parameter(torch.zeros(1))], mods.recipe.Recipe(optimizer="prodigy"))


def scenes(mods, n):
    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(i)
        depth = torch.full((1, SIZE, SIZE), 20.0)
        depth[:, 8:24, 8:24] = 1.0
        out.append(mods.data.Sample(name=f"s{i}", image=torch.rand(3, SIZE, SIZE, generator=g), depth=depth,
                                    mask=(depth < 5).float(), captions=("a box",), sharp=True, k=6.0))
    return out


def make_trainer(mods, samples=None, **changes):
    import tiny_nodes

    recipe = mods.recipe.Recipe(**{**dict(flavour="photo", steps=4, rank=2, context=8, embed_hidden=4, k_max=4.0, k_levels=3,
                                         warmup=1, lr=1e-2, seed=5, gradient_checkpointing=False), **changes})
    return mods.trainer.Trainer(harness.tiny_flux(seed=2), tiny_nodes.BokehTestTinyVAE().build(0)[0],
                                tiny_nodes.TinyTextEncoder("tiny"), samples or scenes(mods, 3), recipe, base="tiny")


def test_batches_follow_the_recipe(mods):
    t = make_trainer(mods, swap_prob=1.0, caption_dropout=0.0, k_dropout=0.0)
    g = torch.Generator().manual_seed(0)
    group = t.maker.make(g, kind="group")
    assert group.latents.shape[0] == 4 and group.reference is None
    assert len(set(group.swap.tolist())) == 1  # swap_prob 1: every row takes the pivot
    assert group.k_inputs[0] == pytest.approx(6.0 / 30)  # the photo's own K / 30 (spec 1.8)
    assert torch.equal(group.context[0], group.context[3])  # one caption for the group
    i2i = t.maker.make(g, kind="i2i")
    assert i2i.reference.shape == i2i.latents.shape and i2i.swap is None
    levels = {round(float(k) * 4.0, 5) for k in i2i.k_inputs}  # K / k_max, K on the 3 levels 1, 2.5, 4
    assert levels <= {1.0, 2.5, 4.0}
    assert torch.all((i2i.sigmas * 1000).round() == i2i.sigmas * 1000) and float(i2i.sigmas.min()) > 0


def test_paired_targets_option(mods):
    """A pair (input photo, real target, K) without depth: with paired_targets its own target and
    K; the authors' trainer re-renders it from zero depth instead; no_depth="skip" leaves it out."""
    g = torch.Generator().manual_seed(3)
    pair = mods.data.Sample(name="pair", image=torch.rand(3, SIZE, SIZE, generator=g), captions=("a cup",), k=3.0,
                            target=torch.rand(3, SIZE, SIZE, generator=g))
    t = make_trainer(mods, samples=[pair], paired_targets=True, k_levels=0, vae_latents="mean")  # latents comparable bit for bit
    batch = t.maker.make(torch.Generator().manual_seed(0), kind="i2i")
    assert torch.allclose(batch.k_inputs, torch.full((4,), 3.0 / 4.0))  # K / k_max
    assert torch.equal(batch.latents[0], t.maker.latents(pair.target[None])[0])
    assert torch.equal(batch.reference[0], t.maker.photo_latent(pair))
    authors = make_trainer(mods, samples=[pair], k_levels=0, vae_latents="mean").maker.make(torch.Generator().manual_seed(0), kind="i2i")
    assert not torch.equal(authors.latents[0], batch.latents[0])
    with pytest.raises(mods.errors.BokehInputError, match="No usable training samples"):
        make_trainer(mods, samples=[pair], no_depth="skip")


def test_resume_continues_exactly(mods, tmp_path):
    """2 steps, save, a new trainer resumes and does 2 more: the same weights as 4 steps in one go
    (same process, same kernels, same draws: bit-equal)."""
    whole = make_trainer(mods)
    whole.run()
    first = make_trainer(mods)
    first.run(out=tmp_path / "a.safetensors", until=2)
    second = make_trainer(mods)
    second.resume(tmp_path / "a.safetensors")
    assert second.step == 2
    second.run(out=tmp_path / "a.safetensors")
    for (k, a), (_, b) in zip(whole.adapter.state_dict().items(), second.adapter.state_dict().items()):
        assert torch.equal(a, b), k
    assert second.losses == whole.losses
    with pytest.raises(mods.errors.BokehInputError, match="other settings"):
        make_trainer(mods, lr=0.5).resume(tmp_path / "a.safetensors")


def test_headless_command(mods, tmp_path):
    """scripts/bokeh_train.py with tiny models (--check): trains from a folder, writes the adapter
    (loadable, with metadata), its resume state and the loss log; resumes; a bad folder is one
    line and exit code 2."""
    script = harness.pack_module("runner.train_command")  # what scripts/bokeh_train.py runs
    data = tmp_path / "data"
    data.mkdir()
    sharp_sample(data, "scene")
    args = ["--check", "--folder", str(data), "--size", str(SIZE), "--out-dir", str(tmp_path), "--out", "mine.safetensors",
            "--set", "rank=2", "--set", "context=8", "--set", "embed_hidden=4", "--set", "k_max=4", "--set", "steps=2"]
    assert script.main(args) == 0
    assert script.main(args[:-1] + ["steps=3", "--resume"]) == 0
    out = tmp_path / "mine.safetensors"
    meta = harness.pack_module("training.adapter_io").read_metadata(out)
    assert meta["steps"] == 3 and meta["flavour"] == "photo"
    assert harness.pack_module("weights.checkpoint").load_adapter(out).dims.rank == 2
    rows = (tmp_path / "mine.safetensors.loss.csv").read_text().splitlines()
    assert rows[0] == "step,loss,batch,lr" and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    assert (tmp_path / "mine.safetensors.state").is_file()
    assert script.main(["--check", "--folder", str(tmp_path / "nothing"), "--out-dir", str(tmp_path)]) == 2
    # The command as the README writes it: one line, exit code 2.
    proc = subprocess.run([sys.executable, str(harness.REPO / "scripts" / "bokeh_train.py"), "--check", "--folder",
                           str(tmp_path / "nothing"), "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "nothing" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
