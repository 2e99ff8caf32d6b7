"""One grounded sweep shared out over participants (ComfyUI-Distributed's master and workers), in
process: the slicing, Bokeh Pivot Batch's Participant inputs through the real sampler on a tiny
FLUX, and Bokeh Gather Sweep's checks and 8-bit evening-out (against the collector's own image
code from the real archive). The three-server runs are in tests/test_distributed_servers.py."""

from __future__ import annotations

import importlib.util

import distributed_pack
import harness
import pytest
import torch
from test_adapter import CFG, N_BLOCKS, apply, rel_err
from test_grounding import empty_latent, sample

TARGETS = [0.0, 8.0, 16.0, 22.0, 28.0]  # N = 5: slices of 2, 2, 1 over three participants


@pytest.fixture(scope="module")
def model(pack, tmp_path_factory):
    sd = harness.random_adapter_sd(CFG["hidden_size"], range(N_BLOCKS), seed=23)
    path = harness.write_adapter(tmp_path_factory.mktemp("dist_models"), sd, name="dist.safetensors")
    return apply(harness.tiny_flux(seed=6), path, 15.0)


def pivot_batch(mods, model, targets, participant=None, participants=None):
    text = ", ".join(f"{k:g}" for k in targets)
    return mods.pivot.BokehPivotBatch.execute([model], [empty_latent()], [15.0], [text], [0.8], None, [-1],
                                              participant, participants).result


# -- the plan --------------------------------------------------------------------------------

def test_slices_are_contiguous_balanced_and_the_first_ones_larger(mods):
    bounds = mods.parts.slice_bounds
    assert bounds(5, 3) == [(0, 2), (2, 4), (4, 5)]
    assert bounds(12, 3) == [(0, 4), (4, 8), (8, 12)]
    assert bounds(2, 3) == [(0, 1), (1, 2), (2, 2)]  # P > N: the last participant renders the pivot alone
    assert bounds(4, 1) == [(0, 4)]
    for n in range(0, 14):
        for p in range(1, 7):
            levels = [float(i) for i in range(n)]
            slices = [mods.parts.own_slice(levels, i, p) for i in range(p)]
            sizes = [len(s) for s in slices]
            assert sum(slices, []) == levels and max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True), (n, p)
            plan = mods.parts.PlannedSweep(k_values=(15.0, *levels), pivot_row=0, participants=p)
            rows = mods.parts.participant_rows(plan)
            assert mods.parts.expected_rows(plan) == p + n == rows[-1][1]
            assert [b - a for a, b in rows] == [1 + s for s in sizes]


def test_bad_participant_numbers_are_refused(mods):
    check = mods.parts.check_participant
    assert check(2, 3) == (2, 3) and check(0, 1) == (0, 1)
    with pytest.raises(mods.errors.BokehInputError, match="participant is 3 but participants is 3; expected 0 to 2"):
        check(3, 3)
    with pytest.raises(mods.errors.BokehInputError, match="participants is 0; expected 1"):
        check(0, 0)
    with pytest.raises(mods.errors.BokehInputError, match="whole numbers"):
        check("worker_1", 3)
    with pytest.raises(mods.errors.BokehInputError, match="DistributedSeed"):
        check(1125899906842, 3)  # DistributedSeed left at its default seed


# -- Pivot Batch through the real sampler ------------------------------------------------------

def test_each_participant_renders_the_pivot_and_its_slice_of_the_single_batch(mods, model):
    whole, latent, sweep = pivot_batch(mods, model, TARGETS)
    single = sample(whole, latent, steps=2)
    assert sweep == mods.parts.PlannedSweep(k_values=(15.0, *TARGETS), pivot_row=0, participants=1)
    rows = []
    for me, (start, end) in enumerate([(0, 2), (2, 4), (4, 5)]):
        m, latent, plan = pivot_batch(mods, model, TARGETS, [me], [3])
        assert plan == mods.parts.PlannedSweep(k_values=(15.0, *TARGETS), pivot_row=0, participants=3)  # the whole plan
        assert latent["samples"].shape[0] == 1 + end - start and latent["batch_index"] == [0] * (1 + end - start)
        out = sample(m, latent, steps=2)
        # Same seed, same noise (equal batch_index), the pivot attends to itself only: every
        # participant's pivot row is the single batch's pivot. Batches of 3, 3 and 2 rows against
        # 6: the sums may be ordered differently per batch shape, hence a float tolerance.
        assert rel_err(out[0], single[0]) <= 1e-5, me
        assert rel_err(out[1:], single[1 + start:1 + end]) <= 1e-5, me
        rows.append(out)
    assert sum(r.shape[0] for r in rows) == 3 + len(TARGETS)


def test_more_participants_than_targets(mods, model):
    single = sample(*pivot_batch(mods, model, [0.0, 28.0])[:2], steps=2)
    last, latent, plan = pivot_batch(mods, model, [0.0, 28.0], [2], [3])
    assert latent["samples"].shape[0] == 1 and plan.k_values == (15.0, 0.0, 28.0) and plan.participants == 3
    assert rel_err(sample(last, latent, steps=2)[0], single[0]) <= 1e-5  # the pivot alone


# -- Gather ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def collector_image_code():
    """utils/image.py of the real ComfyUI-Distributed archive (torch, numpy and Pillow only): the
    functions its collector sends and receives workers' images with."""
    path = distributed_pack.unpacked_or_skip() / "utils" / "image.py"
    spec = importlib.util.spec_from_file_location("distributed_image_utils", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def through_collector(code, images):
    """What the master receives of a worker's rows: each one sent as PNG and read back."""
    import io

    from PIL import Image

    out = []
    for i in range(images.shape[0]):
        buf = io.BytesIO()
        code.tensor_to_pil(images[i:i + 1], 0).save(buf, format="PNG", compress_level=0)
        buf.seek(0)
        out.append(code.pil_to_tensor(Image.open(buf)))
    return torch.cat(out)


def test_the_master_rows_get_exactly_the_collectors_round_trip(mods, collector_image_code):
    g = torch.Generator().manual_seed(5)
    images = torch.rand(3, 16, 16, 3, generator=g)
    images[0, 0, :4, 0] = torch.tensor([0.0, 1.0, 37 / 255, 254.9999 / 255])  # on and near the level boundaries
    assert torch.equal(mods.parts.as_collected(images), through_collector(collector_image_code, images))
    levels = torch.arange(256, dtype=torch.float32).div(255.0).reshape(1, 16, 16, 1).expand(1, 16, 16, 3)
    assert torch.equal(mods.parts.as_collected(levels), levels)  # the workers' rows are left as they came


def collected(code, single, participants):
    """The collector's output for a sweep whose single batch is ``single`` (pivot first): the
    master's rows as rendered, each worker's through the PNG round trip, master first."""
    n = single.shape[0] - 1
    parts = []
    for me, (a, b) in enumerate(harness.pack_module("sweep.participants").slice_bounds(n, participants)):
        rows = torch.cat([single[:1], single[1 + a:1 + b]])
        parts.append(rows if me == 0 else through_collector(code, rows))
    return torch.cat(parts)


def test_gather_rebuilds_the_sweep_every_row_rounded_alike(mods, collector_image_code):
    single = torch.rand(6, 8, 8, 3, generator=torch.Generator().manual_seed(9))
    plan = mods.parts.PlannedSweep(k_values=(15.0, *TARGETS), pivot_row=0, participants=3)
    images, sweep = mods.gather.BokehGatherSweep.execute(collected(collector_image_code, single, 3), plan).result
    assert torch.equal(images, mods.parts.as_collected(single))
    assert sweep == mods.levels.Sweep(k_values=(15.0, *TARGETS), pivot_row=0)
    # P > N: the third participant's rows are its pivot alone
    plan = mods.parts.PlannedSweep(k_values=(15.0, 0.0, 28.0), pivot_row=0, participants=3)
    images, _ = mods.gather.BokehGatherSweep.execute(collected(collector_image_code, single[:3], 3), plan).result
    assert torch.equal(images, mods.parts.as_collected(single[:3]))


def test_gather_refuses_missing_rows_and_foreign_pivots(mods, collector_image_code):
    run = mods.gather.BokehGatherSweep.execute
    E = mods.errors
    single = torch.rand(6, 8, 8, 3, generator=torch.Generator().manual_seed(9))
    plan = mods.parts.PlannedSweep(k_values=(15.0, *TARGETS), pivot_row=0, participants=3)
    rows = collected(collector_image_code, single, 3)
    with pytest.raises(E.BokehInputError, match=r"got 6 images; expected 8 .*offline.*timed out"):
        run(rows[:6], plan)  # the last worker's 2 rows never came
    odd = rows.clone()
    odd[6:] = torch.rand(2, 8, 8, 3, generator=torch.Generator().manual_seed(99))  # worker 2 rendered another scene
    with pytest.raises(E.BokehModelError, match=r"participant 2 .*differs by .*a different seed") as err:
        run(odd, plan)
    assert "participant 1 " not in str(err.value)
    near = rows.clone()
    near[3] = (near[3] + 1 / 255).clamp(0, 1)  # one level off everywhere: rounding, not another image
    assert run(near, plan).result[0].shape[0] == 6
    with pytest.raises(E.BokehInputError, match="delegate-only"):
        run(rows, None)
    with pytest.raises(E.BokehInputError, match="from Bokeh Pivot Batch"):
        run(rows, mods.levels.Sweep(k_values=(1.0, 2.0), pivot_row=None))
