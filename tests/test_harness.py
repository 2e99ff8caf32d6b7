"""The harness itself: the pack loads through ComfyUI's loader and runs in a real graph."""

import harness


def test_pack_registers_its_nodes(pack):
    import nodes

    for node_id in ("BokehAdapterLoader", "BokehApplyAdapter"):
        assert node_id in nodes.NODE_CLASS_MAPPINGS, node_id
        assert nodes.NODE_CLASS_MAPPINGS[node_id].RELATIVE_PYTHON_MODULE.startswith("custom_nodes.")
    assert nodes.NODE_DISPLAY_NAME_MAPPINGS["BokehApplyAdapter"] == "Apply Bokeh Adapter"


def test_package_exports_only_the_entrypoint(pack):
    public = {k for k in vars(pack) if not k.startswith("_")}
    # ComfyUI's loader sees V1 mappings first; the pack must be loaded as V3.
    assert "NODE_CLASS_MAPPINGS" not in public
    assert "comfy_entrypoint" in public
    assert public <= {"comfy_entrypoint", "WEB_DIRECTORY", "nodes", "weights", "attention", "sweep", "training"}


def test_every_input_has_a_tooltip(pack):
    import nodes

    for node_id, cls in nodes.NODE_CLASS_MAPPINGS.items():
        if not node_id.startswith("Bokeh") or node_id.startswith("BokehTest"):
            continue
        types = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, spec in types.get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_ksampler_runs_on_tiny_flux(pack):
    result = harness.run_prompt(harness.tiny_graph(steps=3))
    assert result.ok, result.errors
    samples = result.outputs["sample"][0][0]["samples"]
    assert samples.shape == (1, 16, 8, 8)
    assert samples.abs().sum() > 0


def test_validation_errors_come_back_structured(pack):
    prompt = {"1": {"class_type": "BokehApplyAdapter", "inputs": {"blur_level": 3.0}},
              "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "x"}}}
    result = harness.run_prompt(prompt)
    assert not result.ok
    assert "node_errors" in result.errors
