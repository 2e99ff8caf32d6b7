"""Bokeh synthesis (shared/spec/bokeh-training.md sections 2.1, 2.3, 3.3) against the independent
reference in tests/reference_render.py, and the Bokeh Render (classical) node in the host."""

import math

import harness
import numpy as np
import pytest
import reference_render as ref
import torch


MODULES = {"render": "training.render", "defocus": "training.defocus", "exif": "training.exif",
           "node": "nodes.render", "errors": "attention.errors"}


@pytest.fixture(scope="module")
def mods(pack):
    class M:
        def __getattr__(self, name):  # the pack's module, as ComfyUI loaded it
            return harness.pack_module(MODULES[name])
    return M()


def scatter_cases():
    """(name, image (C, H, W), radius (H, W)) in float64, seeded."""
    g = torch.Generator().manual_seed(23)
    cases = []
    img = torch.rand(3, 20, 23, generator=g, dtype=torch.float64)
    cases.append(("random radii up to 9 px", img, (torch.rand(20, 23, generator=g, dtype=torch.float64) - 0.5) * 18))
    img = torch.rand(3, 32, 32, generator=g, dtype=torch.float64)
    cases.append(("32x32, radii up to 10 px", img, (torch.rand(32, 32, generator=g, dtype=torch.float64) - 0.5) * 20))
    ints = torch.randint(-6, 7, (17, 19), generator=g).to(torch.float64)  # |delta| = r exactly on the window rim
    cases.append(("integer radii", torch.rand(2, 17, 19, generator=g, dtype=torch.float64), ints))
    cases.append(("radius 0", torch.rand(3, 9, 11, generator=g, dtype=torch.float64), torch.zeros(9, 11, dtype=torch.float64)))
    border = torch.zeros(15, 16, dtype=torch.float64)
    border[0, 0], border[-1, -1], border[0, -1], border[7, 0] = 8.5, -7.25, 3.0, -11.9  # sources whose windows leave the image
    cases.append(("sources at the borders", torch.rand(3, 15, 16, generator=g, dtype=torch.float64), border))
    return cases


CASES = scatter_cases()


@pytest.mark.parametrize("case", range(len(CASES)), ids=[c[0] for c in CASES])
def test_scatter_equals_the_per_pixel_kernel(mods, case):
    """float64 on both sides: only the order of the additions differs, so 1e-6 (the spec's bound)
    is far above the rounding (~1e-14); the dilated map is integer maxima, compared exactly."""
    _, img, rad = CASES[case]
    bokeh, dilated = mods.render.scatter(img[None], rad[None, None])
    want_bokeh, want_dil = ref.scatter_loop(img.numpy(), rad.numpy())
    assert bokeh.dtype == torch.float64 and bokeh.shape == img[None].shape and dilated.shape == rad[None, None].shape
    assert np.abs(bokeh[0].numpy() - want_bokeh).max() < 1e-6
    assert np.array_equal(dilated[0, 0].numpy(), want_dil)


def test_scatter_float32_and_batch(mods):
    """A float32 batch of two: each row as the float64 kernel on its float32 inputs, within 1e-5
    (float32 sums of up to 441 terms of weight-normalised values in [0, 1]: ~1e-7 relative each);
    the dilation compares radii with the same distances, so it stays exact."""
    (_, img_a, rad_a), (_, img_b, rad_b) = CASES[0], CASES[4]
    img = torch.stack([img_a[:, :15, :16], img_b]).float()
    rad = torch.stack([rad_a[:15, :16], rad_b]).float()[:, None]
    bokeh, dilated = mods.render.scatter(img, rad)
    assert bokeh.dtype == torch.float32 and dilated.dtype == torch.float32
    for row in range(2):
        want_bokeh, want_dil = ref.scatter_loop(img[row].double().numpy(), rad[row, 0].double().numpy())
        assert np.abs(bokeh[row].double().numpy() - want_bokeh).max() < 1e-5
        assert np.array_equal(dilated[row, 0].double().numpy(), want_dil)


def test_classical_render_gamma_and_scale(mods):
    """Spec 2.2 step 2: Bc = scatter(I^gamma, 10 D)^(1/gamma), Ddil / 10; NaN defocus counts as 0."""
    _, img, rad = CASES[0]
    defocus = rad / 10.0
    defocus[0, 0] = float("nan")
    bokeh, dil = mods.render.classical_render(img[None], defocus[None, None], gamma=2.2)
    clean = rad.clone()
    clean[0, 0] = 0.0
    want_bokeh, want_dil = ref.scatter_loop(img.numpy() ** 2.2, clean.numpy())
    assert np.abs(bokeh[0].numpy() - want_bokeh ** (1 / 2.2)).max() < 1e-6
    assert np.array_equal(dil[0, 0].numpy(), want_dil / 10.0)
