"""Load Bokeh Adapter and Apply Bokeh Adapter (with the Blur Level slider)."""

from __future__ import annotations

from comfy_api.latest import io

from ..attention.families import compute_dtype, fit_adapter
from ..attention.patch import apply_adapter
from ..weights.folder import adapter_files, load_named, unlisted_reason
from .common import ADVANCED, CATEGORY, BokehAdapterType, blur_input, check_blur, check_scale, list_runs, search_aliases, show_on_node


class BokehAdapterLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BokehAdapterLoader",
            display_name="Load Bokeh Adapter",
            category=CATEGORY,
            **search_aliases(),
            description="Loads a Bokeh adapter from models/bokeh_diffusion: the Bokeh Diffusion text-to-image adapter "
            "for FLUX.1-dev (model.safetensors) or the BokehDepth photo adapter for FLUX.1 Kontext (bokeh_lora.bin). "
            "Which one it is, is read from the file's keys and shown on the node.",
            inputs=[
                io.Combo.Input(
                    "adapter_name", display_name="Adapter", options=adapter_files(),
                    tooltip="The adapter file in ComfyUI/models/bokeh_diffusion: the authors' model.safetensors "
                    "(text-to-image) or bokeh_lora.bin (photo), any name. .safetensors files are listed, and .bin/.pt "
                    "files that are PyTorch zip checkpoints (read with PyTorch's restricted loader: tensors only).",
                ),
            ],
            outputs=[BokehAdapterType.Output(
                display_name="Bokeh Adapter",
                tooltip="The adapter's weights, for Apply Bokeh Adapter. Text-to-image adapter: for FLUX.1-dev, "
                "K / 30. Photo adapter: for FLUX.1 Kontext with a reference photo, K clamped to 1..30.",
            )],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, adapter_name) -> bool | str:
        # At queue time, so a missing adapter is named in the "prompt invalid" answer beside
        # missing FLUX files. Only names from the folder listing are accepted (some hosts do not
        # check V3 combo values themselves).
        return unlisted_reason(adapter_name) or True

    @classmethod
    def execute(cls, adapter_name) -> io.NodeOutput:
        loaded = load_named(adapter_name)
        show_on_node(cls, f"{loaded.dims.flavour_name}: {len(loaded.dims.blocks)} blocks, rank {loaded.dims.rank}")
        return io.NodeOutput(loaded)


class BokehApplyAdapter(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="BokehApplyAdapter",
            display_name="Apply Bokeh Adapter",
            category=CATEGORY,
            **search_aliases(),
            description="Gives a FLUX model a physical defocus-blur control. Returns a patched copy; the input "
            "model is untouched. Applying again replaces the adapter.",
            # Lists (a FLOAT list of blur levels) come in whole, so their length is checked before
            # any run; the runs follow ComfyUI's own rule (nodes.common.list_runs).
            is_input_list=True,
            inputs=[
                io.Model.Input("model", display_name="Model", tooltip="A FLUX.1 model (FLUX.1-dev in the paper)."),
                BokehAdapterType.Input("bokeh_adapter", display_name="Bokeh Adapter", tooltip="From Load Bokeh Adapter."),
                blur_input(
                    "blur_level", 10.0, display_name="Blur Level",
                    tooltip="Defocus blur K: 0 = everything sharp, 30 = strongest bokeh. Connect a FLOAT list "
                    "(Bokeh Blur Levels) to render one image per level.",
                ),
                io.Float.Input(
                    "bokeh_scale", display_name="Bokeh Scale", default=1.0, min=-10.0, max=10.0, step=0.05, optional=True, **ADVANCED,
                    tooltip="Advanced: strength of the blur conditioning (bokeh cross-attention). 1.0 = reference.",
                ),
                io.Float.Input(
                    "lora_scale", display_name="LoRA Scale", default=1.0, min=-10.0, max=10.0, step=0.05, optional=True, **ADVANCED,
                    tooltip="Advanced: strength of the adapter's query/key updates. 1.0 = reference.",
                ),
            ],
            outputs=[io.Model.Output(display_name="Model", is_output_list=True,
                                     tooltip="A patched copy of the model; the input model is untouched. One per blur level.")],
        )

    @classmethod
    def execute(cls, model, bokeh_adapter, blur_level, bokeh_scale=1.0, lora_scale=1.0) -> io.NodeOutput:
        runs = list_runs("Apply Bokeh Adapter", model=model, bokeh_adapter=bokeh_adapter, blur_level=blur_level,
                         bokeh_scale=bokeh_scale, lora_scale=lora_scale)
        return io.NodeOutput([_apply(**run) for run in runs])


def _apply(model, bokeh_adapter, blur_level, bokeh_scale, lora_scale):
    k = check_blur(blur_level, "Blur Level", bokeh_adapter.dims.flavour)
    name = bokeh_adapter.source
    block_map = fit_adapter(model, bokeh_adapter.dims, name)
    bokeh, lora = check_scale(bokeh_scale, "bokeh_scale"), check_scale(lora_scale, "lora_scale")
    adapter = bokeh_adapter.for_dtype(compute_dtype(model))
    return apply_adapter(model, adapter, bokeh_adapter.patchers, block_map, [k], bokeh, lora, source=name)
