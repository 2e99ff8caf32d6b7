"""Bokeh Diffusion for ComfyUI: defocus-blur control for FLUX (GPL-3.0).

ComfyUI's V3 loader calls ``comfy_entrypoint``; importing this package does nothing else.
"""


async def comfy_entrypoint():
    from .nodes import BokehExtension

    return BokehExtension()
