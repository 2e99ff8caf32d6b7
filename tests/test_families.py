"""Model families at Apply Bokeh Adapter, on tiny models built with each host's own classes: FLUX.1
(dev, schnell) runs; FLUX.2 and FLUX variants with other blocks are refused by name; Chroma runs
with a warning (its blocks are FLUX.1's and the pack's patches reach them: measured below); a
diffusion model that is not ComfyUI's (a wrapper with its own kernels) is refused with the reason."""

import types

import harness
import pytest
import reference
import torch

CFG = harness.TINY
N_BLOCKS = CFG["depth"] + CFG["depth_single_blocks"]
SCHEDULE = torch.tensor([1.0, 0.8, 0.5, 0.2, 0.0])


@pytest.fixture(scope="module")
def mods(mods, tmp_path_factory):
    """The shared modules (tests/conftest.py) and this module's adapter, loaded (mods.loaded)."""
    harness.write_adapter(tmp_path_factory.mktemp("families_models"), reference.random_adapter_sd(CFG["hidden_size"], range(N_BLOCKS), seed=51),
                          name="families.safetensors")
    loaded = mods.adapter.BokehAdapterLoader.execute("families.safetensors").result[0]
    return types.SimpleNamespace(adapter=mods.adapter, binding=mods.binding, patch=mods.patch, errors=mods.errors, loaded=loaded)


def apply(mods, model, blur):
    out = mods.adapter.BokehApplyAdapter.execute(model, mods.loaded, blur).result[0]
    return out[0] if isinstance(out, list) else out  # an output list where Apply takes lists


def refused(mods, model):
    before = dict(model.object_patches)
    with pytest.raises(mods.errors.BokehModelError) as err:
        apply(mods, model, 10.0)
    assert model.object_patches == before and "\n" not in str(err.value)  # nothing half-patched, one line
    return str(err.value)


def forward(model, rows=1, **kw):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(rows, 16, 8, 8, generator=g)
    ctx = torch.randn(rows, 8, 64, generator=g)
    t = torch.full((rows,), 0.7)
    harness.load_for_inference(model)
    to = harness.sampling_transformer_options(model, cond_or_uncond=[0], sigmas=t, sample_sigmas=SCHEDULE)
    with torch.no_grad():
        return model.model.diffusion_model(x, t, ctx, guidance=torch.full((rows,), 3.0), transformer_options=to, **kw)


@pytest.mark.parametrize("variant", [{}, {"guidance_embed": False}], ids=["dev", "schnell"])
def test_flux1_runs(mods, variant):
    """FLUX.1 dev (Krea has its architecture and files) and schnell (no guidance embedding). Kontext
    (reference latents) runs in tests/test_photo.py."""
    model = harness.tiny_flux(seed=2, **variant)
    y = torch.zeros(1, CFG["vec_in_dim"])
    assert (forward(apply(mods, model, 30.0), y=y) - forward(apply(mods, model, 0.0), y=y)).abs().max() > 1e-3


def test_flux2_refused_by_name(mods):
    msg = refused(mods, harness.tiny_flux2())
    assert "FLUX.2" in msg and "FLUX.1" in msg and "UNETLoader" in msg


def test_flux_variant_with_other_blocks_refused(mods):
    msg = refused(mods, harness.tiny_flux(seed=2, mlp_silu_act=True))
    assert "mlp_silu_act=True" in msg and "FLUX.1" in msg


def test_chroma_runs_with_a_warning(mods, caplog):
    """Chroma's forward reports the running block to attention overrides like FLUX's: the blur
    and the grounding reach its blocks. Its modulation is its own and no adapter was trained on
    it, hence the warning."""
    chroma = harness.tiny_chroma(seed=3)
    if chroma is None:
        pytest.skip("this ComfyUI has no Chroma model class")
    with caplog.at_level("WARNING"):
        blurred = apply(mods, chroma, 30.0)
    assert "Chroma" in caplog.text and "trained" in caplog.text
    assert (forward(blurred) - forward(apply(mods, chroma, 0.0))).abs().max() > 1e-3
    B, P = mods.binding, mods.patch
    sweep = P.rebind(blurred, k_values=[15.0, 0.0, 30.0], grounding=B.Grounding(pivot=0, fraction=1.0, steps=-1))
    free = P.rebind(blurred, k_values=[15.0, 0.0, 30.0], grounding=None)
    grounded, ungrounded = forward(sweep, rows=3), forward(free, rows=3)
    assert (grounded[1:] - ungrounded[1:]).abs().max() > 1e-3  # the targets are grounded on the pivot
    assert torch.allclose(grounded[:1], ungrounded[:1], rtol=0, atol=1e-6)  # and the pivot is not


class WrappedFlux(torch.nn.Module):
    """Stands in for a diffusion model that is not ComfyUI's (Nunchaku's ComfyFluxWrapper runs its
    own SVDQuant kernels): a module of another package in the diffusion_model slot."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, *args, **kwargs):
        return self.inner(*args, **kwargs)


def test_model_whose_blocks_are_not_comfyuis_refused(mods):
    model = harness.tiny_flux(seed=2)
    model.model.diffusion_model = WrappedFlux(model.model.diffusion_model)
    msg = refused(mods, model)
    assert "WrappedFlux" in msg and "not ComfyUI's own FLUX" in msg and "Nunchaku" in msg


def test_other_host_family_refused(mods):
    msg = refused(mods, harness.tiny_sd15())
    assert "FLUX.1" in msg and "UNetModel" in msg
