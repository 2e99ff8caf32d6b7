"""The photo adapter (BokehDepth stage 1, shared/spec/bokehdepth-photo.md) on a real ComfyUI FLUX
used the FLUX.1 Kontext way: the reference photo's latent goes in through the host's
ReferenceLatent conditioning and the real sampler. Parity with the independent reference
(tests/reference.py, written from the spec), the invariants, the .bin loading policy, the guards."""

import logging

import harness
import pytest
import reference
import torch
from test_adapter import CFG, N_BLOCKS, host_rms_eps, rel_err


def photo_sd(seed=31):
    """Random photo-adapter tensors in the BokehDepth layout: the bokeh pairs named *_dof."""
    sd = reference.random_adapter_sd(CFG["hidden_size"], range(N_BLOCKS), seed=seed)
    return {k.replace("_bokeh.", "_dof."): v for k, v in sd.items()}


@pytest.fixture(scope="module")
def sd():
    return photo_sd()


@pytest.fixture(scope="module")
def folder(pack, sd, tmp_path_factory):
    """The released form (a torch zip of tensors, every key prefixed module.), a safetensors copy,
    the same tensors named as the text-to-image adapter, a zero adapter and a scrambled one."""
    f = tmp_path_factory.mktemp("photo_models")
    harness.write_adapter(f, {"module." + k: v for k, v in sd.items()}, name="photo_lora.bin")
    harness.write_adapter(f, sd, name="photo_copy.safetensors")
    harness.write_adapter(f, {k.replace("_dof.", "_bokeh."): v for k, v in sd.items()}, name="photo_as_text.safetensors")
    harness.write_adapter(f, {k: torch.zeros_like(v) for k, v in sd.items()}, name="photo_zero.bin")
    g = torch.Generator().manual_seed(5)
    scrambled = {k: (torch.randn(v.shape, generator=g) if ".to_k_dof." in k else v) for k, v in sd.items()}
    harness.write_adapter(f, scrambled, name="photo_scrambled.safetensors")
    return f


@pytest.fixture(scope="module")
def base_model(pack):
    return harness.tiny_flux(seed=8)


def apply(mods, model, name, k):
    loaded = mods.adapter.BokehAdapterLoader.execute(name).result[0]
    return mods.adapter.BokehApplyAdapter.execute(model, loaded, k).result[0][0]


def with_reference(cond, *latents, method=None):
    """Conditioning as ReferenceLatent (and FluxKontextMultiReferenceLatentMethod) make it."""
    from comfy_extras.nodes_edit_model import ReferenceLatent

    for lat in latents:
        cond = ReferenceLatent.execute(cond, {"samples": lat}).result[0]
    if method is not None:
        import node_helpers

        cond = node_helpers.conditioning_set_values(cond, {"reference_latents_method": method})
    return cond


def sample(model, cond, latent, steps=2, capture=None):
    """KSampler (euler/simple, cfg 1, fixed seed) on ``latent``; ``capture`` collects every
    diffusion-model call's (args, kwargs, output)."""
    import comfy.patcher_extension as ext
    import nodes

    if capture is not None:
        model = model.clone()

        def record(executor, *args, **kwargs):
            out = executor(*args, **kwargs)
            capture.append((args, kwargs, out.detach().clone()))
            return out

        model.add_wrapper_with_key(ext.WrappersMP.DIFFUSION_MODEL, "test_capture", record)
    return nodes.common_ksampler(model, 7, steps, 1.0, "euler", "simple", cond, cond, {"samples": latent})[0]["samples"]


def photo_latents(h=8, w=8, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.zeros(1, 16, h, w), torch.randn(1, 16, h, w, generator=g)


# -- parity with the independent reference -------------------------------------------------

@pytest.mark.parametrize("size", [(8, 8), (8, 12)], ids=["square", "non-square"])
@pytest.mark.parametrize("k", [10.0, 0.5])
def test_matches_reference_through_sampler(mods, base_model, sd, folder, size, k):
    latent, ref = photo_latents(*size)
    calls = []
    sample(apply(mods, base_model, "photo_lora.bin", k), with_reference(harness.flux_conditioning(1), ref), latent, steps=1, capture=calls)
    (args, kwargs, out), = calls
    x, t, ctx, y, guidance, ref_latents = args[:6]
    assert len(ref_latents) == 1 and ref_latents[0].shape[-2:] == size
    adapter = reference.Adapter(sd, value_pair="to_v_dof")
    k_input = min(max(k, 1.0), 30.0) / 30.0  # spec section 2: clamp(K, 1, 30) / 30
    want = reference.forward(base_model.model.diffusion_model.state_dict(), CFG, x, t, ctx, y, guidance, adapter=adapter,
                             k_inputs=[k_input] * x.shape[0], rms_eps=host_rms_eps(base_model), ref=ref_latents[0])
    assert out.shape == x.shape
    assert rel_err(out, want) <= 1e-5
    # The reference tokens matter, and so does the adapter: leaving either out misses clearly.
    no_ref = reference.forward(base_model.model.diffusion_model.state_dict(), CFG, x, t, ctx, y, guidance, adapter=adapter,
                               k_inputs=[k_input] * x.shape[0], rms_eps=host_rms_eps(base_model))
    assert rel_err(no_ref, want) > 1e-3
    plain = reference.forward(base_model.model.diffusion_model.state_dict(), CFG, x, t, ctx, y, guidance,
                              rms_eps=host_rms_eps(base_model), ref=ref_latents[0])
    assert rel_err(plain, want) > 1e-3


# -- invariants ------------------------------------------------------------------------------

def test_zero_photo_adapter_is_the_unpatched_model(mods, base_model, folder):
    latent, ref = photo_latents()
    cond = with_reference(harness.flux_conditioning(1), ref)
    assert torch.equal(sample(apply(mods, base_model, "photo_zero.bin", 20.0), cond, latent), sample(base_model, cond, latent))


def test_to_k_dof_changes_nothing_and_bin_equals_safetensors(mods, base_model, folder):
    latent, ref = photo_latents()
    cond = with_reference(harness.flux_conditioning(1), ref)
    released = sample(apply(mods, base_model, "photo_lora.bin", 12.0), cond, latent)
    assert torch.equal(released, sample(apply(mods, base_model, "photo_copy.safetensors", 12.0), cond, latent))
    assert torch.equal(released, sample(apply(mods, base_model, "photo_scrambled.safetensors", 12.0), cond, latent))
    assert not torch.equal(released, sample(base_model, cond, latent))


def test_k_is_clamped_to_1_30_for_the_photo_adapter_only(mods, base_model, folder):
    latent, ref = photo_latents()
    cond = with_reference(harness.flux_conditioning(1), ref)

    def run(name, k):
        return sample(apply(mods, base_model, name, k), cond, latent)

    assert torch.equal(run("photo_lora.bin", 0.5), run("photo_lora.bin", 1.0))
    assert torch.equal(run("photo_lora.bin", 45.0), run("photo_lora.bin", 30.0))
    assert torch.equal(run("photo_lora.bin", 0.0), run("photo_lora.bin", 1.0))
    assert not torch.equal(run("photo_lora.bin", 1.0), run("photo_lora.bin", 2.0))
    # The same tensors as a text-to-image adapter take K / 30 unclamped: 0.5 and 1 differ.
    assert not torch.equal(run("photo_as_text.safetensors", 0.5), run("photo_as_text.safetensors", 1.0))


def test_flavour_is_read_from_the_keys(mods, folder):
    photo = mods.ckpt.load_adapter(folder / "photo_lora.bin")
    text = mods.ckpt.load_adapter(folder / "photo_as_text.safetensors")
    assert photo.dims.flavour == "photo" and text.dims.flavour == "text"
    assert "photo adapter" in photo.describe() and "text-to-image" in text.describe()
    assert photo.unused_keys == [] and len(photo.module.state_dict()) == len(photo_sd())
    mixed = {**photo_sd(), "adapter_modules.0.to_v_bokeh.down.weight": torch.zeros(4, 16)}
    path = harness.write_adapter(folder / "mixed", mixed, name="photo_mixed.safetensors")
    with pytest.raises(mods.errors.BokehAdapterError, match="mixes"):
        mods.ckpt.load_adapter(path)


# -- the loading policy for .bin files ---------------------------------------------------------

class WouldCreateAFile:
    """Unpickled in full, this creates the file at ``path`` (a stand-in for any code a hostile
    pickle runs)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_with_code_is_refused_without_running_it(mods, sd, tmp_path):
    marker = tmp_path / "created_by_the_pickle"
    path = tmp_path / "hostile.bin"
    torch.save({**sd, "payload": WouldCreateAFile(marker)}, path)
    with pytest.raises(mods.errors.BokehAdapterError, match="restricted loader refused") as e:
        mods.ckpt.load_adapter(path)
    assert not marker.exists()
    assert "WouldCreateAFile" not in str(e.value) and "open" not in str(e.value).replace("opened", "")
    # The payload is live: full unpickling (never done by the pack) runs it.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_other_pickles_are_refused(mods, sd, tmp_path):
    cases = {
        "not_tensors.bin": lambda p: torch.save({"a": 1, "b": [2.0]}, p),
        "nested.bin": lambda p: torch.save({"state_dict": sd}, p),
        "legacy.bin": lambda p: torch.save(sd, p, _use_new_zipfile_serialization=False),
        "integers.pt": lambda p: torch.save({k: v.to(torch.int32) for k, v in sd.items()}, p),
    }
    expect = {"not_tensors.bin": "not a flat table", "nested.bin": "not a flat table",
              "legacy.bin": "not a PyTorch zip checkpoint", "integers.pt": "floating-point"}
    for name, write in cases.items():
        write(tmp_path / name)
        with pytest.raises(mods.errors.BokehAdapterError, match=expect[name]):
            mods.ckpt.load_adapter(tmp_path / name)
    torch.save(sd, tmp_path / "old.ckpt")
    with pytest.raises(mods.errors.BokehAdapterError, match="never executes pickles"):
        mods.ckpt.load_adapter(tmp_path / "old.ckpt")


def test_folder_lists_bin_files_only_when_they_are_torch_zips(mods, sd, tmp_path):
    import folder_paths

    f = tmp_path / "listing"
    harness.write_adapter(f, sd, name="listed_photo.bin")
    (f / "random_bytes.bin").write_bytes(b"\x00" * 64)
    torch.save(sd, f / "legacy_photo.bin", _use_new_zipfile_serialization=False)
    import zipfile

    with zipfile.ZipFile(f / "plain_zip.bin", "w") as z:
        z.writestr("readme.txt", "not a checkpoint")
    folder_paths.add_model_folder_path("bokeh_diffusion", str(f))
    listed = mods.folder.adapter_files()
    assert "listed_photo.bin" in listed
    assert not {"random_bytes.bin", "legacy_photo.bin", "plain_zip.bin"} & set(listed)
    assert mods.adapter.BokehAdapterLoader.validate_inputs("legacy_photo.bin") is not True


# -- guards ------------------------------------------------------------------------------------

def test_reference_guards(mods, base_model, folder, caplog):
    latent, ref = photo_latents()
    model = apply(mods, base_model, "photo_lora.bin", 10.0)
    with pytest.raises(mods.errors.BokehInputError, match="ReferenceLatent"):
        sample(model, with_reference(harness.flux_conditioning(1), ref, ref), latent, steps=1)
    with pytest.raises(mods.errors.BokehInputError, match="FluxKontextMultiReferenceLatentMethod"):
        sample(model, with_reference(harness.flux_conditioning(1), ref, method="uxo"), latent, steps=1)
    offset = sample(model, with_reference(harness.flux_conditioning(1), ref), latent, steps=1)
    index = sample(model, with_reference(harness.flux_conditioning(1), ref, method="index"), latent, steps=1)
    assert torch.equal(offset, index)  # one reference: the same position ids
    with caplog.at_level(logging.WARNING):
        sample(model, harness.flux_conditioning(1), latent, steps=1)
        text = apply(mods, base_model, "photo_as_text.safetensors", 10.0)
        sample(text, with_reference(harness.flux_conditioning(1), ref), latent, steps=1)
    assert "photo adapter, used without a reference image" in caplog.text
    assert "text-to-image adapter" in caplog.text and "with a reference latent" in caplog.text


def test_pivot_batch_refuses_the_photo_adapter(mods, base_model, folder):
    model = apply(mods, base_model, "photo_lora.bin", 10.0)
    with pytest.raises(mods.errors.BokehModelError, match="without grounding"):
        mods.pivot.BokehPivotBatch.execute([model], [{"samples": torch.zeros(1, 16, 8, 8)}], [15.0], ["0, 10"], [0.8], None, [-1])


# -- the prompt and the working size -------------------------------------------------------------

def test_prompt_template_and_working_size(mods):
    assert mods.photo.photo_prompt(10) == (
        "Set dof_cond = 10.00 (stronger background defocus); preserve subject sharpness; "
        "keep composition, lighting, and colors unchanged.")
    assert "= 0.50 (" in mods.photo.photo_prompt(0.5)  # the raw K, not the clamped one
    ws = mods.photo.working_size
    assert ws(4000, 3000, mods.photo.REFERENCE_SIZE) == (512, 512)
    for w, h in [(4000, 3000), (1080, 1920), (777, 333)]:
        W, H = ws(w, h, mods.photo.ASPECT_SIZE)
        assert W % 16 == 0 and H % 16 == 0
        assert abs(W * H / 512**2 - 1) < 0.1 and abs(W / H - w / h) / (w / h) < 0.05
    image = torch.rand(1, 300, 400, 3)
    out, W, H = mods.photo.BokehPhotoResize.execute(image, mods.photo.ASPECT_SIZE).result
    assert out.shape == (1, H, W, 3) and (W, H) == ws(400, 300, mods.photo.ASPECT_SIZE)
