"""The model files a Bokeh sweep needs: the names the README and the bundled workflows use, and
where each comes from. Shared by the workflow generator and the headless runner."""

FLUX_UNET = "flux1-dev.safetensors"
T5 = "t5xxl_fp16.safetensors"
CLIP_L = "clip_l.safetensors"
AE = "ae.safetensors"
FLUX_CKPT = "flux1-dev-fp8.safetensors"
ADAPTER = "bokeh_diffusion_flux.safetensors"
KONTEXT_UNET = "flux1-kontext-dev.safetensors"  # FLUX.1 Kontext [dev], for the photo adapter
PHOTO_ADAPTER = "bokeh_lora.bin"  # the BokehDepth photo adapter, under its released name
PHOTO_IMAGE = "example.png"  # the photo the photo workflows start from: ComfyUI ships it in input/

WHERE_TO_GET = {  # model folder -> where its file comes from
    "diffusion_models": "FLUX.1-dev from Black Forest Labs (huggingface.co/black-forest-labs/FLUX.1-dev, flux1-dev.safetensors; gated, accept its licence); for the photo adapter FLUX.1 Kontext [dev] (huggingface.co/black-forest-labs/FLUX.1-Kontext-dev, flux1-kontext-dev.safetensors; gated, non-commercial licence)",
    "text_encoders": "ComfyUI's FLUX text encoders (huggingface.co/comfyanonymous/flux_text_encoders: t5xxl_fp16.safetensors, clip_l.safetensors)",
    "vae": "ae.safetensors from the FLUX.1-dev repository",
    "checkpoints": "a single-file FLUX.1-dev checkpoint, e.g. flux1-dev-fp8.safetensors (huggingface.co/Comfy-Org/flux1-dev)",
    "bokeh_diffusion": "the Bokeh Diffusion adapter from the authors (github.com/atfortes/BokehDiffusion: model.safetensors of the FLUX release; NTU S-Lab licence, non-commercial), renamed; for photos the BokehDepth photo adapter (huggingface.co/fogradio/BokehDepth, weights/bokeh_lora.bin; licence not stated, treat as non-commercial)",
}

SOURCES = {  # file name -> where that file comes from (one hint per file, its own source)
    FLUX_UNET: "FLUX.1-dev from Black Forest Labs: huggingface.co/black-forest-labs/FLUX.1-dev, flux1-dev.safetensors (gated: accept its licence)",
    KONTEXT_UNET: "FLUX.1 Kontext [dev] from Black Forest Labs: huggingface.co/black-forest-labs/FLUX.1-Kontext-dev, "
                  "flux1-kontext-dev.safetensors (gated, non-commercial licence)",
    T5: "ComfyUI's FLUX text encoders: huggingface.co/comfyanonymous/flux_text_encoders, t5xxl_fp16.safetensors",
    CLIP_L: "ComfyUI's FLUX text encoders: huggingface.co/comfyanonymous/flux_text_encoders, clip_l.safetensors",
    AE: "the FLUX.1-dev repository: huggingface.co/black-forest-labs/FLUX.1-dev, ae.safetensors",
    FLUX_CKPT: "a single-file FLUX.1-dev checkpoint: huggingface.co/Comfy-Org/flux1-dev, flux1-dev-fp8.safetensors",
    ADAPTER: "the Bokeh Diffusion adapter from the authors: github.com/atfortes/BokehDiffusion, model.safetensors of the "
             "FLUX release, renamed (NTU S-Lab licence, non-commercial)",
    PHOTO_ADAPTER: "the BokehDepth photo adapter: huggingface.co/fogradio/BokehDepth, weights/bokeh_lora.bin (licence not "
                   "stated, treat as non-commercial)",
}


def where_to_get(name: str, folder: str) -> str:
    """Where the file ``name`` (in model folder ``folder``) comes from: its own source when it is
    one of the files above, else what that folder holds."""
    return SOURCES.get(name) or WHERE_TO_GET[folder]


# What the frontend offers to download when a workflow's loader lacks its file
# (node properties "models": name, url, directory). Only direct file URLs on huggingface.co get a
# Download button; the adapter's row points to the authors' release page (non-commercial
# licence, and the pack never downloads it).
DOWNLOADS = {
    FLUX_UNET: ("https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/flux1-dev.safetensors", "diffusion_models"),
    T5: ("https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors", "text_encoders"),
    CLIP_L: ("https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors", "text_encoders"),
    AE: ("https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/ae.safetensors", "vae"),
    FLUX_CKPT: ("https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/flux1-dev-fp8.safetensors", "checkpoints"),
    ADAPTER: ("https://github.com/atfortes/BokehDiffusion", "bokeh_diffusion"),
    KONTEXT_UNET: ("https://huggingface.co/black-forest-labs/FLUX.1-Kontext-dev/resolve/main/flux1-kontext-dev.safetensors", "diffusion_models"),
    PHOTO_ADAPTER: ("https://huggingface.co/fogradio/BokehDepth", "bokeh_diffusion"),
}


def model_rows(*names: str) -> list[dict]:
    return [{"name": n, "url": DOWNLOADS[n][0], "directory": DOWNLOADS[n][1]} for n in names]
