"""The bundled workflows, treated as a user's ComfyUI treats them: converted with the host's live
node definitions, validated by the host, and run end to end in its executor. Only model loading
and text encoding are swapped for tiny random models; every other node runs as saved."""

import contextlib
import copy
import shutil

import harness
import pytest
import workflow_api
from make_workflows import ADAPTER, PHOTO_STEPS, SEED, TRAIN_FOLDER, TRAIN_STEPS
from model_files import PHOTO_ADAPTER, PHOTO_IMAGE

# The saved step counts and blur levels are checked; the tiny-model runs take 2 steps and 3 levels
# (512 x 512 decodes dominate their time on a CPU).
RUN_STEPS = 2
RUN_LEVELS = {"BokehPivotBatch": ("targets", "0, 28"), "BokehBlurLevels": ("levels", "1, 16, 30"),
              "BokehRenderClassical": ("blur", 2.0)}  # the classical render's time grows with K^2

ALL_WORKFLOWS = sorted((harness.REPO / "workflows").glob("*.json"))
# The distributed sweep needs ComfyUI-Distributed's nodes: it runs on three real servers with the
# real extension in tests/test_distributed_servers.py.
WORKFLOWS = [p for p in ALL_WORKFLOWS if not p.stem.endswith("_distributed")]
OURS = ["BokehAdapterLoader", "BokehApplyAdapter", "BokehPivotBatch", "BokehBlurLevels",
        "BokehColorMatch", "BokehContactSheet", "BokehBlurMeter", "BokehPhotoPrompt", "BokehPhotoResize", "BokehGatherSweep",
        "BokehRenderClassical", "BokehTrainingData", "BokehTrainAdapter"]
# The training workflow's run: a tiny adapter for 2 steps on two tiny scenes.
RUN_TRAINING = {"BokehTrainAdapter": dict(steps=2, rank=4, batch_size=2, if_exists="overwrite",
                                          settings="context=16\nembed_hidden=8\nk_levels=2"),
                "BokehTrainingData": dict(size=32)}


@pytest.fixture(scope="module", autouse=True)
def tiny_adapter(pack, tmp_path_factory):
    """Tiny random adapters under the workflows' file names (the photo adapter as a .bin, every key
    prefixed module., as released), and the photo the photo workflows load."""
    cfg = harness.TINY
    sd = harness.random_adapter_sd(cfg["hidden_size"], range(cfg["depth"] + cfg["depth_single_blocks"]), seed=41)
    folder = tmp_path_factory.mktemp("wf_models")
    harness.write_adapter(folder, sd, name=ADAPTER)
    photo = {"module." + k.replace("_bokeh.", "_dof."): v for k, v in sd.items()}
    harness.write_adapter(folder, photo, name=PHOTO_ADAPTER)
    harness.write_example_photo(PHOTO_IMAGE)


def test_there_are_nine_workflows():
    assert [p.name for p in ALL_WORKFLOWS] == [
        "bokeh_classical_render.json", "bokeh_grounded_sweep.json", "bokeh_grounded_sweep_checkpoint.json", "bokeh_grounded_sweep_distributed.json", "bokeh_list_sweep.json",
        "bokeh_photo.json", "bokeh_photo_stack.json", "bokeh_single_image.json", "bokeh_train.json"]


@contextlib.contextmanager
def training_folders(tmp_path):
    """ComfyUI's input folder with the training workflow's dataset (input/bokeh_training: two tiny
    scenes) and the example photo, and a fresh first adapter folder, for one run."""
    import folder_paths
    from test_train_nodes import write_scene

    inputs, models = tmp_path / "input", tmp_path / "models"
    (inputs / TRAIN_FOLDER).mkdir(parents=True), models.mkdir()
    for i in range(2):
        write_scene(inputs / TRAIN_FOLDER, f"scene{i}", i)
    shutil.copy(harness.write_example_photo(PHOTO_IMAGE), inputs / PHOTO_IMAGE)
    old_input, paths = folder_paths.get_input_directory(), folder_paths.folder_names_and_paths["bokeh_diffusion"][0]
    folder_paths.set_input_directory(str(inputs))
    paths.insert(0, str(models))
    try:
        yield models
    finally:
        paths.remove(str(models))
        folder_paths.set_input_directory(old_input)


def test_every_node_of_ours_is_in_a_workflow():
    used = {n["type"] for p in ALL_WORKFLOWS for n in workflow_api.load(p)["nodes"]}
    assert set(OURS) <= used, set(OURS) - used
    import nodes

    registered = {k for k in nodes.NODE_CLASS_MAPPINGS if k.startswith("Bokeh") and not k.startswith("BokehTest")}
    assert registered == set(OURS)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_validates_and_runs(path, tmp_path):
    workflow = workflow_api.load(path)
    assert any(n["type"] == "Note" for n in workflow["nodes"])  # says which files go where
    prompt = workflow_api.ui_to_api(workflow)
    photo = "photo" in path.stem or path.stem == "bokeh_train"  # the trained adapter renders a photo
    for kind, values in RUN_TRAINING.items():
        for key in workflow_api.find(prompt, kind):
            assert prompt[key]["inputs"].get("steps", TRAIN_STEPS) == TRAIN_STEPS
            prompt[key]["inputs"].update(values)
    for ks in workflow_api.find(prompt, "KSampler"):  # one, except in the classical render (no model)
        steps = PHOTO_STEPS if photo else 30
        assert prompt[ks]["inputs"]["seed"] == SEED and prompt[ks]["inputs"]["steps"] == steps  # seed control widget skipped
        prompt[ks]["inputs"]["steps"] = RUN_STEPS
    for kind, (name, value) in RUN_LEVELS.items():
        for key in workflow_api.find(prompt, kind):
            prompt[key]["inputs"][name] = value
    with training_folders(tmp_path) if path.stem == "bokeh_train" else contextlib.nullcontext() as models:
        result = harness.run_prompt(harness.swap_for_tiny_models(prompt))
    assert result.ok, (result.errors.get("exception_message"), result.errors.get("node_errors") or result.errors)
    if models is not None:
        assert sorted(p.name for p in models.iterdir()) == ["my_bokeh.safetensors", "my_bokeh.safetensors.loss.csv",
                                                            "my_bokeh.safetensors.state"]
    saved = [out for out in result.ui.values() if "images" in out]
    assert saved and all(out["images"] for out in saved)
    if "grounded" in path.stem:
        (meter,) = workflow_api.find(prompt, "BokehBlurMeter")
        assert "corr(K, blur)" in result.outputs[meter][0][0]
        (decode,) = workflow_api.find(prompt, "VAEDecode")
        assert result.outputs[decode][0][0].shape == (3, 512, 512, 3)  # pivot and 2 targets
    if photo:
        (colour,) = workflow_api.find(prompt, "BokehColorMatch")
        images = result.outputs[colour][0]
        rows = 3 if "stack" in path.stem else 1  # one sampling per K of Bokeh Blur Levels, or one K
        assert len(images) == rows and all(i.shape == (1, 512, 512, 3) for i in images)
        (prompt_node,) = workflow_api.find(prompt, "BokehPhotoPrompt")
        texts = result.outputs[prompt_node][1]
        assert texts[0].startswith("Set dof_cond = ") and len(set(texts)) == rows
    if "classical" in path.stem:
        (render,) = workflow_api.find(prompt, "BokehRenderClassical")
        (photo_node,) = [k for k in workflow_api.find(prompt, "LoadImage") if prompt[render]["inputs"]["image"][0] == k]
        image, blur_map = result.outputs[render][0][0], result.outputs[render][1][0]
        assert image.shape == result.outputs[photo_node][0][0].shape and blur_map.shape == image.shape[:3]
    if "photo_stack" in path.stem:
        (meter,) = workflow_api.find(prompt, "BokehBlurMeter")
        report = result.outputs[meter][0][0]
        assert "corr(K, blur)" in report and "K 30" in report and "pivot" not in report


def test_missing_node_type_and_bad_link_fail():
    workflow = workflow_api.load(harness.REPO / "workflows" / "bokeh_single_image.json")
    broken = copy.deepcopy(workflow)
    broken["nodes"][-1]["type"] = "NoSuchNode"
    with pytest.raises(workflow_api.WorkflowError, match="NoSuchNode"):
        workflow_api.ui_to_api(broken)
    broken = copy.deepcopy(workflow)
    broken["links"][0][1] = 999
    with pytest.raises(workflow_api.WorkflowError, match="999"):
        workflow_api.ui_to_api(broken)
    broken = copy.deepcopy(workflow)
    broken["links"].pop()
    with pytest.raises(workflow_api.WorkflowError, match="not in the workflow's links"):
        workflow_api.ui_to_api(broken)


def test_host_rejects_a_mistyped_link():
    workflow = workflow_api.load(harness.REPO / "workflows" / "bokeh_single_image.json")
    prompt = harness.swap_for_tiny_models(workflow_api.ui_to_api(workflow))
    (ks,) = workflow_api.find(prompt, "KSampler")
    prompt[ks]["inputs"]["model"] = prompt[ks]["inputs"]["positive"]
    result = harness.run_prompt(prompt)
    assert not result.ok and result.errors["node_errors"]
