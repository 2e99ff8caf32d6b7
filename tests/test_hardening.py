"""Untrusted and careless input, through the real loader and ComfyUI's own validation and executor:
no path a client chose is opened, no file byte travels back, adapters are freed, every bad
input is a typed error that says what to do."""

import copy
import gc
import os
import struct
import weakref

import harness
import pytest
import reference
import torch
from safetensors.torch import load_file, save_file

CFG = harness.TINY
N_BLOCKS = CFG["depth"] + CFG["depth_single_blocks"]


@pytest.fixture(scope="module")
def models_dir(pack, tmp_path_factory):
    """A bokeh_diffusion model folder with one good adapter in it."""
    folder = tmp_path_factory.mktemp("hardening_models")
    harness.write_adapter(folder, reference.random_adapter_sd(CFG["hidden_size"], range(N_BLOCKS), seed=21), name="hard_good.safetensors")
    return folder


def tiny_adapter_bytes(seed=0, **kw):
    sd = reference.random_adapter_sd(CFG["hidden_size"], [0], seed=seed, **kw)
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in sd.items()})


# -- 1-3: only listed files are opened; answers carry no file bytes and no server paths ---------

HOSTILE_NAMES = ["/etc/passwd", "/proc/self/environ", "../../x", "../../../etc/passwd", "a\0b.safetensors",
                 "x" * 5000 + ".safetensors", "hard_good.safetensors/../../../../etc/passwd"]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n[:24]))
def test_hostile_adapter_names_refused_at_queue_time(models_dir, name):
    result = harness.run_prompt(harness.tiny_graph(name, steps=1))
    assert not result.ok and "node_errors" in result.errors, result.errors  # refused before anything ran
    node_errors = result.errors["node_errors"]
    assert "loader" in node_errors
    text = repr(result.errors)
    assert "not in the list" in text
    assert "root:" not in text and "PATH=" not in text and "HOME=" not in text
    assert str(models_dir) not in text
    assert len(text) < 5000  # a 5,000-character name is not echoed whole


def test_a_valid_adapter_outside_the_folder_is_not_opened(mods, tmp_path):
    """A path to a perfectly good adapter outside the model folders: if the node opened paths,
    this would load. It must be refused by name, before any open."""
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(tiny_adapter_bytes())
    with pytest.raises(mods.errors.BokehAdapterError, match="not in the list"):
        mods.adapter.BokehAdapterLoader.execute(str(outside))
    assert mods.adapter.BokehAdapterLoader.validate_inputs(str(outside)) != True  # noqa: E712


def test_missing_adapter_named_with_missing_flux_files(models_dir):
    prompt = harness.tiny_graph("no_such_adapter.safetensors", steps=1)
    prompt["model"] = {"class_type": "UNETLoader", "inputs": {"unet_name": "no_such_flux.safetensors", "weight_dtype": "default"}}
    result = harness.run_prompt(prompt)
    assert not result.ok
    node_errors = result.errors["node_errors"]
    assert {"loader", "model"} <= set(node_errors), node_errors
    assert "no_such_adapter.safetensors" in repr(node_errors["loader"])


def test_errors_name_files_by_model_folder_name(mods, models_dir):
    sub = models_dir / "sub"
    sub.mkdir(exist_ok=True)
    save_file({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.zeros(4, 64)}, str(sub / "lora_here.safetensors"))
    result = harness.run_prompt(harness.tiny_graph("sub/lora_here.safetensors", steps=1))
    assert not result.ok
    message = result.errors["exception_message"]
    assert "sub/lora_here.safetensors" in message and "LoRA" in message
    assert str(models_dir) not in message


def test_header_errors_echo_no_file_bytes(mods, models_dir):
    """A text file with a .safetensors name: the error says what it is not, without its bytes or
    numbers made from them (the old "header length N" leaked the first 8 bytes)."""
    path = models_dir / "hard_text.safetensors"
    secret = b"root:x:0:0:root:/root:/bin/bash\n" * 4
    path.write_bytes(secret)
    with pytest.raises(mods.errors.BokehAdapterError) as e:
        mods.folder.load_named("hard_text.safetensors")
    message = str(e.value)
    assert "not a safetensors file" in message
    assert "root" not in message and str(struct.unpack("<Q", secret[:8])[0]) not in message
    assert str(len(secret)) not in message


# -- 4-5: adapters are freed; the cache cannot serve an old version -----------------------------

def test_adapters_are_freed_when_nothing_uses_them(mods, tmp_path):
    """Three files in a row through one executor (the server's caches carry over): afterwards only
    the last adapter is alive, held by the cache, and older ones are gone."""
    executor = harness.new_executor()
    seen = []
    for i in range(3):
        name = f"hard_free_{i}.safetensors"
        harness.write_adapter(tmp_path, reference.random_adapter_sd(CFG["hidden_size"], range(N_BLOCKS), seed=60 + i), name=name)
        result = harness.run_prompt(harness.tiny_graph(name, steps=1), executor=executor)
        assert result.ok, result.errors
        (loaded,) = result.outputs["loader"][0]
        seen.append(weakref.ref(loaded.module))
        del loaded, result
    gc.collect()
    alive = [ref() is not None for ref in seen]
    assert alive == [False, False, True], "adapters of earlier prompts are still in memory"


def test_a_dropped_adapter_and_its_clones_are_freed(mods, tmp_path):
    harness.write_adapter(tmp_path, reference.random_adapter_sd(CFG["hidden_size"], range(N_BLOCKS), seed=70), name="hard_drop.safetensors")
    loaded = mods.folder.load_named("hard_drop.safetensors")
    model = mods.adapter.BokehApplyAdapter.execute(harness.tiny_flux(2), loaded, 10.0).result[0][0]
    harness.diffusion_forward(model, *[a for a in (torch.randn(1, 16, 8, 8), torch.full((1,), 0.5),
                                                      torch.randn(1, 8, 64), torch.randn(1, 32), torch.full((1,), 3.0))])
    ref = weakref.ref(loaded.module)
    mods.folder._cache.clear()
    del loaded, model
    gc.collect()
    import comfy.model_management as mm

    mm.cleanup_models()
    assert ref() is None


def test_file_replaced_in_place_with_same_size_and_mtime_is_reloaded(mods, tmp_path):
    sd = reference.random_adapter_sd(CFG["hidden_size"], [0], seed=1)
    path = harness.write_adapter(tmp_path, sd, name="hard_replaced.safetensors")
    first = mods.folder.load_named("hard_replaced.safetensors")
    st = os.stat(path)
    other = {k: v + 0.5 for k, v in sd.items()}
    data = bytearray(open(path, "rb").read())
    from safetensors.torch import save

    new = save({k: v.contiguous() for k, v in other.items()})
    assert len(new) == len(data)
    with open(path, "r+b") as f:  # the same inode, rewritten
        f.write(new)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns
    second = mods.folder.load_named("hard_replaced.safetensors")
    assert second is not first
    w = second.module.state_dict()["embedding_layer.0.bias"]
    assert torch.equal(w, other["embedding_layer.0.bias"])
    assert mods.folder.load_named("hard_replaced.safetensors") is second  # and unchanged files are not re-read


# -- 6: header lengths that start like a pickle or a zip ----------------------------------------

def padded_adapter(first_bytes_of_length: bytes) -> bytes:
    """A valid safetensors adapter whose header length's low bytes are ``first_bytes_of_length``
    (the header is padded with spaces, which the format allows)."""
    raw = tiny_adapter_bytes(seed=3)
    n = struct.unpack("<Q", raw[:8])[0]
    header, data = raw[8:8 + n].rstrip(b" "), raw[8 + n:]
    low = int.from_bytes(first_bytes_of_length, "little")
    step = 256 ** len(first_bytes_of_length)
    target = len(header) + ((low - len(header)) % step)
    header = header + b" " * (target - len(header))
    out = struct.pack("<Q", len(header)) + header + data
    assert out[:len(first_bytes_of_length)] == first_bytes_of_length
    return out


@pytest.mark.parametrize("magic", [b"\x80", b"PK"], ids=["0x80", "PK"])
def test_valid_adapter_whose_length_looks_like_a_pickle(mods, tmp_path, magic):
    path = tmp_path / "padded.safetensors"
    path.write_bytes(padded_adapter(magic))
    loaded = mods.ckpt.load_adapter(path)
    official = load_file(str(path))
    assert all(torch.equal(loaded.module.state_dict()[k], v) for k, v in official.items())


def test_real_pickles_still_refused(mods, tmp_path):
    p = tmp_path / "pickle.safetensors"
    torch.save({"a": torch.zeros(1)}, p)  # zip container
    with pytest.raises(mods.errors.BokehAdapterError, match="pickle"):
        mods.ckpt.load_adapter(p)
    import pickle

    p.write_bytes(pickle.dumps({"a": 1}, protocol=2))  # a bare pickle starts with 0x80
    with pytest.raises(mods.errors.BokehAdapterError, match="pickle"):
        mods.ckpt.load_adapter(p)


def test_reader_matches_safetensors_for_every_float_dtype(mods, tmp_path):
    sd = reference.random_adapter_sd(CFG["hidden_size"], [0, 2])
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        path = tmp_path / f"dtype_{str(dtype)[6:]}.safetensors"
        save_file({k: v.to(dtype).contiguous() for k, v in sd.items()}, str(path))
        loaded = mods.ckpt.load_adapter(path)
        official = load_file(str(path))
        assert all(torch.equal(loaded.module.state_dict()[k], official[k]) for k in official)


def test_fp8_adapter_loads_exactly(mods, tmp_path):
    sd = reference.random_adapter_sd(CFG["hidden_size"], [0])
    path = tmp_path / "fp8.safetensors"
    save_file({k: v.to(torch.float8_e4m3fn).contiguous() for k, v in sd.items()}, str(path))
    loaded = mods.ckpt.load_adapter(path)
    assert next(loaded.module.parameters()).dtype == torch.bfloat16
    official = load_file(str(path))
    assert all(torch.equal(loaded.module.state_dict()[k], official[k].to(torch.bfloat16)) for k in official)


# -- 7: another attention override, before or after -----------------------------------------------

def override_graph(order, mode, blur):
    g = harness.tiny_graph("hard_good.safetensors", blur=blur, steps=2)
    g["other"] = {"class_type": "BokehTestAttentionOverride", "inputs": {"mode": mode}}
    if order == "after":  # model -> apply -> other -> sampler
        g["other"]["inputs"]["model"] = ["apply", 0]
        g["sample"]["inputs"]["model"] = ["other", 0]
    else:  # model -> other -> apply -> sampler
        g["other"]["inputs"]["model"] = ["model", 0]
        g["apply"]["inputs"]["model"] = ["other", 0]
    return g


def sample(prompt):
    result = harness.run_prompt(prompt)
    assert result.ok, result.errors
    return result.outputs["sample"][0][0]["samples"]


@pytest.mark.parametrize("mode", ["pass", "scale"])
def test_override_order_does_not_matter(models_dir, mode):
    import tiny_nodes

    before = tiny_nodes.BokehTestAttentionOverride.calls
    after_30 = sample(override_graph("after", mode, 30.0))
    assert tiny_nodes.BokehTestAttentionOverride.calls > before  # the other override still runs
    before_30 = sample(override_graph("before", mode, 30.0))
    assert torch.allclose(after_30, before_30, rtol=0, atol=1e-6)
    after_0 = sample(override_graph("after", mode, 0.0))
    assert (after_30 - after_0).abs().max() > 1e-3  # the blur is not lost
    if mode == "pass":  # a pass-through override changes nothing at all
        assert torch.allclose(after_30, sample(harness.tiny_graph("hard_good.safetensors", blur=30.0, steps=2)), rtol=0, atol=1e-6)
    else:  # and one that changes the result keeps its change
        assert (after_30 - sample(override_graph("after", "pass", 30.0))).abs().max() > 1e-3


# -- 8-10: numbers out of range ----------------------------------------------------------------

@pytest.mark.parametrize("blur", [1e38, -1e30, 41.0, -10.5, float("nan")])
def test_absurd_blur_levels_refused_everywhere(mods, models_dir, blur):
    # In a text list, '1e+38' and 'nan' are not plain decimal numbers: refused as such.
    in_text = "trained range" if f"{blur}".replace("-", "").replace(".", "").isdigit() else "not a plain decimal number"
    loaded = mods.folder.load_named("hard_good.safetensors")
    model = harness.tiny_flux(1)
    with pytest.raises(mods.errors.BokehInputError, match="trained range"):
        mods.adapter.BokehApplyAdapter.execute(model, loaded, blur)
    patched = mods.adapter.BokehApplyAdapter.execute(model, loaded, 10.0).result[0][0]
    latent = {"samples": torch.zeros(1, 16, 8, 8)}
    with pytest.raises(mods.errors.BokehInputError, match=in_text):
        mods.pivot.BokehPivotBatch.execute([patched], [latent], [15.0], [f"0, {blur}"], [0.8])
    with pytest.raises(mods.errors.BokehInputError, match="trained range"):
        mods.pivot.BokehPivotBatch.execute([patched], [latent], [15.0], ["0"], [0.8], target_levels=[0.0, blur])
    with pytest.raises(mods.errors.BokehInputError, match="trained range"):
        mods.pivot.BokehPivotBatch.execute([patched], [latent], [blur], ["0"], [0.8])
    with pytest.raises(mods.errors.BokehInputError, match=in_text):
        mods.blur_levels.BokehBlurLevels.execute(0.0, 28.0, 3, f"0, {blur}")
    with pytest.raises(mods.errors.BokehInputError, match="trained range"):
        mods.blur_levels.BokehBlurLevels.execute(0.0, blur, 3, "")


def test_modest_extrapolation_allowed_with_a_warning(mods, models_dir, caplog):
    loaded = mods.folder.load_named("hard_good.safetensors")
    with caplog.at_level("WARNING"):
        mods.adapter.BokehApplyAdapter.execute(harness.tiny_flux(1), loaded, 35.0)
    assert "extrapolates" in caplog.text


def test_absurd_scales_refused(mods, models_dir):
    loaded = mods.folder.load_named("hard_good.safetensors")
    for scale in (1e38, float("nan"), -11.0):
        with pytest.raises(mods.errors.BokehInputError, match="bokeh_scale"):
            mods.adapter.BokehApplyAdapter.execute(harness.tiny_flux(1), loaded, 10.0, scale, 1.0)
        with pytest.raises(mods.errors.BokehInputError, match="lora_scale"):
            mods.adapter.BokehApplyAdapter.execute(harness.tiny_flux(1), loaded, 10.0, 1.0, scale)


@pytest.mark.parametrize("grounding", [float("nan"), -0.1, 1.5, float("inf")])
def test_grounding_out_of_range_refused(mods, models_dir, grounding):
    loaded = mods.folder.load_named("hard_good.safetensors")
    patched = mods.adapter.BokehApplyAdapter.execute(harness.tiny_flux(1), loaded, 10.0).result[0][0]
    with pytest.raises(mods.errors.BokehInputError, match="grounding"):
        mods.pivot.BokehPivotBatch.execute([patched], [{"samples": torch.zeros(1, 16, 8, 8)}], [15.0], ["0, 8"], [grounding])


def test_grounding_steps_below_minus_one_refused(mods, models_dir):
    loaded = mods.folder.load_named("hard_good.safetensors")
    patched = mods.adapter.BokehApplyAdapter.execute(harness.tiny_flux(1), loaded, 10.0).result[0][0]
    with pytest.raises(mods.errors.BokehInputError, match="grounding_steps"):
        mods.pivot.BokehPivotBatch.execute([patched], [{"samples": torch.zeros(1, 16, 8, 8)}], [15.0], ["0, 8"], [0.8], None, [-5])


def test_huge_weights_refused_at_load(mods, tmp_path):
    sd = reference.random_adapter_sd(CFG["hidden_size"], [0])
    sd["adapter_modules.0.to_v_bokeh.up.weight"][0, 0] = 1e6
    path = tmp_path / "huge.safetensors"
    save_file(sd, str(path))
    with pytest.raises(mods.errors.BokehAdapterError, match="larger than"):
        mods.ckpt.load_adapter(path)


@pytest.mark.parametrize("what", ["rank", "context"])
def test_empty_adapters_refused_at_load(mods, tmp_path, what):
    kw = {"rank": 0} if what == "rank" else {"context": 0}
    sd = reference.random_adapter_sd(CFG["hidden_size"], [0], **kw)
    path = tmp_path / f"empty_{what}.safetensors"
    save_file(sd, str(path))
    with pytest.raises(mods.errors.BokehAdapterError, match="changes nothing"):
        mods.ckpt.load_adapter(path)


# -- 11: a seeded fuzz of the reader -----------------------------------------------------------

def mutations(seed: int, count: int):
    """Mutated copies of a tiny valid adapter: structured header edits and random byte damage."""
    import json
    import random

    rng = random.Random(seed)
    base = tiny_adapter_bytes(seed=4)
    n = struct.unpack("<Q", base[:8])[0]
    header = json.loads(base[8:8 + n])
    data = base[8 + n:]
    keys = [k for k in header if k != "__metadata__"]

    def pack(h, body=data, length=None):
        raw = json.dumps(h).encode() if not isinstance(h, bytes) else h
        return struct.pack("<Q", len(raw) if length is None else length) + raw + body

    edits = [
        lambda h, k: h[k].update(dtype=["F32"]),
        lambda h, k: h[k].update(dtype="F8_E4M3"),
        lambda h, k: h[k].update(dtype="I32"),
        lambda h, k: h[k].update(dtype="Q99"),
        lambda h, k: h[k].update(shape=[str(s) for s in h[k]["shape"]]),
        lambda h, k: h[k].update(shape=[2**70]),
        lambda h, k: h[k].update(shape=[-1, 4]),
        lambda h, k: h[k].update(shape=[True]),
        lambda h, k: h[k].update(data_offsets=h[k]["data_offsets"][:1]),
        lambda h, k: h[k].update(data_offsets=["0", "4"]),
        lambda h, k: h[k].update(data_offsets=[h[k]["data_offsets"][1], h[k]["data_offsets"][0]]),
        lambda h, k: h[k].update(data_offsets=[0, 2**80]),
        lambda h, k: h[k].update(data_offsets=[0, h[k]["data_offsets"][1] - h[k]["data_offsets"][0]]),
        lambda h, k: h.__setitem__(k, [1, 2, 3]),
        lambda h, k: h.__setitem__(k, None),
        lambda h, k: h[k].pop("dtype"),
        lambda h, k: h.__setitem__(k.replace("modules.0.", "modules.00."), h.pop(k)),
        lambda h, k: h.__setitem__(k.replace("modules.0.", "modules.01."), h.pop(k)),
        lambda h, k: h.__setitem__(k + "\x00", h.pop(k)),
        lambda h, k: h.pop(k),
    ]
    out = []
    for i in range(count):
        kind = i % 6
        h = copy.deepcopy(header)
        if kind == 0:
            edit = edits[rng.randrange(len(edits))]
            edit(h, rng.choice(keys))
            out.append(pack(h))
        elif kind == 1:  # random bytes flipped in the header
            raw = bytearray(base)
            for _ in range(rng.randint(1, 6)):
                raw[rng.randrange(8, 8 + n)] = rng.randrange(256)
            out.append(bytes(raw))
        elif kind == 2:  # random bytes in the tensor data (NaN/inf/huge or just other values)
            raw = bytearray(base)
            for _ in range(rng.randint(1, 40)):
                raw[rng.randrange(8 + n, len(raw))] = rng.randrange(256)
            out.append(bytes(raw))
        elif kind == 3:  # truncated anywhere, or the length field damaged
            if rng.random() < 0.5:
                out.append(base[: rng.randrange(len(base))])
            else:
                out.append(pack(h, length=rng.choice([0, 1, n - 1, n + 1, 2**63, rng.randrange(2**64)])))
        elif kind == 4:  # JSON that is not a header
            out.append(pack(rng.choice([b"[]", b"null", b"1", b'{"a":', b"[" * 100000 + b"]" * 100000,
                                        b'{"__metadata__": {"x": [1]}}', b"\xff\xfe{}", json.dumps(list(h)).encode()])))
        else:  # several structured edits at once
            for _ in range(rng.randint(2, 4)):
                try:
                    edits[rng.randrange(len(edits))](h, rng.choice([k for k in h if k != "__metadata__"] or ["x"]))
                except (KeyError, AttributeError, TypeError, IndexError):
                    pass
            out.append(pack(h))
    return out


def test_fuzzed_adapter_files_load_or_give_the_typed_error(mods, tmp_path):
    import time

    start = time.monotonic()
    outcomes = {"loaded": 0, "refused": 0}
    cases = mutations(seed=1234, count=360)
    for i, blob in enumerate(cases):
        path = tmp_path / f"fuzz_{i}.safetensors"
        path.write_bytes(blob)
        try:
            loaded = mods.ckpt.load_adapter(path)
        except mods.errors.BokehAdapterError as e:
            assert "fuzz_" in str(e), str(e)  # names the file
            outcomes["refused"] += 1
        else:
            assert set(loaded.module.state_dict()) <= set(load_file(str(path)))
            assert all(bool(torch.isfinite(p.float()).all()) for p in loaded.module.parameters())
            outcomes["loaded"] += 1
        path.unlink()
    assert len(cases) >= 300 and outcomes["refused"] > 100 and outcomes["loaded"] > 10, outcomes
    assert time.monotonic() - start < 120


# -- 12: odd images, masks and latents ----------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 1, 16, 3), (3, 16, 1, 3), (3, 2, 2, 3)])
def test_blur_meter_on_tiny_images(mods, shape):
    with pytest.raises(mods.errors.BokehInputError, match="at least 3x3"):
        mods.blur_meter.BokehBlurMeter.execute(torch.rand(shape))


def test_blur_meter_on_three_pixels_works(mods):
    out = mods.blur_meter.BokehBlurMeter.execute(torch.rand(2, 3, 3, 3))
    assert len(out.result[1]) == 2


@pytest.fixture(scope="module")
def patched(mods, models_dir):
    loaded = mods.folder.load_named("hard_good.safetensors")
    return mods.adapter.BokehApplyAdapter.execute(harness.tiny_flux(1), loaded, 10.0).result[0][0]


def test_pivot_batch_masks(mods, patched):
    latent = {"samples": torch.zeros(1, 16, 8, 8)}
    for bad in (torch.tensor(1.0), torch.zeros(0, 8, 8), "mask"):
        with pytest.raises(mods.errors.BokehInputError, match="noise mask"):
            mods.pivot.BokehPivotBatch.execute([patched], [dict(latent, noise_mask=bad)], [15.0], ["0, 8"], [0.8])
    hw = torch.rand(64, 64)
    out = mods.pivot.BokehPivotBatch.execute([patched], [dict(latent, noise_mask=hw)], [15.0], ["0, 8"], [0.8]).result[1]
    assert out["noise_mask"] is hw  # an (H, W) mask is shared as it is, not cut to its first row
    bhw = torch.rand(2, 64, 64)
    out = mods.pivot.BokehPivotBatch.execute([patched], [dict(latent, noise_mask=bhw)], [15.0], ["0, 8"], [0.8]).result[1]
    assert torch.equal(out["noise_mask"], bhw[:1])


@pytest.mark.parametrize("shape", [(1, 16, 8), (1, 16, 1, 8, 8), ()])
def test_pivot_batch_refuses_non_image_latents(mods, patched, shape):
    with pytest.raises(mods.errors.BokehInputError, match="FLUX image latent"):
        mods.pivot.BokehPivotBatch.execute([patched], [{"samples": torch.zeros(shape)}], [15.0], ["0, 8"], [0.8])


def test_colour_match_drop_pivot_on_one_image(mods):
    with pytest.raises(mods.errors.BokehInputError, match="only the pivot"):
        mods.color.BokehColorMatch.execute(torch.rand(1, 8, 8, 3), drop_pivot=True)


# -- 13: what the folder lists ----------------------------------------------------------------

def test_devices_fifos_and_dangling_links_not_listed(mods, tmp_path):
    import folder_paths

    harness.write_adapter(tmp_path, reference.random_adapter_sd(CFG["hidden_size"], [0]), name="hard_listed.safetensors")
    (tmp_path / "hard_device.safetensors").symlink_to("/dev/zero")
    (tmp_path / "hard_dangling.safetensors").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "hard_fifo.safetensors")
    (tmp_path / "hard_link.safetensors").symlink_to(tmp_path / "hard_listed.safetensors")
    folder_paths.filename_list_cache.pop("bokeh_diffusion", None)
    names = mods.folder.adapter_files()
    assert "hard_listed.safetensors" in names and "hard_link.safetensors" in names
    for bad in ("hard_device.safetensors", "hard_dangling.safetensors", "hard_fifo.safetensors"):
        assert bad not in names
        with pytest.raises(mods.errors.BokehAdapterError, match="not in the list"):
            mods.folder.load_named(bad)
    # and the reader itself never blocks on a FIFO or reads a device
    with pytest.raises(mods.errors.BokehAdapterError, match="not a regular file"):
        mods.ckpt.load_adapter(tmp_path / "hard_fifo.safetensors")
    with pytest.raises(mods.errors.BokehAdapterError, match="not a regular file"):
        mods.ckpt.load_adapter(tmp_path / "hard_device.safetensors")
