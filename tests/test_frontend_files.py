"""What the web frontend reads of the pack: labels (locales), per-node docs, the UI script,
template thumbnails and the workflows' model download rows. Checked against the live schemas,
so labels, docs and nodes cannot drift apart."""

import json

import harness
import make_locales
import make_workflows
import pytest
import workflow_api
from model_files import ADAPTER, DOWNLOADS, PHOTO_ADAPTER

WORKFLOWS = sorted((harness.REPO / "workflows").glob("*.json"))
LOADER_FILES = {  # loader -> widget names holding model files
    "UNETLoader": ["unet_name"], "DualCLIPLoader": ["clip_name1", "clip_name2"], "VAELoader": ["vae_name"],
    "CheckpointLoaderSimple": ["ckpt_name"], "BokehAdapterLoader": ["adapter_name"],
}


def test_locale_file_and_docs_match_the_schemas(pack):
    committed = (harness.REPO / "locales" / "en" / "nodeDefs.json").read_text()
    assert committed == make_locales.render(), "run: python scripts/dev.py tools.make_locales"
    for node_id, page in make_locales.doc_pages().items():
        path = harness.REPO / "web" / "docs" / f"{node_id}.md"
        assert path.read_text() == page, f"{path.name} is stale: run python scripts/dev.py tools.make_locales"


def test_the_bundled_workflows_are_what_the_generator_writes(pack):
    """workflows/*.json are generated (tools/make_workflows.py, from the live node schemas of the
    floor host, 0.3.75): a regeneration there gives the committed files, byte for byte, and no
    other. Newer hosts describe some core nodes differently (0.33.0's SaveImage lists an output),
    so their regeneration differs by design; the workflows' loading there is test_workflows.py's."""
    import comfyui_version

    if comfyui_version.__version__ != "0.3.75":
        pytest.skip(f"the workflows are generated on ComfyUI 0.3.75 (the floor); this host is {comfyui_version.__version__}")
    rendered = make_workflows.render()
    committed = {path.name: path.read_text() for path in WORKFLOWS}
    assert sorted(rendered) == sorted(committed), "run: python scripts/dev.py tools.make_workflows"
    for name, text in rendered.items():
        assert committed[name] == text, f"workflows/{name} is stale: run python scripts/dev.py tools.make_workflows"


def test_every_input_and_output_has_a_label(pack):
    defs = json.loads((harness.REPO / "locales" / "en" / "nodeDefs.json").read_text())
    assert len(defs) == 13
    for node_id, entry in defs.items():
        assert entry["display_name"].startswith("Bokeh") or "Bokeh" in entry["display_name"], node_id
        for where in ("inputs", "outputs"):
            for key, item in entry[where].items():
                label = item["name"]
                assert label and label[0].isupper() and "_" not in label, (node_id, where, key, label)
                assert item["tooltip"], (node_id, where, key)


def test_web_directory_holds_docs_and_the_ui_script(pack):
    assert pack.WEB_DIRECTORY == "./web"
    script = (harness.REPO / "web" / "bokeh_ui.js").read_text()
    assert "BOKEH_ADAPTER" in script and "BOKEH_SWEEP" in script and "registerExtension" in script
    assert 'from "../../scripts/app.js"' in script  # served at /extensions/<folder>/bokeh_ui.js


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_thumbnail_is_an_honest_illustration(path):
    from PIL import Image

    thumb = path.with_suffix(".jpg")
    with Image.open(thumb) as img:
        assert img.format == "JPEG" and img.size == (512, 384)
    assert thumb.stat().st_size < 100_000


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_loaders_offer_their_model_files(path):
    workflow = workflow_api.load(path)
    if path.stem == "bokeh_classical_render":  # no model: no download rows, no model licence to state
        assert not any(LOADER_FILES.get(n["type"]) for n in workflow["nodes"])
        return
    seen = 0
    for node in workflow["nodes"]:
        widgets = LOADER_FILES.get(node["type"])
        if not widgets:
            continue
        rows = node["properties"].get("models")
        assert rows, f"{node['type']} has no model download rows"
        names = {r["name"] for r in rows}
        files = {v for v in node["widgets_values"] if isinstance(v, str) and v.endswith((".safetensors", ".bin"))}
        assert files == names, (node["type"], files, names)
        for row in rows:
            assert row["url"] == DOWNLOADS[row["name"]][0] and row["directory"] == DOWNLOADS[row["name"]][1]
            if row["name"] == ADAPTER:  # never a made-up file URL: the authors' page, non-commercial
                assert "huggingface.co" not in row["url"] and "atfortes/BokehDiffusion" in row["url"]
            elif row["name"] == PHOTO_ADAPTER:  # the authors' repository page, not a file to download
                assert row["url"] == "https://huggingface.co/fogradio/BokehDepth" and not row["url"].endswith(row["name"])
            else:
                assert row["url"].startswith("https://huggingface.co/") and row["url"].endswith(row["name"])
        seen += 1
    assert seen >= 2
    notes = [n["widgets_values"][0] for n in workflow["nodes"] if n["type"] == "Note"]
    assert any("NON-COMMERCIAL" in n for n in notes)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_layout_has_no_overlaps_and_one_grounding_control(pack, path):
    import nodes

    workflow = workflow_api.load(path)
    boxes = [(n["id"], n["pos"][0], n["pos"][1], n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1]) for n in workflow["nodes"]]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            apart = a[3] <= b[1] or b[3] <= a[1] or a[4] <= b[2] or b[4] <= a[2]
            assert apart, f"nodes {a[0]} and {b[0]} overlap"
    widgets = [name for name, spec in workflow_api.widget_inputs(nodes.NODE_CLASS_MAPPINGS["BokehPivotBatch"]) if workflow_api.is_widget(spec)]
    for node in workflow["nodes"]:
        if node["type"] == "BokehPivotBatch":
            values = dict(zip(widgets, node["widgets_values"]))
            assert values["grounding_steps"] == -1 and values["grounding"] == 0.8  # the slider decides


def test_sweep_workflows_show_the_plot(pack):
    for path in WORKFLOWS:
        workflow = workflow_api.load(path)
        meters = [n["id"] for n in workflow["nodes"] if n["type"] == "BokehBlurMeter"]
        for meter in meters:
            plot_links = [l for l in workflow["links"] if l[1] == meter and l[2] == 2]
            assert plot_links, f"{path.name}: the Blur Meter's plot goes nowhere"
