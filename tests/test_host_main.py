"""The pack in a real ComfyUI start-up: `main.py --cpu --quick-test-for-ci` with only this pack
in the custom_nodes of a fresh base directory."""

import subprocess
import sys

import harness


def test_quick_test_for_ci(tmp_path):
    root = harness.boot()
    (tmp_path / "custom_nodes").mkdir()
    (tmp_path / "custom_nodes" / harness.PACK_DIR_NAME).symlink_to(harness.REPO, target_is_directory=True)
    proc = subprocess.run(
        [sys.executable, str(root / "main.py"), "--cpu", "--quick-test-for-ci", "--base-directory", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    lines = [line for line in log.splitlines() if harness.PACK_DIR_NAME in line]
    assert any("seconds" in line for line in lines), log[-4000:]  # listed under "Import times"
    assert not any("IMPORT FAILED" in line for line in lines), lines
