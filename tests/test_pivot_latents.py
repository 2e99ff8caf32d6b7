"""The latent of a pivot batch (sweep/pivot_latents.py), a host-free module: its rules checked
directly, and that it imports nothing of ComfyUI."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

# Loads the pack (scripts/pack.py) with every ComfyUI module refused, then uses
# the module: it fails if sweep.pivot_latents (or what it imports) reaches for the host.
ISOLATED = r"""
import importlib, importlib.abc, importlib.util, sys
HOST = {"comfy", "comfy_api", "comfy_execution", "comfy_extras", "folder_paths", "server", "nodes", "execution", "node_helpers"}

class NoHost(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HOST:
            raise ImportError(f"host module {name} imported")
        return None

sys.meta_path.insert(0, NoHost())
sys.path.insert(0, sys.argv[1] + "/scripts")
import pack  # scripts/pack.py, the pack's one loader
import torch
for name in ("sweep.pivot_latents", "sweep.outputs"):
    pack.module(name)
latents = pack.module("sweep.pivot_latents")
out = latents.pivot_latent({"samples": torch.zeros(1, 16, 4, 4)}, 3)
assert out["samples"].shape == (3, 16, 4, 4) and out["batch_index"] == [0, 0, 0]
print("host-free:", sorted(m for m in sys.modules if m.split(".")[0] in HOST))
"""


def test_pivot_latents_and_sweep_outputs_import_no_host_module():
    run = subprocess.run([sys.executable, "-c", ISOLATED, str(REPO)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "host-free: []"


def test_rows_share_the_image_and_the_noise(mods):
    samples = torch.randn(1, 16, 6, 4)
    latent = {"samples": samples, "batch_index": [7], "type": "flux"}
    out = mods.pivot_latents.pivot_latent(latent, 4)
    assert out["samples"].shape == (4, 16, 6, 4)
    assert all(torch.equal(row, samples[0]) for row in out["samples"])
    assert out["batch_index"] == [7, 7, 7, 7]  # equal batch_index = equal noise (comfy.sample.prepare_noise)
    assert out["type"] == "flux"  # other keys kept
    assert latent["samples"] is samples and latent["batch_index"] == [7] and "noise_mask" not in out  # input untouched
    assert mods.pivot_latents.pivot_latent({"samples": samples}, 2)["batch_index"] == [0, 0]


def test_noise_mask_reduced_to_one_image(mods):
    base = {"samples": torch.zeros(1, 16, 8, 8)}
    hw = torch.rand(64, 64)
    assert mods.pivot_latents.pivot_latent(dict(base, noise_mask=hw), 3)["noise_mask"] is hw
    for mask in (torch.rand(2, 64, 64), torch.rand(2, 1, 64, 64)):
        assert torch.equal(mods.pivot_latents.pivot_latent(dict(base, noise_mask=mask), 3)["noise_mask"], mask[:1])
    one = torch.rand(1, 64, 64)
    assert mods.pivot_latents.pivot_latent(dict(base, noise_mask=one), 3)["noise_mask"] is one
    for bad in (torch.tensor(1.0), torch.zeros(0, 8, 8), torch.zeros(1, 1, 1, 8, 8), "mask"):
        with pytest.raises(mods.errors.BokehInputError, match="noise mask"):
            mods.pivot_latents.pivot_latent(dict(base, noise_mask=bad), 3)


@pytest.mark.parametrize("latent, match", [
    ({"samples": torch.zeros(1, 16, 8)}, "FLUX image latent"),
    ({"samples": torch.zeros(1, 16, 1, 8, 8)}, "FLUX image latent"),
    ({}, "FLUX image latent"),
    ("latent", "FLUX image latent"),
    ({"samples": torch.zeros(2, 16, 8, 8)}, "holds 2 images"),
])
def test_refuses_what_is_not_one_image_latent(mods, latent, match):
    with pytest.raises(mods.errors.BokehInputError, match=match):
        mods.pivot_latents.pivot_latent(latent, 3)
