"""Bokeh synthesis (shared/spec/bokeh-training.md sections 2.1, 2.3, 3.3) against the independent
reference in tests/reference_render.py, and the Bokeh Render (classical) node in the host."""

import harness
import numpy as np
import pytest
import reference_render as ref
import torch


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


# -- the defocus map of spec 2.1 ----------------------------------------------------------------

def scene(seed, subject_depth, h=24, w=28):
    """(depth (H, W) float64, uint8 mask): a textured background at 30..80 m, a box subject at
    ``subject_depth`` = (near, far) m."""
    g = torch.Generator().manual_seed(seed)
    depth = 30 + 50 * torch.rand(h, w, generator=g, dtype=torch.float64)
    mask = torch.zeros(h, w, dtype=torch.uint8)
    box = (slice(h // 5, h - h // 5), slice(w // 4, w - w // 4))
    mask[box] = 255
    near, far = subject_depth
    depth[box] = near + (far - near) * torch.rand(depth[box].shape, generator=g, dtype=torch.float64)
    return depth, mask


def check_against_reference(mods, depth, mask, k=17.0):
    out = mods.defocus.defocus_map(depth[None, None], None if mask is None else mask[None, None].double() / 255.0, k)
    want, focus, flat = ref.defocus_np(depth.numpy(), None if mask is None else mask.numpy(), k)
    # float64 both sides, the same formulas; the medians and the percentile are order statistics
    assert np.abs(out.defocus[0, 0].numpy() - want).max() < 1e-12
    assert abs(float(out.focus[0]) - focus) < 1e-12 and bool(out.flat[0]) == flat
    return out, flat


def test_defocus_deep_subject_focuses_on_its_nearer_half(mods):
    depth, mask = scene(1, (2.0, 20.0))  # subject 18 m deep: no flat override
    out, flat = check_against_reference(mods, depth, mask)
    assert not flat
    assert out.defocus[0, 0][mask == 0].max() < 0  # the background is behind the focus plane: negative


def test_defocus_flat_subject_is_all_in_focus(mods):
    depth, mask = scene(2, (1.5, 3.0))
    out, flat = check_against_reference(mods, depth, mask)
    assert flat
    d96 = np.percentile(depth[mask > 127].numpy(), 96)
    near = (depth <= d96) & (mask > 127)
    assert torch.all(out.defocus[0, 0][near] == 0)  # disp[C] = disp_focus exactly


def test_defocus_flat_focus_on_the_image_scale(mods):
    """The deviation for the node: 1/d96 normalised over the whole image's inverse depth, the scale
    of the disparity map (the spec normalises it over the foreground only)."""
    depth, mask = scene(2, (1.5, 3.0))
    out = mods.defocus.defocus_map(depth[None], mask[None].double() / 255, 10.0, flat_focus="image")
    inv = 1.0 / depth.numpy()
    d96 = np.percentile(depth[mask > 127].numpy(), 96)
    want = (1.0 / d96 - inv.min()) / (inv.max() - inv.min() + 1e-8)
    assert abs(float(out.focus[0]) - want) < 1e-12 and bool(out.flat[0])
    assert out.defocus[0, 0][mask == 0].max() < 0 < float(out.focus[0])


def test_defocus_empty_or_missing_mask_focuses_on_the_median(mods):
    depth, _ = scene(3, (2.0, 20.0))
    empty = torch.zeros_like(depth, dtype=torch.uint8)
    a, _ = check_against_reference(mods, depth, empty)
    b, _ = check_against_reference(mods, depth, None)
    assert torch.equal(a.defocus, b.defocus) and float(a.focus[0]) == float(np.median(a.disparity.numpy()))


def test_defocus_invalid_depth(mods):
    """NaN, inf, 0 and negative depth are invalid: they take the median valid disparity."""
    depth, mask = scene(4, (2.0, 20.0))
    depth[0, :4] = float("nan")
    depth[1, :3] = float("inf")
    depth[2, :2] = 0.0
    depth[3, 0] = -5.0
    depth[6, 9] = float("nan")  # inside the subject: out of the foreground set too
    out, _ = check_against_reference(mods, depth, mask)
    invalid = ~torch.isfinite(depth) | (depth <= 1e-6)
    assert torch.isfinite(out.defocus).all() and len(set(out.disparity[0, 0][invalid].tolist())) == 1


def test_defocus_no_valid_depth_or_no_range_is_sharp(mods):
    nothing = torch.full((10, 12), float("nan"), dtype=torch.float64)
    out, _ = check_against_reference(mods, nothing, None)
    assert torch.all(out.defocus == 0) and torch.all(out.disparity == 0.5)
    flat_scene = torch.full((10, 12), 4.0, dtype=torch.float64)
    mask = torch.zeros(10, 12, dtype=torch.uint8)
    mask[2:6, 3:8] = 255
    check_against_reference(mods, flat_scene, mask)  # the spec's quirk: disp 0.5, the override's focus 0
    check_against_reference(mods, flat_scene, None)


def test_defocus_batch_per_image_k_and_fixed_focus(mods):
    (d1, m1), (d2, m2) = scene(5, (2.0, 20.0)), scene(6, (1.0, 2.0))
    depth, mask = torch.stack([d1, d2])[:, None], torch.stack([m1, m2])[:, None].double() / 255
    out = mods.defocus.defocus_map(depth, mask, torch.tensor([5.0, 25.0], dtype=torch.float64))
    for i, (d, m, k) in enumerate(((d1, m1, 5.0), (d2, m2, 25.0))):
        assert np.abs(out.defocus[i, 0].numpy() - ref.defocus_np(d.numpy(), m.numpy(), k)[0]).max() < 1e-12
    fixed = mods.defocus.defocus_map(depth, mask, 10.0, focus=0.25)
    assert torch.equal(fixed.focus, torch.full((2,), 0.25, dtype=torch.float64))
    assert torch.allclose(fixed.defocus, 10.0 * (fixed.disparity - 0.25) / 10.0, rtol=0, atol=1e-15)


def test_render_bokeh_matches_the_reference_pipeline(mods):
    depth, mask = scene(7, (1.5, 3.0), h=16, w=18)
    g = torch.Generator().manual_seed(8)
    img = torch.rand(3, 16, 18, generator=g, dtype=torch.float64)
    bokeh, defocus = mods.render.render_bokeh(img[None], depth[None, None], mask[None, None].double() / 255, 12.0)
    want_def = ref.defocus_np(depth.numpy(), mask.numpy(), 12.0)[0]
    want, _ = ref.scatter_loop(img.numpy() ** 2.2, 10.0 * want_def)
    assert np.abs(bokeh[0].numpy() - want ** (1 / 2.2)).max() < 1e-6  # float64 both sides


# -- K from EXIF (spec 3.3) ---------------------------------------------------------------------

WORKED = [  # N, fmm, f35mm, s1, W, H, K, sensor width: the spec's table (three decimals)
    (2.0, 50, 50, 1.8, 1920, 1080, 32.728, 37.713),
    (2.8, 85, 85, 3.2, 1920, 1080, 67.476, 37.713),
    (1.8, 50, 50, 2.5, 1024, 768, 20.962, 34.616),
    (5.6, 35, 52, 4.0, 1280, 720, 5.564, 25.384),
]


@pytest.mark.parametrize("row", WORKED)
def test_k_worked_values(mods, row):
    *lens, k, sensor = row
    assert round(mods.exif.k_from_exif(*lens), 3) == k
    assert round(mods.exif.sensor_width_mm(lens[1], lens[2], lens[4], lens[5]), 3) == sensor


def test_k_on_a_grid(mods):
    """Against the reference formula, float64 both sides: 1e-12 relative covers the rounding."""
    count = 0
    for n in (1.4, 2.8, 8.0):
        for fmm in (24.0, 50.0, 200.0):
            for f35 in (fmm, 1.53 * fmm, 0.0):  # 0 = unknown: same as fmm
                for s1 in (fmm / 1000 + 1e-3, 0.5, 3.0, 100.0):  # s1 close to f, then near to far
                    for w, h in ((1920, 1080), (1080, 1920), (1024, 768)):  # portrait too
                        got = mods.exif.k_from_exif(n, fmm, f35, s1, w, h)
                        want, _ = ref.k_exif(n, fmm, f35 or fmm, s1, w, h)
                        assert abs(got - want) <= 1e-12 * want
                        count += 1
    assert count == 324
    # focusing closer than f: the formula takes the absolute value
    assert mods.exif.k_from_exif(2.0, 50, 50, 0.04, 100, 100) == pytest.approx(ref.k_exif(2.0, 50, 50, 0.04, 100, 100)[0], rel=1e-12)


def test_k_bad_values(mods):
    with pytest.raises(mods.errors.BokehInputError, match="f-number"):
        mods.exif.k_from_exif(0.0, 50, 50, 2.0, 100, 100)
    with pytest.raises(mods.errors.BokehInputError, match="focus distance"):
        mods.exif.k_from_exif(2.0, 50, 50, float("nan"), 100, 100)
    with pytest.raises(mods.errors.BokehInputError, match="equals the focal length"):
        mods.exif.k_from_exif(2.0, 50, 50, 0.05, 100, 100)


def test_parse_exif_strings(mods):
    from PIL.TiffImagePlugin import IFDRational

    parse = mods.exif.parse_number
    assert parse("50 mm") == 50.0 and parse("f/2.8") == 2.8 and parse("1/2") == 0.5 and parse("2.5 m") == 2.5
    assert parse(IFDRational(28, 10)) == 2.8 and parse(35) == 35.0
    assert parse("unknown") is None and parse(None) is None and parse("1/0") is None


def write_photo(path, tags, size=(64, 48)):
    from PIL import Image

    img = Image.new("RGB", size, (120, 90, 60))
    exif = Image.Exif()
    ifd = exif.get_ifd(0x8769)
    ifd.update(tags)
    img.save(path, exif=exif)
    return path


def test_k_from_an_image_file(mods, tmp_path):
    from PIL.TiffImagePlugin import IFDRational

    e = mods.exif
    tags = {e.F_NUMBER: IFDRational(28, 10), e.FOCAL_LENGTH: IFDRational(85, 1), e.FOCAL_35MM: 128,
            e.SUBJECT_DISTANCE: IFDRational(32, 10)}
    photo = write_photo(tmp_path / "lens.jpg", tags)
    lens = e.read_lens(photo)
    assert (lens.f_number, lens.focal_mm, lens.focal_35mm, lens.focus_m, lens.width, lens.height) == (2.8, 85.0, 128.0, 3.2, 64, 48)
    assert e.k_from_file(photo) == pytest.approx(ref.k_exif(2.8, 85, 128, 3.2, 64, 48)[0], rel=1e-12)
    assert e.k_from_file(photo, focus_m=1.0) == pytest.approx(ref.k_exif(2.8, 85, 128, 1.0, 64, 48)[0], rel=1e-12)
    del tags[e.SUBJECT_DISTANCE], tags[e.FOCAL_35MM]
    no_focus = write_photo(tmp_path / "nofocus.jpg", tags)
    with pytest.raises(mods.errors.BokehInputError, match="nofocus.jpg: the EXIF has no SubjectDistance"):
        e.k_from_file(no_focus)
    assert e.k_from_file(no_focus, focus_m=2.0) == pytest.approx(ref.k_exif(2.8, 85, 85, 2.0, 64, 48)[0], rel=1e-12)
    with pytest.raises(mods.errors.BokehInputError, match="bare.jpg: the EXIF has no FNumber and FocalLength"):
        e.k_from_file(write_photo(tmp_path / "bare.jpg", {}))
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(mods.errors.BokehInputError, match="text.jpg: not a readable image"):
        e.read_lens(tmp_path / "text.jpg")


# -- the Bokeh Render (classical) node ----------------------------------------------------------

def node_scene(size=48, seed=9):
    """A textured photo (1, H, W, 3), its near-bright depth map as an IMAGE (subject 0.9 on a
    background 0.1) and the subject mask (1, H, W): a centred box of half the side."""
    g = torch.Generator().manual_seed(seed)
    photo = torch.rand(1, size, size, 3, generator=g)
    depth = torch.full((1, size, size, 3), 0.1)
    mask = torch.zeros(1, size, size)
    box = (0, slice(size // 4, size - size // 4), slice(size // 4, size - size // 4))
    depth[box] = 0.9
    mask[box] = 1.0
    return photo, depth, mask


def run_node(mods, image, depth, **kw):
    return mods.node.BokehRenderClassical.execute(image, depth, **kw).result


def test_node_blurs_the_background_and_keeps_the_subject(mods):
    photo, depth, mask = node_scene()
    out, blur_map = run_node(mods, photo, depth, blur=6.0, mask=mask)
    assert out.shape == photo.shape and out.dtype == photo.dtype and blur_map.shape == mask.shape
    # > 6 px from any background source: only the radius-0 kernel's 0.28 % leak to the 8 neighbours,
    # which gamma 2.2 makes up to a few % on a dark pixel between bright ones (noise texture)
    inner = (0, slice(20, 28), slice(20, 28))
    edge = (0, slice(0, 6), slice(None))  # background far from the subject
    assert (out[inner] - photo[inner]).abs().mean() < 0.01
    assert (out[edge] - photo[edge]).abs().mean() > 0.1  # noise averaged over a 6 px disc
    # the subject is exactly in focus; the background is a whole disparity unit behind it
    assert torch.all(blur_map[mask > 0.5] == 0) and torch.allclose(blur_map[mask < 0.5], torch.tensor(1.0))
    # Focus plane on the background instead: the background stays, the subject blurs
    out2, map2 = run_node(mods, photo, depth, blur=6.0, focus="focus plane", focus_plane=0.0, mask=mask)
    assert (out2[edge] - photo[edge]).abs().mean() < 0.01 and (out2[inner] - photo[inner]).abs().mean() > 0.1
    assert torch.all(map2[mask < 0.5] == 0)


def test_node_depth_as_mask_far_bright_and_batches(mods):
    """The same scene with the depth as a MASK coded far-bright gives the same picture; one depth
    map serves a batch of two; K 0 renders (almost) nothing: the radius-0 kernel's 0.28 % leak."""
    photo, depth, mask = node_scene()
    near, _ = run_node(mods, photo, depth, blur=4.0, mask=mask)
    far_mask = 1.0 - depth[..., 0] + 0.0  # 0.1 subject, 0.9 background: far is bright
    far, _ = run_node(mods, photo, far_mask, depth_order="far is bright (distance)", blur=4.0, mask=mask)
    # the two codings give disparities that differ in rounding only (1/v vs v), hence not bit-equal
    assert (near - far).abs().max() < 1e-4
    batch, _ = run_node(mods, torch.cat([photo, photo.flip(1)]), depth, blur=4.0, mask=mask)
    assert batch.shape[0] == 2 and torch.allclose(batch[0], near, atol=1e-6)
    still, _ = run_node(mods, photo, depth, blur=0.0, mask=mask)
    assert (still - photo).abs().mean() < 0.01


def test_node_bad_inputs(mods):
    """Each user mistake gets the pack's typed error, in one line."""
    photo, depth, mask = node_scene(16)
    nan_depth = depth.clone()
    nan_depth[0, 3, 3, 0] = float("nan")
    cases = [
        (dict(image=photo, depth=nan_depth), "NaN"),
        (dict(image=photo, depth=depth[:, :12]), "same size"),
        (dict(image=photo, depth=depth, mask=torch.zeros_like(mask)), "subject mask is empty"),
        (dict(image=photo, depth=depth, mask=mask[:, :, :8]), "same size"),
        (dict(image=photo[..., :2], depth=depth), "expected an IMAGE"),
        (dict(image=photo, depth=depth[..., :2]), "2 channels"),
        (dict(image=photo, depth=torch.cat([depth] * 3)), "3 maps for 1 images"),
        (dict(image=photo, depth=depth, blur=-1.0), "expected Blur"),
        # a full disparity range focused at the far end: radius 64 px, 131^2 passes over 2.4 MP, refused
        (dict(image=torch.zeros(1, 1536, 1536, 3), depth=torch.linspace(0, 1, 1536).expand(1, 1536, 1536), blur=64.0,
              focus="focus plane", focus_plane=0.0), "lower Blur"),
    ]
    for kw, message in cases:
        with pytest.raises(mods.errors.BokehInputError, match=message) as err:
            mods.node.BokehRenderClassical.execute(**kw)
        assert "\n" not in str(err.value)


def test_node_in_the_executor(pack):
    """Through the host's validate_prompt and PromptExecutor: the depth input takes an IMAGE or a
    MASK from core nodes; a wrong-size depth map fails with the pack's error."""
    g = {
        "load": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
        "scale": {"class_type": "ImageScale", "inputs": {"image": ["load", 0], "upscale_method": "bilinear",
                                                         "width": 40, "height": 32, "crop": "disabled"}},
        "depth": {"class_type": "ImageToMask", "inputs": {"image": ["scale", 0], "channel": "red"}},
        "subject": {"class_type": "ThresholdMask", "inputs": {"mask": ["depth", 0], "value": 0.5}},
        "render": {"class_type": "BokehRenderClassical", "inputs": {
            "image": ["scale", 0], "depth": ["depth", 0], "depth_order": "near is bright (Depth Anything, MiDaS)",
            "blur": 5.0, "focus": "subject mask", "focus_plane": 0.5, "subject_sharp": True, "gamma": 2.2,
            "mask": ["subject", 0]}},
        "render_image_depth": {"class_type": "BokehRenderClassical", "inputs": {
            "image": ["scale", 0], "depth": ["scale", 0], "depth_order": "far is bright (distance)",
            "blur": 3.0, "focus": "focus plane", "focus_plane": 0.3, "subject_sharp": False, "gamma": 2.2}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["render", 0], "filename_prefix": "bokeh_render"}},
        "save2": {"class_type": "SaveImage", "inputs": {"images": ["render_image_depth", 0], "filename_prefix": "bokeh_render"}},
    }
    result = harness.run_prompt(g)
    assert result.ok, result.errors
    photo = result.outputs["scale"][0][0]
    for node in ("render", "render_image_depth"):
        out = result.outputs[node][0][0]
        assert out.shape == (1, 32, 40, 3) and (out - photo).abs().mean() > 1e-3
    assert result.ui["save"]["images"] and result.ui["save2"]["images"]
    g["small"] = {"class_type": "ImageScale", "inputs": {"image": ["load", 0], "upscale_method": "bilinear",
                                                         "width": 20, "height": 16, "crop": "disabled"}}
    g["render"]["inputs"]["depth"] = ["small", 0]
    result = harness.run_prompt(g)
    assert not result.ok and result.errors["exception_type"].endswith("BokehInputError")
    assert "20x16 pixels but the image is 40x32" in result.errors["exception_message"]
