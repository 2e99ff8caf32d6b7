"""The checkpoint format and every bad input: typed errors that say what to do, nothing half-patched."""

import harness
import pytest
import reference
import torch
from safetensors.torch import save_file

CFG = harness.TINY
N_BLOCKS = CFG["depth"] + CFG["depth_single_blocks"]


def official_shapes(blocks=range(57), hidden=3072, rank=128, context=768, qk=True):
    shapes = {"embedding_layer.0.weight": (64, 1), "embedding_layer.0.bias": (64,),
              "embedding_layer.2.weight": (context, 64), "embedding_layer.2.bias": (context,)}
    names = ["to_k_bokeh", "to_v_bokeh"] + (["to_q_adp", "to_k_adp"] if qk else [])
    for i in blocks:
        for n in names:
            shapes[f"adapter_modules.{i}.{n}.down.weight"] = (rank, hidden if n.endswith("_adp") else context)
            shapes[f"adapter_modules.{i}.{n}.up.weight"] = (hidden, rank)
    return shapes


def test_official_layout_header_parsed(mods, tmp_path):
    path = harness.write_header_only(tmp_path / "model.safetensors", official_shapes())
    # the header-only file is (correctly) reported truncated by the reader...
    with pytest.raises(mods.errors.BokehAdapterError, match="truncated"):
        with open(path, "rb") as f:
            mods.safetensors_file.read_header_from(f, path.stat().st_size, path.name)
    # ...and the layout itself parses with the right dims and block map
    dims, unused = mods.keys.infer_dims(official_shapes(), name="model.safetensors")
    assert unused == []
    assert (dims.hidden, dims.rank, dims.context, dims.embed_hidden, dims.embed_input) == (3072, 128, 768, 64, 1)
    assert len(dims.blocks) == 57 and dims.has_qk
    assert len(official_shapes()) == 460  # spec section 6
    block_map = mods.families.host_block_map(dims, 19, 38)
    assert block_map[("double", 0)] == 0 and block_map[("double", 18)] == 18
    assert block_map[("single", 0)] == 19 and block_map[("single", 37)] == 56
    assert len(block_map) == 57
    n_params = sum(torch.Size(s).numel() for s in official_shapes().values())
    assert 145e6 < n_params < 147e6  # "about 146 M parameters" (spec section 6)


def test_official_layout_builds_on_meta(mods):
    bokeh = harness.pack_module("attention.bokeh")
    dims, _ = mods.keys.infer_dims(official_shapes())
    module = bokeh.BokehAdapter(dims, device="meta")
    assert set(module.state_dict()) == set(official_shapes())
    assert all(tuple(v.shape) == official_shapes()[k] for k, v in module.state_dict().items())


def test_partial_and_no_qk_layouts(mods):
    dims, _ = mods.keys.infer_dims(official_shapes(blocks=[3, 20, 40], qk=False))
    assert sorted(dims.blocks) == [3, 20, 40] and not dims.has_qk
    assert mods.families.host_block_map(dims, 19, 38) == {("double", 3): 3, ("single", 1): 20, ("single", 21): 40}


def test_unknown_keys_reported(mods, tmp_path, caplog):
    sd = reference.random_adapter_sd(CFG["hidden_size"], [0])
    sd["something_else.weight"] = torch.zeros(3)
    path = harness.write_adapter(tmp_path, sd, name="extra.safetensors")
    with caplog.at_level("WARNING"):
        loaded = mods.ckpt.load_adapter(path)
    assert loaded.unused_keys == ["something_else.weight"]
    assert "something_else.weight" in caplog.text
    # every other key was consumed into the module
    assert set(loaded.module.state_dict()) == set(sd) - {"something_else.weight"}


def test_config_disagreement_is_logged(mods, tmp_path, caplog):
    sd = reference.random_adapter_sd(CFG["hidden_size"], [0], rank=4)
    path = harness.write_adapter(tmp_path, sd, name="config_disagrees.safetensors", config={"lora_rank": 128, "attn_hidden_dim": 3072})
    with caplog.at_level("WARNING"):
        loaded = mods.ckpt.load_adapter(path)
    assert loaded.dims.rank == 4 and "lora_rank" in caplog.text


def save(tmp_path, name, tensors):
    path = tmp_path / name
    save_file(tensors, str(path))
    return path


z = torch.zeros
BAD_FILES = {
    "FLUX LoRA": {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": z(4, 64),
                  "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": z(192, 4)},
    "IP-Adapter": {"double_blocks.0.processor.ip_adapter_double_stream_k_proj.weight": z(4, 4),
                   "ip_adapter_proj_model.proj.weight": z(4, 4)},
    "ControlNet": {"controlnet_blocks.0.weight": z(4, 4), "controlnet_x_embedder.weight": z(4, 4)},
    "Stable Diffusion": {"model.diffusion_model.input_blocks.0.0.weight": z(4, 4, 3, 3)},
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_other_kinds_of_file_named(mods, tmp_path, kind):
    path = save(tmp_path, "x.safetensors", BAD_FILES[kind])
    with pytest.raises(mods.errors.BokehAdapterError) as e:
        mods.ckpt.load_adapter(path)
    assert kind in str(e.value) and "not a Bokeh adapter" in str(e.value)
    assert "models/bokeh_diffusion" in str(e.value)


def test_pickles_never_opened(mods, tmp_path):
    p = tmp_path / "bokeh.ckpt"
    torch.save({"a": torch.zeros(1)}, p)
    with pytest.raises(mods.errors.BokehAdapterError, match="pickle"):
        mods.ckpt.load_adapter(p)
    disguised = tmp_path / "bokeh.safetensors"
    disguised.write_bytes(p.read_bytes())
    with pytest.raises(mods.errors.BokehAdapterError, match="pickle"):
        mods.ckpt.load_adapter(disguised)


def test_truncated_and_empty_files(mods, tmp_path):
    good = harness.write_adapter(tmp_path, reference.random_adapter_sd(CFG["hidden_size"], [0]), name="good.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(mods.errors.BokehAdapterError, match="truncated"):
        mods.ckpt.load_adapter(cut)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(mods.errors.BokehAdapterError, match="empty or truncated"):
        mods.ckpt.load_adapter(empty)
    with pytest.raises(mods.errors.BokehAdapterError, match="not found"):
        mods.ckpt.load_adapter(tmp_path / "missing.safetensors")


def test_nan_weights_refused(mods, tmp_path):
    sd = reference.random_adapter_sd(CFG["hidden_size"], [0])
    sd["adapter_modules.0.to_v_bokeh.up.weight"][0, 0] = float("nan")
    path = save(tmp_path, "nan.safetensors", sd)
    with pytest.raises(mods.errors.BokehAdapterError, match="NaN"):
        mods.ckpt.load_adapter(path)


def test_inconsistent_shapes_refused(mods, tmp_path):
    sd = reference.random_adapter_sd(CFG["hidden_size"], [0, 1], rank=4)
    sd["adapter_modules.1.to_q_adp.down.weight"] = torch.zeros(8, CFG["hidden_size"])
    sd["adapter_modules.1.to_q_adp.up.weight"] = torch.zeros(CFG["hidden_size"], 8)
    with pytest.raises(mods.errors.BokehAdapterError, match="like the other blocks"):
        mods.ckpt.load_adapter(save(tmp_path, "mixed.safetensors", sd))


def apply_expecting(mods, model, path, blur, error):
    loaded = mods.adapter.BokehAdapterLoader.execute(path.name).result[0]
    before = (dict(model.object_patches), dict(model.model_options["transformer_options"]), dict(model.additional_models))
    with pytest.raises(error) as e:
        mods.adapter.BokehApplyAdapter.execute(model, loaded, blur)
    after = (dict(model.object_patches), dict(model.model_options["transformer_options"]), dict(model.additional_models))
    assert before == after  # nothing half-patched
    return str(e.value)


def test_hidden_size_mismatch(mods, tmp_path):
    path = harness.write_adapter(tmp_path, reference.random_adapter_sd(128, [0]), name="wide.safetensors")
    msg = apply_expecting(mods, harness.tiny_flux(1), path, 5.0, mods.errors.BokehModelError)
    assert "hidden size 128" in msg and "has 64" in msg


def test_block_count_mismatch(mods, tmp_path):
    path = harness.write_adapter(tmp_path, reference.random_adapter_sd(CFG["hidden_size"], [0, 56]), name="deep.safetensors")
    msg = apply_expecting(mods, harness.tiny_flux(1), path, 5.0, mods.errors.BokehModelError)
    assert "56" in msg and "2 double + 2 single" in msg


def test_non_flux_model(mods, tmp_path):
    path = harness.write_adapter(tmp_path, reference.random_adapter_sd(CFG["hidden_size"], [0]), name=f"ok_{tmp_path.name}.safetensors")
    msg = apply_expecting(mods, harness.tiny_sd15(), path, 5.0, mods.errors.BokehModelError)
    assert "FLUX" in msg and "UNetModel" in msg


@pytest.mark.parametrize("blur", [float("nan"), float("inf"), "abc"])
def test_bad_blur_level(mods, tmp_path, blur):
    path = harness.write_adapter(tmp_path, reference.random_adapter_sd(CFG["hidden_size"], [0]), name=f"ok_{tmp_path.name}.safetensors")
    apply_expecting(mods, harness.tiny_flux(1), path, blur, mods.errors.BokehInputError)


def test_errors_reach_the_user_through_the_executor(pack, tmp_path):
    path = save(tmp_path, "lora.safetensors", BAD_FILES["FLUX LoRA"])
    harness.write_adapter(tmp_path, reference.random_adapter_sd(CFG["hidden_size"], [0]), name="fine.safetensors")
    prompt = harness.tiny_graph(path.name, blur=3.0, steps=1)
    result = harness.run_prompt(prompt)
    assert not result.ok
    assert result.errors["exception_type"].endswith("BokehAdapterError")
    assert "FLUX LoRA" in result.errors["exception_message"]


def test_folder_lists_only_safetensors(pack, tmp_path):
    import folder_paths

    harness.write_adapter(tmp_path, reference.random_adapter_sd(CFG["hidden_size"], [0]), name="listed.safetensors")
    torch.save({}, tmp_path / "hidden.ckpt")
    names = folder_paths.get_filename_list("bokeh_diffusion")
    assert "listed.safetensors" in names and "hidden.ckpt" not in names


def test_model_folder_keeps_extra_model_paths(pack, tmp_path):
    import folder_paths

    folder = harness.pack_module("weights.folder")
    saved = folder_paths.folder_names_and_paths.get("bokeh_diffusion")
    try:
        # what extra_model_paths.yaml does before custom nodes load
        folder_paths.folder_names_and_paths.pop("bokeh_diffusion", None)
        folder_paths.add_model_folder_path("bokeh_diffusion", str(tmp_path))
        folder.register_model_folder()
        paths, exts = folder_paths.folder_names_and_paths["bokeh_diffusion"]
        assert paths[0] == str(tmp_path)
        assert any(p.endswith("models/bokeh_diffusion") or p.endswith("models\\bokeh_diffusion") for p in paths)
        assert exts == {".safetensors", ".bin", ".pt", ".pth"}
    finally:
        if saved is not None:
            folder_paths.folder_names_and_paths["bokeh_diffusion"] = saved
