"""The Bokeh Diffusion method: pure torch maths, plus the one module bound to ComfyUI's FLUX."""
