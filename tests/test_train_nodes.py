"""Bokeh Training Data and Train Bokeh Adapter through the real executor (issue 23 item 4).

A tiny training set is written into a sub-folder of a temporary ComfyUI input folder; the graph
trains on the tiny test FLUX (its weights are inference tensors there, as a loader's are), saves
into a temporary models/bokeh_diffusion, and its adapter output goes straight into Apply Bokeh
Adapter and the sampler. The same seed and data through the headless code path (training.trainer
built outside the executor, as scripts/bokeh_train.py does) give the same losses and weights bit
for bit: the same process, batch shapes and kernels, and the node's in-place copies of the frozen
weights hold the same values.
"""

import json

import harness
import numpy as np
import pytest
import tiny_nodes
import torch
from PIL import Image

SIZE = 32
STEPS = 4
SETTINGS = "context=16\nembed_hidden=8\nwarmup=1\nk_max=15\nk_levels=2\nflat_focus=\"image\""
RECIPE = dict(flavour="text", steps=STEPS, lr=1e-2, rank=4, batch_size=2, seed=3, optimizer="adamw",
              gradient_checkpointing=False, context=16, embed_hidden=8, warmup=1, k_max=15.0, k_levels=2, flat_focus="image")


def write_scene(folder, name: str, seed: int, k: float | None = None):
    """A grey disc before a random texture: NAME.png with NAME.txt, and NAME.depth.npy + NAME.mask.png
    (a sharp photo), or NAME.k.txt (a defocused photo with K)."""
    g = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    disc = ((y - SIZE / 2) ** 2 + (x - SIZE / 2) ** 2) < (SIZE * 0.2) ** 2
    image = np.where(disc[..., None], 128, (g.random((SIZE, SIZE, 1)) > 0.5) * 255).repeat(3, -1).astype(np.uint8)
    Image.fromarray(image).save(folder / f"{name}.png")
    (folder / f"{name}.txt").write_text("a ball in front of a pattern\n")
    if k is None:
        np.save(folder / f"{name}.depth.npy", np.where(disc, 1.0, 20.0).astype(np.float32))
        Image.fromarray((disc * 255).astype(np.uint8)).save(folder / f"{name}.mask.png")
    else:
        (folder / f"{name}.k.txt").write_text(f"{k}\n")


@pytest.fixture(scope="module")
def folders(pack, tmp_path_factory):
    """ComfyUI's input folder and the adapter folder pointed at temporary ones for this module."""
    import folder_paths

    inputs, models = tmp_path_factory.mktemp("train_input"), tmp_path_factory.mktemp("train_models")
    (inputs / "scenes").mkdir()
    for i in range(3):
        write_scene(inputs / "scenes", f"scene{i}", i)
    write_scene(inputs / "scenes", "blurred", 7, k=12.0)
    (inputs / "empty").mkdir()
    (inputs / "empty" / "notes.txt").write_text("no images here\n")
    old_input = folder_paths.get_input_directory()
    folder_paths.set_input_directory(str(inputs))
    paths = folder_paths.folder_names_and_paths["bokeh_diffusion"][0]
    paths.insert(0, str(models))
    yield inputs, models
    paths.remove(str(models))
    folder_paths.set_input_directory(old_input)


def train_graph(name="trained_node", folder="scenes", if_exists="overwrite", steps=STEPS, blur=20.0):
    """model, clip, vae -> Bokeh Training Data -> Train Bokeh Adapter -> Apply (blur) -> sampler."""
    g = harness.tiny_graph()
    g["clip"] = {"class_type": "BokehTestTinyCLIP", "inputs": {"preset": "tiny"}}
    g["data"] = {"class_type": "BokehTrainingData", "inputs": {"folder": folder, "size": SIZE}}
    g["train"] = {"class_type": "BokehTrainAdapter", "inputs": {
        "model": ["model", 0], "clip": ["clip", 0], "vae": ["vae", 0], "training_data": ["data", 0],
        "flavour": "text-to-image (FLUX.1-dev)", "steps": steps, "learning_rate": RECIPE["lr"], "rank": RECIPE["rank"],
        "batch_size": RECIPE["batch_size"], "seed": RECIPE["seed"], "file_name": name, "if_exists": if_exists,
        "optimizer": "adamw", "gradient_checkpointing": False, "settings": SETTINGS}}
    g["apply"] = {"class_type": "BokehApplyAdapter", "inputs": {"model": ["model", 0], "bokeh_adapter": ["train", 0], "blur_level": blur}}
    g["sample"]["inputs"]["model"] = ["apply", 0]
    return g


def one_line_error(result, kind="BokehInputError") -> str:
    assert not result.ok
    assert result.errors["exception_type"].endswith(kind), result.errors
    message = result.errors["exception_message"]
    assert "\n" not in message.strip() and "Traceback" not in message
    return message


@pytest.fixture(scope="module")
def trained(folders):
    """The base model sampled before, the training graph, the base model sampled after."""
    import comfy.utils

    seen = []
    previous = comfy.utils.PROGRESS_BAR_HOOK
    before = harness.sampled(harness.tiny_graph())
    weights = {k: v.clone() for k, v in tiny_nodes.BokehTestTinyFlux().build(0, "tiny")[0].model.state_dict().items()}
    comfy.utils.set_progress_bar_global_hook(lambda value, total, *a, **k: seen.append((value, total)))
    try:
        result = harness.run_prompt(train_graph())
    finally:
        comfy.utils.set_progress_bar_global_hook(previous)
    assert result.ok, result.errors
    after = harness.sampled(harness.tiny_graph())
    state = tiny_nodes.BokehTestTinyFlux().build(0, "tiny")[0].model.state_dict()
    assert state.keys() == weights.keys() and all(torch.equal(state[k], weights[k]) for k in weights)  # the input model's values
    return result, before, after, seen


def test_dataset_folders_are_the_input_sub_folders(mods, folders):
    inputs, _ = folders
    (inputs / "a_file.png").write_bytes(b"not a folder")
    (inputs / ".hidden").mkdir(exist_ok=True)
    (inputs / "clipspace").mkdir(exist_ok=True)
    nodes = harness.pack_module("nodes.train_data")
    listed = nodes.dataset_folders()
    assert {"empty", "scenes"} <= set(listed) and listed == sorted(listed)
    assert not {"a_file.png", ".hidden", "clipspace"} & set(listed)
    assert nodes.BokehTrainingData.validate_inputs("scenes") is True
    for bad in ("../scenes", "/etc", "scenes/../..", "missing", 3):
        assert "not a sub-folder of ComfyUI's input folder" in nodes.BokehTrainingData.validate_inputs(bad)


def test_training_graph_saves_and_applies(mods, folders, trained):
    result, _, _, seen = trained
    _, models = folders
    path = models / "trained_node.safetensors"
    meta = mods.io.read_metadata(path)
    assert meta["steps"] == STEPS and meta["recipe"]["rank"] == 4 and meta["flavour"] == "text"
    assert (models / "trained_node.safetensors.state").is_file()
    log = (models / "trained_node.safetensors.loss.csv").read_text().splitlines()
    assert log[0] == "step,loss,batch,lr" and len(log) == STEPS + 1
    plot = result.outputs["train"][1][0]
    assert plot.shape == (1, 400, 720, 3) and plot.dtype == torch.float32 and 0 <= float(plot.min()) < float(plot.max()) <= 1
    import comfy.utils

    values = [v for v, t in seen if t == STEPS]  # the progress bar: rises to STEPS
    assert values == sorted(set(values)) and values[-1] == STEPS
    if not hasattr(comfy.utils.ProgressBar(1), "_last_sent_value"):  # before 0.30 the host sends every update
        assert values[-STEPS:] == list(range(1, STEPS + 1))  # step by step (0.30+ throttles what it sends)
    adapter = result.outputs["train"][0][0]
    assert adapter.dims.rank == 4 and adapter.dims.flavour == "text" and adapter.source == "trained_node.safetensors"
    assert torch.isfinite(result.outputs["sample"][0][0]["samples"]).all()


def test_base_model_unchanged_by_training(trained):
    _, before, after, _ = trained
    assert torch.equal(before, after)  # the training clone's patches are off the shared FLUX module


def test_saved_file_loads_and_samples_like_the_output(folders, trained):
    result = trained[0]
    direct = result.outputs["sample"][0][0]["samples"]
    loaded = {k: harness.sampled(harness.tiny_graph("trained_node.safetensors", blur=k)) for k in (2.0, 20.0)}
    assert torch.equal(loaded[20.0], direct)  # the output is the saved file, as Load Bokeh Adapter loads it
    assert not torch.equal(loaded[2.0], loaded[20.0])  # the trained K embedding acts


def test_node_training_equals_headless(mods, folders, trained):
    """The headless code path (scripts/bokeh_train.py: Trainer on samples from training.data,
    outside inference mode) with the same seed and data: the same losses and weights, bit for bit."""
    inputs, models = folders
    model = tiny_nodes.BokehTestTinyFlux().build(0, "tiny")[0]
    vae = tiny_nodes.BokehTestTinyVAE().build(0)[0]
    samples = mods.data.from_folder(inputs / "scenes", SIZE)
    trainer = mods.trainer.Trainer(model, vae, tiny_nodes.TinyTextEncoder("tiny"), samples, mods.recipe.Recipe(**RECIPE))
    try:
        out = trainer.run(out=models.parent / "headless" / "headless.safetensors")
    finally:
        harness.pack_module("training.host").release(trainer.model)
    state = torch.load(models / "trained_node.safetensors.state", weights_only=True)
    assert torch.equal(torch.tensor(trainer.losses, dtype=torch.float64), state["losses"])
    from safetensors.torch import load_file

    node_file, headless_file = load_file(str(models / "trained_node.safetensors")), load_file(str(out))
    assert node_file.keys() == headless_file.keys()
    assert all(torch.equal(node_file[k], headless_file[k]) for k in node_file)


def test_resume_continues_and_stop_refuses(mods, folders, trained):
    _, models = folders
    message = one_line_error(harness.run_prompt(train_graph(if_exists="stop")))
    assert "trained_node.safetensors exists" in message
    result = harness.run_prompt(train_graph(name="resumed", steps=2))
    assert result.ok, result.errors
    result = harness.run_prompt(train_graph(name="resumed", if_exists="resume", steps=STEPS))
    assert result.ok, result.errors
    # 2 steps, then 2 more from the saved state. The first two equal the 4-step run's (the cosine
    # schedule differs after them: its length is the run's steps)
    resumed = torch.load(models / "resumed.safetensors.state", weights_only=True)
    whole = torch.load(models / "trained_node.safetensors.state", weights_only=True)
    assert len(resumed["losses"]) == STEPS and torch.equal(resumed["losses"][:2], whole["losses"][:2])
    assert mods.io.read_metadata(models / "resumed.safetensors")["steps"] == STEPS
    assert len((models / "resumed.safetensors.loss.csv").read_text().splitlines()) == STEPS + 1


def test_folder_not_in_the_list_refused_at_queue_time(folders):
    for bad in ("../", "/etc", "nope"):
        result = harness.run_prompt(train_graph(folder=bad))
        assert not result.ok and "data" in result.errors["node_errors"], result.errors
        assert "not a sub-folder of ComfyUI's input folder" in repr(result.errors["node_errors"]["data"])


@pytest.mark.parametrize("name", ["../evil", "a/b", "/tmp/x", "..", "", "x" * 200, "a\\b"])
def test_bad_file_names_refused_at_queue_time(folders, name):
    result = harness.run_prompt(train_graph(name=name))
    assert not result.ok and "train" in result.errors.get("node_errors", {}), result.errors
    assert "expected a plain file name" in repr(result.errors["node_errors"]["train"])


def test_empty_folder_and_bad_settings(folders):
    assert "'empty' has no images" in one_line_error(harness.run_prompt(train_graph(folder="empty")))
    g = train_graph(name="bad_settings")
    g["train"]["inputs"]["settings"] = "no_such_setting=1"
    assert "Unknown training settings no_such_setting" in one_line_error(harness.run_prompt(g))
    g["train"]["inputs"]["settings"] = "steps=3"
    result = harness.run_prompt(g)
    assert not result.ok and "steps is an input of the node" in repr(result.errors)


def test_bad_data_names_the_file(folders):
    inputs, _ = folders
    bad = inputs / "bad_depth"
    bad.mkdir()
    write_scene(bad, "photo", 1)
    np.save(bad / "photo.depth.npy", np.full((SIZE, SIZE), np.nan, dtype=np.float32))
    message = one_line_error(harness.run_prompt(train_graph(folder="bad_depth", name="bad_depth")))
    assert message.startswith("photo.depth.npy: the depth map has no finite positive value")


def test_loss_plot_draws_the_curve(mods):
    plot = harness.pack_module("sweep.plot").loss_plot([3.0, 2.0, 2.5, 1.0, 0.5], "five steps")
    flat = harness.pack_module("sweep.plot").loss_plot([1.0], "one step")
    assert plot.shape == flat.shape == (1, 400, 720, 3)
    assert not torch.equal(plot, flat)
    assert json.dumps([float(plot.mean())])  # a finite picture


def test_weights_loaded_in_inference_mode_become_trainable(mods):
    """What the executor hands the node: a model built under inference mode, as loaders run. Its
    weights cannot enter autograd until training.host.trainable copies them in place."""
    host = harness.pack_module("training.host")
    with torch.inference_mode():
        model = harness.tiny_flux(seed=0)
    reference = {k: v.clone() for k, v in harness.tiny_flux(seed=0).model.diffusion_model.state_dict().items()}
    adapter = mods.io.new_adapter(64, range(4), rank=4, context=16, embed_hidden=8, seed=1)
    g = torch.Generator().manual_seed(0)
    batch = mods.step.Batch(latents=torch.randn(2, 16, 4, 4, generator=g), noise=torch.randn(2, 16, 4, 4, generator=g),
                            sigmas=torch.tensor([0.3, 0.8]), k_inputs=torch.tensor([0.2, 0.9]),
                            context=torch.randn(2, 8, 64, generator=g), pooled=torch.randn(2, 32, generator=g),
                            guidance=torch.ones(2))
    bound = mods.train_binding.bind_for_training(model, adapter)
    with pytest.raises(RuntimeError, match="[Ii]nference tensors"):
        mods.step.adapter_loss(bound, adapter, batch).backward()
    host.release(bound)
    same, replaced = host.trainable(model)
    assert same is model and replaced == len(reference)
    state = model.model.diffusion_model.state_dict()
    assert not any(v.is_inference() for v in state.values())
    assert all(torch.equal(state[k], reference[k]) for k in reference)  # the same values, in place
    bound = mods.train_binding.bind_for_training(model, adapter)
    mods.step.adapter_loss(bound, adapter, batch).backward()
    host.release(bound)
    assert all(p.grad is not None for n, p in adapter.named_parameters() if "to_k_bokeh" not in n)


def test_interrupt_stops_training_and_saves_nothing(folders, trained):
    """Cancel from the queue (the host's interrupt flag, as the server's /interrupt sets it) when
    the bar first reports (step 0, which every host sends; 0.30+ throttles the later ones): the
    run stops after its first step, nothing is saved, the base model is left as it was."""
    import comfy.model_management as mm
    import comfy.utils

    _, models = folders
    steps = []

    def hook(value, total, *args, **kwargs):
        if total == 50:
            steps.append(value)
            mm.interrupt_current_processing(True)

    previous = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        result = harness.run_prompt(train_graph(name="interrupted", steps=50))
    finally:
        comfy.utils.set_progress_bar_global_hook(previous)
        mm.interrupt_current_processing(False)
    assert not result.ok and any(event == "execution_interrupted" for event, _ in result.messages), result.messages[-3:]
    assert steps[0] == 0 and max(steps) <= 1 and not (models / "interrupted.safetensors").exists()
    assert torch.equal(harness.sampled(harness.tiny_graph()), trained[1])


def test_manifest_paths_stay_inside_the_folder(mods, folders):
    """A folder with a manifest.csv (the authors' columns) is read from it; a row whose path leaves
    the folder is refused before anything is opened."""
    inputs, _ = folders
    folder = inputs / "with_manifest"
    folder.mkdir()
    write_scene(folder, "scene", 4)
    header = "input_image_path,depth_map_path,fg_mask_path,captions,suitable_for_synthetic\n"
    (folder / "manifest.csv").write_text(header + "scene.png,scene.depth.npy,scene.mask.png,a ball,true\n")
    nodes = harness.pack_module("nodes.train_data")
    (sample,) = nodes.read_dataset("with_manifest", SIZE)
    assert sample.sharp and sample.depth is not None and sample.captions == ("a ball",)
    (folder / "manifest.csv").write_text(header + "../scenes/scene0.png,../scenes/scene0.depth.npy,,a ball,true\n")
    message = one_line_error(harness.run_prompt(train_graph(folder="with_manifest", name="manifest_run")))
    assert "leaves the dataset folder" in message


def test_photo_adapter_trains_in_the_graph(mods, folders):
    """The photo flavour (FLUX.1 Kontext's I2I steps: the sharp photo as reference latent, its
    render as target): a graph with only the data and training nodes runs (the trainer saves: an
    output node), and the file is a photo adapter."""
    _, models = folders
    g = train_graph(name="photo_node", steps=2)
    g["train"]["inputs"].update(flavour="photo (FLUX.1 Kontext)", settings=SETTINGS + "\ni2i_ratio=1.0")
    g = {k: g[k] for k in ("model", "clip", "vae", "data", "train")}
    result = harness.run_prompt(g)
    assert result.ok, result.errors
    assert result.outputs["train"][0][0].dims.flavour == "photo"
    log = (models / "photo_node.safetensors.loss.csv").read_text().splitlines()
    assert [row.split(",")[2] for row in log[1:]] == ["i2i", "i2i"]
    assert mods.io.read_metadata(models / "photo_node.safetensors")["flavour"] == "photo"
