"""Thin V3 nodes: read inputs, validate, call one function, return."""

from comfy_api.latest import ComfyExtension, io

from ..weights.folder import register_model_folder
from .adapter import BokehAdapterLoader, BokehApplyAdapter
from .blur_levels import BokehBlurLevels
from .blur_meter import BokehBlurMeter
from .color import BokehColorMatch
from .contact_sheet import BokehContactSheet
from .gather import BokehGatherSweep
from .photo import BokehPhotoPrompt, BokehPhotoResize
from .pivot import BokehPivotBatch
from .render import BokehRenderClassical
from .train import BokehTrainAdapter
from .train_data import BokehTrainingData


class BokehExtension(ComfyExtension):
    async def on_load(self) -> None:
        register_model_folder()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        # ComfyUI 0.3.75 calls only get_node_list, so the folder is registered here too.
        register_model_folder()
        return [
            BokehAdapterLoader, BokehApplyAdapter, BokehPivotBatch, BokehBlurLevels,
            BokehColorMatch, BokehContactSheet, BokehBlurMeter, BokehPhotoPrompt, BokehPhotoResize, BokehGatherSweep,
            BokehRenderClassical, BokehTrainingData, BokehTrainAdapter,
        ]
