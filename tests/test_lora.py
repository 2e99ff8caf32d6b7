"""A FLUX LoRA through core LoraLoaderModelOnly, before or after Apply Bokeh Adapter, through
ComfyUI's executor: the LoRA takes effect, the blur stays, and the order does not matter."""

import harness
import pytest
import reference
import torch
from safetensors.torch import save_file

CFG = harness.TINY
N_BLOCKS = CFG["depth"] + CFG["depth_single_blocks"]
ADAPTER = "lora_test_adapter.safetensors"
LORA = "bokeh_test_flux_lora.safetensors"
# kohya-style keys, as FLUX LoRAs are published: lora_unet_<module path with _>.lora_up/lora_down/alpha.
# The image attention of double block 0 and the fused qkv+mlp of single block 1 (both adapted blocks).
TARGETS = {"double_blocks_0_img_attn_qkv": (3 * CFG["hidden_size"], CFG["hidden_size"]),
           "single_blocks_1_linear1": (3 * CFG["hidden_size"] + int(CFG["hidden_size"] * CFG["mlp_ratio"]), CFG["hidden_size"])}


@pytest.fixture(scope="module")
def files(pack, tmp_path_factory):
    import folder_paths

    harness.write_adapter(tmp_path_factory.mktemp("lora_adapter"), reference.random_adapter_sd(CFG["hidden_size"], range(N_BLOCKS), seed=61), name=ADAPTER)
    folder = tmp_path_factory.mktemp("loras")
    g = torch.Generator().manual_seed(62)
    sd = {}
    for name, (out_dim, in_dim) in TARGETS.items():
        sd[f"lora_unet_{name}.lora_down.weight"] = torch.randn(4, in_dim, generator=g) * 0.3
        sd[f"lora_unet_{name}.lora_up.weight"] = torch.randn(out_dim, 4, generator=g) * 0.3
        sd[f"lora_unet_{name}.alpha"] = torch.tensor(4.0)
    save_file(sd, str(folder / LORA))
    folder_paths.add_model_folder_path("loras", str(folder))
    return folder


def graph(order=None, blur=30.0):
    g = harness.tiny_graph(ADAPTER, blur=blur, steps=2)
    if order is not None:  # model -> LoRA -> Apply -> sampler, or model -> Apply -> LoRA -> sampler
        harness.insert_model_node(g, {"class_type": "LoraLoaderModelOnly", "inputs": {"lora_name": LORA, "strength_model": 1.0}}, order)
    return g


latents = harness.sampled


def test_lora_before_and_after_apply_keeps_the_blur(files):
    before, after = latents(graph("before")), latents(graph("after"))
    # The same weight patches and the same object patches, in the same process: the same arithmetic.
    assert torch.allclose(before, after, rtol=0, atol=1e-6)
    assert (before - latents(graph(None))).abs().max() > 1e-3  # the LoRA takes effect
    assert (before - latents(graph("before", blur=0.0))).abs().max() > 1e-3  # and the blur stays
