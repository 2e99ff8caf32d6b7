"""Bokeh Diffusion for ComfyUI: defocus-blur control for FLUX (GPL-3.0).

ComfyUI's V3 loader calls ``comfy_entrypoint``; importing this package does nothing else.
``WEB_DIRECTORY`` is what the frontend reads: per-node docs and a small UI script.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import BokehExtension

    return BokehExtension()
