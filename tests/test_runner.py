"""The headless sweep runner (the README's main job), as a user runs it: a subprocess, checked by
what the user sees (the lines printed, the exit code, the files written)."""

import re
import signal
import subprocess
import sys
import time

import harness
import pytest

RUNNER = harness.REPO / "scripts" / "bokeh_sweep.py"
SMALL = ["--steps", "4", "--width", "64", "--height", "64", "--targets", "0, 28", "--grounding-steps", "3"]


def run(*args, cwd):
    return subprocess.run([sys.executable, str(RUNNER), *args], cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def check_run(tmp_path_factory):
    """One --check sweep for the module, with the default output folder (cwd is a new folder)."""
    cwd = tmp_path_factory.mktemp("check_run")
    proc = run("--check", *SMALL, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, cwd


def test_check_mode_writes_images_named_by_k_sheet_and_report(check_run):
    proc, cwd = check_run
    assert "noise" in proc.stdout.splitlines()[0]  # says plainly that --check images mean nothing
    (folder,) = (cwd / "output" / "bokeh_sweep").iterdir()  # a new folder of its own per run
    names = ["sweep_00_k15_pivot.png", "sweep_01_k0.png", "sweep_02_k28.png", "sheet.png", "blur_plot.png", "blur_meter.txt"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)
    assert f"Wrote to {folder}:\n  " + "\n  ".join(names) + "\n" in proc.stdout  # exactly this run's files
    report = (folder / "blur_meter.txt").read_text()
    assert "K 15 (pivot)" in report and "corr(K, blur)" in report
    # The verdict on noise images means nothing, and the last line says so (the plot carries it too).
    assert proc.stdout.rstrip().splitlines()[-1].startswith("--check: these images are noise")
    assert report.rstrip().endswith("this machine.") and "means nothing" in report
    assert (folder / "blur_plot.png").stat().st_size > 1000
    from PIL import Image

    assert Image.open(folder / "sheet.png").size == (3 * 64, 64 + 14)  # three cells in one row, their labels below


def test_a_second_run_into_a_used_folder_is_refused_before_anything_loads(check_run):
    _, cwd = check_run
    (folder,) = (cwd / "output" / "bokeh_sweep").iterdir()
    before = sorted(folder.iterdir())
    proc = run("--check", "--output", str(folder), cwd=cwd)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "holds files already" in proc.stderr and "each run then gets its own" in proc.stderr
    assert sorted(folder.iterdir()) == before


# Mistakes a user makes: each is one line naming the option, what was given and what is accepted,
# exit code 2, before ComfyUI or any model loads (each run takes a couple of seconds).
MISTAKES = {
    "targets_word": (["--targets", "0, four, 8"], "--targets '0, four, 8': The targets list has 'four', which is not a plain decimal number"),
    "targets_empty": (["--targets", ""], "--targets '': lists no blur level"),
    "target_range": (["--targets", "0, 50"], "--targets '0, 50': The target blur level is 50; expected 0 (sharp) to 30"),
    "pivot": (["--pivot", "50"], "--pivot 50: expected a blur level from 0 (sharp) to 30"),
    "width": (["--width", "100", "--height", "70"], "--width 100: expected a multiple of 16 from 16 to 16384"),
    "grounding": (["--grounding", "2"], "--grounding 2: The grounding share is 2; expected a share from 0 (none) to 1"),
    "steps": (["--steps", "0"], "--steps 0: expected a number of steps from 1 to 10000"),
    "seed": (["--seed", "abc"], "argument --seed: invalid int value: 'abc'"),
    "photo_text": (["--photo", "{tmp}/notes.txt"], "--photo '{tmp}/notes.txt': is not an image that can be read; --photo takes a PNG, JPEG or WebP"),
    "adapter_folder": (["--adapter", "{tmp}"], "--adapter '{tmp}': is not a regular file (a folder?)"),
    "adapter_check": (["--check", "--adapter", "x.safetensors"], "--adapter 'x.safetensors': --check runs on tiny random models"),
    "servers_url": (["--servers", "ftp://x"], "--servers 'ftp://x': 'ftp://x' is not a server URL; expected e.g. http://127.0.0.1:8188"),
    "servers_path": (["--servers", "http://127.0.0.1:1", "--unet", "/models/flux.safetensors"], "with --servers, give the name of a file"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_a_mistake_is_one_line_and_exit_2_before_anything_loads(tmp_path, mistake):
    argv, expected = MISTAKES[mistake]
    (tmp_path / "notes.txt").write_text("not a photo\n")
    start = time.monotonic()
    proc = run(*(a.format(tmp=tmp_path) for a in argv), "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line and "bokeh_custom_nodes" not in line, line
    assert line.startswith("bokeh_sweep.py: ") and expected.format(tmp=tmp_path) in line, line
    assert not (tmp_path / "out").exists() and proc.stdout == ""
    assert time.monotonic() - start < 120  # no host was loaded (a few seconds on a busy 2-core machine)


def test_help_names_every_default_once_and_both_other_modes():
    proc = subprocess.run([sys.executable, str(RUNNER), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())  # argparse wraps lines
    for option in ("--prompt", "--seed", "--width", "--height", "--pivot", "--targets", "--grounding-steps", "--output", "--models"):
        entry = text.split(f" {option} ", 1)[1].split(" --", 1)[0]
        assert entry.count("(default:") == 1, (option, entry)
    assert "(default: -1, use --grounding)" in text and "(default: None)" not in text
    description = text.split("options:")[0]
    assert "--servers" in description and "--photo" in description


def test_missing_models_listed_per_file_with_the_folder_they_go_in(tmp_path):
    """The text-to-image sweep with the default model folder (models/ of this clone), and the photo
    stack with a folder the user names: each missing file, the folder of the current ComfyUI name
    it goes in, and the file's own source; exit 2, no traceback."""
    proc = run("--output", str(tmp_path / "out"), "--cpu", "--unet", "no_such_flux.safetensors",
               "--adapter", str(tmp_path / "nowhere" / "adapter.safetensors"), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "adapter.safetensors': no such file" in proc.stderr  # a path that is not there: before anything loads
    proc = run("--output", str(tmp_path / "out"), "--cpu", "--unet", "no_such_flux.safetensors", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    models = harness.REPO / "models"
    assert f"  no_such_flux.safetensors\n      goes in: {models / 'diffusion_models'}\n" in proc.stderr
    assert f"  bokeh_diffusion_flux.safetensors\n      goes in: {models / 'bokeh_diffusion'}\n      get it: the Bokeh Diffusion adapter" in proc.stderr
    assert "      get it: ComfyUI's FLUX text encoders: huggingface.co/comfyanonymous/flux_text_encoders, t5xxl_fp16" in proc.stderr
    assert not (tmp_path / "out").exists()

    from PIL import Image

    Image.new("RGB", (32, 24), (200, 100, 50)).save(tmp_path / "me.png")
    proc = run("--photo", str(tmp_path / "me.png"), "--models", str(tmp_path), "--output", str(tmp_path / "out"), "--cpu", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert (f"  flux1-kontext-dev.safetensors\n      goes in: {tmp_path / 'diffusion_models'}\n"
            "      get it: FLUX.1 Kontext [dev] from Black Forest Labs") in proc.stderr
    assert (f"  bokeh_lora.bin\n      goes in: {tmp_path / 'bokeh_diffusion'}\n"
            "      get it: the BokehDepth photo adapter") in proc.stderr
    assert "FLUX.1-dev from" not in proc.stderr and "atfortes" not in proc.stderr  # no other file's hint
    assert (tmp_path / "diffusion_models").is_dir()  # made, so the user sees where the file goes


STEPS = 2000


def test_ctrl_c_stops_the_sampler_says_what_was_written_and_exits_130(tmp_path):
    """Ctrl-C while the sampler runs 2000 steps: it stops at the next layer, as ComfyUI's own
    interrupt stops it, not after the whole run. (The tiny models run about 160 steps a second on
    an idle 2-core machine: the run must be long enough that the signal lands inside it, and
    the bar may skip step 1, so any step counts as "running".)"""
    out, err_path = tmp_path / "out", tmp_path / "stderr.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, str(RUNNER), "--check", "--steps", str(STEPS), "--width", "64", "--height", "64",
                                 "--targets", "0, 28", "--output", str(out)], stdout=subprocess.PIPE, stderr=err, text=True, cwd=tmp_path)
        deadline = time.monotonic() + 300
        while not re.search(rf"\b[1-9]\d*/{STEPS}\b", err_path.read_text()) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        pressed = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
    stderr = err_path.read_text()
    assert proc.returncode == 130, stderr[-3000:]
    # 2000 steps take 12 s on an idle machine and minutes on a busy one; a stop at the next layer
    # takes a second or two.
    assert time.monotonic() - pressed < 60
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert "Stopped during KSampler (node " in stderr and "Nothing was written." in stderr
    assert f"{STEPS}/{STEPS}" not in stderr and not out.exists()


def test_runner_imports_no_test_fixtures():
    """The main job stands on the in-process host alone; tiny models come in only with --check."""
    code = ("import sys; sys.path.insert(0, 'scripts'); import pack; pack.module('runner.sweep_command'); "
            "bad = [m for m in sys.modules if '.fixtures' in m or m.startswith('fixtures')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=harness.REPO, check=True)


def test_a_path_on_the_command_line_wins_over_a_same_named_listed_file(pack, tmp_path):
    import folder_paths

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
    assert sorted(p.name for p in out.iterdir()) == ["blur_meter.txt", "blur_plot.png", "photo_sheet.png",
                                                    "photo_stack_00_k0.5.png", "photo_stack_01_k30.png"]
    assert Image.open(out / "photo_stack_00_k0.5.png").size == (512, 512)
    report = (out / "blur_meter.txt").read_text()
    assert "K 0.5" in report and "K 30" in report and "corr(K, blur)" in report
    missing = run("--photo", str(tmp_path / "none.png"), "--check", "--output", str(tmp_path / "out2"), cwd=tmp_path)
    assert missing.returncode == 2 and "none.png': no such file" in missing.stderr and "Traceback" not in missing.stderr


def test_plot_labels_tell_neighbouring_ticks_apart(pack):
    """A narrow range (the --check sweep's -6.59 .. -6.60) gets as many decimals as its ticks need."""
    plot = harness.pack_module("sweep.plot")
    for low, high in ((-6.5951, -6.5884), (-6.6, -6.599), (0.0, 30.0), (-7.2, -2.1)):
        ticks = plot._ticks(low, high)
        labels = [plot._label(t, ticks[1] - ticks[0]) for t in ticks]
        assert len(set(labels)) == len(labels), (low, high, labels)
        assert all(abs(float(label) - t) <= (ticks[1] - ticks[0]) / 10 for label, t in zip(labels, ticks))


def test_the_test_command_prints_why_tests_were_skipped(tmp_path):
    """`bash scripts/test.sh` lists each skipped test with its reason (pytest -rs)."""
    (tmp_path / "test_skipping.py").write_text("import pytest\n\n\ndef test_needs_a_thing():\n"
                                               "    pytest.skip('the thing is not installed here')\n")
    proc = subprocess.run(["bash", str(harness.REPO / "scripts" / "test.sh"), str(tmp_path / "test_skipping.py"), "-q"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "SKIPPED [1]" in proc.stdout and "the thing is not installed here" in proc.stdout


def test_missing_files_point_at_the_current_folder_name_in_an_installed_comfyui(pack):
    """Installed in a ComfyUI's custom_nodes, the runner names that ComfyUI's own folder, and the
    one of the current name (models/diffusion_models, not the legacy models/unet listed first)."""
    import folder_paths

    import bokeh_sweep

    for folder in ("diffusion_models", "text_encoders"):
        paths = folder_paths.get_folder_paths(folder)
        assert bokeh_sweep.model_folder(folder, folder_paths, None) == next(p for p in paths if p.endswith(folder))
