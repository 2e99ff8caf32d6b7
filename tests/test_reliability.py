"""Bounded work and clean refusals for what a remote client or a damaged file can send: lists of
blur levels (every item is one sampling downstream), numbers written other ways than plain
decimals, sparse tensors and oversized zip directories in .bin adapters, and the folder
listing's zip check (cached by the file's identity)."""

import os
import time
import zipfile

import harness
import pytest
import reference
import torch

CFG = harness.TINY
N_BLOCKS = CFG["depth"] + CFG["depth_single_blocks"]
MAX = 64


@pytest.fixture(scope="module")
def loaded(mods, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reliability_models")
    harness.write_adapter(folder, reference.random_adapter_sd(CFG["hidden_size"], range(N_BLOCKS), seed=4), name="rel.safetensors")
    return mods.adapter.BokehAdapterLoader.execute("rel.safetensors").result[0]


# -- 1: a list of K is at most 64 long, wherever it enters -----------------------------------

def test_a_huge_levels_text_is_refused_at_once(mods):
    """The /prompt that grew a server to 3.7 GB: two million levels in the text."""
    start = time.monotonic()
    with pytest.raises(mods.errors.BokehInputError, match=f"more than {MAX} entries"):
        mods.blur_levels.BokehBlurLevels.execute(0.0, 28.0, 6, "3, " * 2_000_000)
    assert time.monotonic() - start < 5  # reads 65 entries, not two million
    values, _, _ = mods.blur_levels.BokehBlurLevels.execute(0.0, 28.0, 6, ", ".join(["3"] * MAX)).result
    assert len(values) == MAX


def test_the_levels_text_and_count_limits_through_the_executor(mods):
    def levels_graph(**inputs):
        return {"levels": {"class_type": "BokehBlurLevels", "inputs": {"start": 0.0, "end": 28.0, "count": 6, **inputs}},
                "sheet": {"class_type": "BokehContactSheet", "inputs": {
                    "images": ["image", 0], "sweep": ["levels", 2], "columns": 0}},
                "image": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
                "preview": {"class_type": "PreviewImage", "inputs": {"images": ["sheet", 0]}}}

    result = harness.run_prompt(levels_graph(levels="3, " * 100_000))
    assert not result.ok and f"more than {MAX} entries" in result.errors["exception_message"]
    result = harness.run_prompt(levels_graph(count=MAX + 1))  # ComfyUI's own check of the widget's max
    assert not result.ok and f"Value {MAX + 1} bigger than max of {MAX}" in str(result.errors)


def test_float_lists_into_apply_and_pivot_are_capped(mods, loaded):
    """ComfyUI hands a node with is_input_list every input whole: the count is checked before any run."""
    model = harness.tiny_flux(1)
    with pytest.raises(mods.errors.BokehInputError, match=f"list of {MAX + 1} values; one list may drive at most {MAX}"):
        mods.adapter.BokehApplyAdapter.execute([model], [loaded], [1.0] * (MAX + 1))
    patched = mods.adapter.BokehApplyAdapter.execute([model], [loaded], [10.0]).result[0][0]
    latent = {"samples": torch.zeros(1, 16, 8, 8)}
    with pytest.raises(mods.errors.BokehInputError, match=f"{MAX + 1} targets in one batch is more than {MAX}"):
        mods.pivot.BokehPivotBatch.execute([patched], [latent], [15.0], ["x"], [0.8], [1.0] * (MAX + 1))
    with pytest.raises(mods.errors.BokehInputError, match=f"list of {MAX + 1} values"):
        mods.photo.BokehPhotoPrompt.execute([None], [2.0] * (MAX + 1))


def test_apply_runs_over_lists_as_comfyui_does(mods, loaded):
    """As many runs as the longest list; a shorter list repeats its last item (execution.py)."""
    patch = harness.pack_module("attention.patch")
    a, b = harness.tiny_flux(1), harness.tiny_flux(2)
    models = mods.adapter.BokehApplyAdapter.execute([a, b], [loaded], [0.0, 10.0, 20.0]).result[0]
    assert [patch.current_binding(m).k_values for m in models] == [(0.0,), (10.0,), (20.0,)]
    assert [m.model for m in models] == [a.model, b.model, b.model]
    with pytest.raises(mods.errors.BokehInputError, match="empty list"):
        mods.adapter.BokehApplyAdapter.execute([a], [loaded], [])


# -- 4: plain decimal numbers only --------------------------------------------------------------

@pytest.mark.parametrize("text", ["1_0", "\u0663", "\uff11\uff10", "1e3", "nan", "inf", "0x10", "4.5.6", "+", "."])
def test_k_lists_take_plain_decimal_numbers_only(mods, text):
    with pytest.raises(mods.errors.BokehInputError, match="not a plain decimal number") as e:
        mods.blur_levels.BokehBlurLevels.execute(0.0, 1.0, 2, f"0, {text}, 8")
    assert e.value.args[0].isascii()  # the entry is shown escaped, never as raw odd characters


def test_plain_decimal_forms_are_read(mods):
    values, text, _ = mods.blur_levels.BokehBlurLevels.execute(0.0, 1.0, 2, "0, 4.5; .5 +3 12. 07").result
    assert values == [0.0, 4.5, 0.5, 3.0, 12.0, 7.0] and text == "0, 4.5, 0.5, 3, 12, 7"


# -- 4: .bin adapters: sparse tensors, oversized zip directories, the listing cache --------------

def photo_sd():
    sd = reference.random_adapter_sd(CFG["hidden_size"], [0], seed=3)
    return {k.replace("_bokeh.", "_dof."): v for k, v in sd.items()}


def test_a_sparse_tensor_gets_the_packs_error(mods, tmp_path):
    sd = photo_sd()
    key = sorted(sd)[0]
    torch.save({**sd, key: sd[key].to_sparse()}, tmp_path / "sparse.bin")
    with pytest.raises(mods.errors.BokehAdapterError, match="stored as a sparse_coo tensor; expected plain dense weights"):
        mods.ckpt.load_adapter(tmp_path / "sparse.bin")


def fake_checkpoint_zip(path, records: int) -> None:
    """A zip laid out like a PyTorch checkpoint (archive/data.pkl) with ``records`` records."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", b"")
        for i in range(records - 1):
            z.writestr(f"archive/data/{i}", b"")


@pytest.mark.parametrize("records", [25_000, 70_000], ids=["zip", "zip64"])  # past 65,535 records: a zip64 end record
def test_an_oversized_zip_directory_is_refused_before_it_is_read(mods, tmp_path, records):
    path = tmp_path / "many.bin"
    fake_checkpoint_zip(path, records)
    with pytest.raises(mods.errors.BokehAdapterError, match=f"zip file of {records} records"):
        mods.ckpt.load_adapter(path)
    assert not mods.torch_zip.is_torch_zip(path)


def test_the_record_count_is_read_right_from_real_checkpoints(mods, tmp_path):
    torch.save(photo_sd(), tmp_path / "real.bin")
    with open(tmp_path / "real.bin", "rb") as f, zipfile.ZipFile(tmp_path / "real.bin") as z:
        assert mods.torch_zip._zip_record_count(f, os.path.getsize(tmp_path / "real.bin")) == len(z.infolist())


def test_the_listing_checks_each_bin_once_per_file_version(mods, tmp_path):
    import folder_paths

    folder = tmp_path / "listing_cache"
    folder.mkdir()
    torch.save(photo_sd(), folder / "cached.bin")
    folder_paths.add_model_folder_path("bokeh_diffusion", str(folder))
    folder_paths.filename_list_cache.pop("bokeh_diffusion", None)
    assert "cached.bin" in mods.folder.adapter_files()
    st = os.stat(folder / "cached.bin")
    assert mods.folder._zip_checks[(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)] is True
    # Same inode, size and mtime, other bytes: the cached answer stands (nothing is re-read) ...
    with open(folder / "cached.bin", "r+b") as f:
        f.write(b"XXXX")
    os.utime(folder / "cached.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert "cached.bin" in mods.folder.adapter_files()
    # ... and loading still reads the file itself, so the damage is found there.
    with pytest.raises(mods.errors.BokehAdapterError, match="not a PyTorch zip checkpoint"):
        mods.folder.load_named("cached.bin")
    # A new version of the file (another mtime) is checked again.
    os.utime(folder / "cached.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert "cached.bin" not in mods.folder.adapter_files()
