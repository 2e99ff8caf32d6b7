"""The headless sweep runner (the README's main job), as a user runs it: a subprocess."""

import subprocess
import sys

import harness

RUNNER = harness.REPO / "scripts" / "bokeh_sweep.py"


def run(*args, cwd):
    return subprocess.run([sys.executable, str(RUNNER), *args], cwd=cwd, capture_output=True, text=True, timeout=900)


def test_check_mode_writes_images_sheet_and_report(tmp_path):
    out = tmp_path / "out"
    proc = run("--check", "--steps", "4", "--width", "64", "--height", "64", "--targets", "0, 28",
               "--grounding-steps", "3", "--output", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "noise" in proc.stdout  # says plainly that --check images mean nothing
    assert len(list(out.glob("sweep_*.png"))) == 3 and len(list(out.glob("sheet_*.png"))) == 1
    report = (out / "blur_meter.txt").read_text()
    assert "K 15 (pivot)" in report and "corr(K, blur)" in report
    assert (out / "blur_plot.png").stat().st_size > 1000


def test_missing_models_listed_without_traceback(tmp_path):
    proc = run("--output", str(tmp_path / "out"), "--cpu", "--unet", "no_such_flux.safetensors",
               "--adapter", str(tmp_path / "nowhere" / "adapter.safetensors"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "no_such_flux.safetensors" in proc.stderr and "goes in:" in proc.stderr
    assert "adapter.safetensors: no such file" in proc.stderr and "atfortes/BokehDiffusion" in proc.stderr


def test_runner_imports_no_test_fixtures():
    """The main job stands on the in-process host alone; tiny models come in only with --check."""
    code = ("import sys; sys.path.insert(0, 'scripts'); import bokeh_sweep; "
            "bad = {'harness', 'tiny_models', 'tiny_nodes'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=harness.REPO, check=True)


def test_a_path_on_the_command_line_wins_over_a_same_named_listed_file(pack, tmp_path):
    import folder_paths

    sys.path.insert(0, str(harness.REPO / "scripts"))
    import bokeh_sweep

    listed, given = tmp_path / "listed", tmp_path / "given"
    listed.mkdir(), given.mkdir()
    (listed / "same_name.safetensors").write_bytes(b"listed")
    (given / "same_name.safetensors").write_bytes(b"given")
    folder_paths.add_model_folder_path("bokeh_diffusion", str(listed))
    prompt = {"1": {"class_type": "BokehAdapterLoader", "inputs": {"adapter_name": "x"}}}
    args = bokeh_sweep.parse_args(["--adapter", str(given / "same_name.safetensors")])
    assert bokeh_sweep.resolve_models(prompt, args, folder_paths) == []
    assert prompt["1"]["inputs"]["adapter_name"] == "same_name.safetensors"
    assert folder_paths.get_full_path("bokeh_diffusion", "same_name.safetensors") == str(given / "same_name.safetensors")


def test_photo_check_writes_the_stack_sheet_and_report(tmp_path):
    import numpy as np
    from PIL import Image

    photo = tmp_path / "photos" / "my photo.jpg"
    photo.parent.mkdir()
    Image.fromarray((np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)).save(photo)
    out = tmp_path / "out"
    proc = run("--photo", str(photo), "--check", "--steps", "2", "--targets", "0.5, 30", "--output", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "photo-stack" in proc.stdout and "noise" in proc.stdout
    stack = sorted(out.glob("photo_stack_*.png"))
    assert len(stack) == 2 and len(list(out.glob("photo_sheet_*.png"))) == 1
    assert Image.open(stack[0]).size == (512, 512)
    report = (out / "blur_meter.txt").read_text()
    assert "K 0.5" in report and "K 30" in report and "corr(K, blur)" in report
    missing = run("--photo", str(tmp_path / "none.png"), "--check", "--output", str(out), cwd=tmp_path)
    assert missing.returncode == 2 and "none.png: no such file" in missing.stderr and "Traceback" not in missing.stderr
