"""The pack behind ComfyUI's real HTTP API: `main.py` on loopback with this pack in custom_nodes,
prompts sent as a remote client would send them. Hostile adapter names are refused in the
"prompt invalid" answer with no file bytes; the folder list the frontend gets holds regular
files only; a listed adapter loads."""

import json
import os
import sys
import time

import harness
import pytest
import reference
import requests

CFG = harness.TINY


@pytest.fixture(scope="module")
def server(pack, tmp_path_factory):
    base = tmp_path_factory.mktemp("http_base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / harness.PACK_DIR_NAME).symlink_to(harness.REPO, target_is_directory=True)
    models = base / "models" / "bokeh_diffusion"
    models.mkdir(parents=True)
    from safetensors.torch import save_file

    save_file(reference.random_adapter_sd(CFG["hidden_size"], [0], seed=5), str(models / "api_adapter.safetensors"))
    os.mkfifo(models / "api_fifo.safetensors")
    (models / "api_device.safetensors").symlink_to("/dev/zero")
    with harness.comfy_server(base) as url:
        yield url


def post_loader(url, name):
    prompt = {"1": {"class_type": "BokehAdapterLoader", "inputs": {"adapter_name": name}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    return requests.post(url + "/prompt", data=json.dumps({"prompt": prompt}), timeout=60)


@pytest.mark.parametrize("name", ["/etc/passwd", "/proc/self/environ", "../../x", "x\0y", "n" * 5000,
                                  "api_fifo.safetensors", "api_device.safetensors"], ids=lambda n: repr(n[:20]))
def test_hostile_names_get_prompt_invalid_without_file_bytes(server, name):
    r = post_loader(server, name)
    assert r.status_code == 400, r.text[:2000]
    body = r.text
    assert "not in the list" in body and '"1"' in body
    for secret in ("root:", "PATH=", "HOME=", "/bin/bash"):
        assert secret not in body
    assert len(body) < 5000


def test_the_frontend_lists_regular_files_only(server):
    info = requests.get(server + "/object_info/BokehAdapterLoader", timeout=30).json()
    spec = info["BokehAdapterLoader"]["input"]["required"]["adapter_name"]
    options = spec[0] if isinstance(spec[0], list) else spec[1].get("options", [])
    assert options == ["api_adapter.safetensors"]


def test_a_listed_adapter_loads_through_the_api(server):
    r = post_loader(server, "api_adapter.safetensors")
    assert r.status_code == 200, r.text[:2000]
    prompt_id = r.json()["prompt_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        history = requests.get(f"{server}/history/{prompt_id}", timeout=10).json()
        if prompt_id in history and history[prompt_id].get("status", {}).get("completed"):
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"prompt did not finish: {history}")
    assert history[prompt_id]["status"]["status_str"] == "success"


def test_the_frontend_gets_labels_docs_script_and_templates(server):
    folder = harness.PACK_DIR_NAME
    scripts = requests.get(server + "/extensions", timeout=30).json()
    assert f"/extensions/{folder}/bokeh_ui.js" in scripts
    assert "BOKEH_SWEEP" in requests.get(f"{server}/extensions/{folder}/bokeh_ui.js", timeout=30).text
    doc = requests.get(f"{server}/extensions/{folder}/docs/BokehApplyAdapter.md", timeout=30)
    assert doc.ok and doc.text.startswith("# Apply Bokeh Adapter")
    i18n = requests.get(server + "/i18n", timeout=30).json()
    assert i18n["en"]["nodeDefs"]["BokehApplyAdapter"]["inputs"]["blur_level"]["name"] == "Blur Level"
    templates = requests.get(server + "/workflow_templates", timeout=30).json()
    bundled = sorted(p.stem for p in (harness.REPO / "workflows").glob("*.json"))
    assert "bokeh_grounded_sweep" in bundled and sorted(templates[folder]) == bundled
    thumb = requests.get(f"{server}/api/workflow_templates/{folder}/bokeh_grounded_sweep.jpg", timeout=30)
    assert thumb.ok and thumb.content[:3] == b"\xff\xd8\xff"
