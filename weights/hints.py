"""What the loader's errors tell the user to do (one place, so every message says the same)."""

DOWNLOAD_HINT = (
    "Download the authors' Bokeh Diffusion FLUX adapter (model.safetensors, about 583 MB; "
    "non-commercial licence) or the BokehDepth photo adapter (bokeh_lora.bin) and put it in "
    "ComfyUI/models/bokeh_diffusion/ (see the README)."
)

CONVERT_HINT = (
    "Convert it to a .safetensors file holding only the adapter's tensors (see the README's "
    "Troubleshooting), or download the original file again."
)
