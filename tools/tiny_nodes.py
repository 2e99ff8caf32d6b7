"""Test-only nodes that stand in for the model loaders and text encoders: tiny FLUX models
with seeded random weights and random conditioning. Everything else in a test graph is the
host's own nodes or ours."""

from __future__ import annotations

import tiny_models
from workflow_api import text_seed


class BokehTestTinyFlux:
    CATEGORY = "testing"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "build"
    _cache: dict = {}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31}),
                             "preset": (["tiny", "mid"],)}}

    def build(self, seed, preset):
        key = (seed, preset)
        if key not in self._cache:
            overrides = {} if preset == "tiny" else tiny_models.MID
            self._cache[key] = tiny_models.tiny_flux(seed, **overrides)
        return (self._cache[key],)


class BokehTestConditioning:
    CATEGORY = "testing"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31}),
                             "guidance": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 100.0}),
                             "preset": (["tiny", "mid"],)}}

    def build(self, seed, guidance, preset):
        cfg = tiny_models.TINY if preset == "tiny" else tiny_models.MID
        return (tiny_models.flux_conditioning(seed, context_dim=cfg["context_in_dim"], vec_dim=cfg["vec_in_dim"], guidance=guidance),)


class BokehTestTinyVAE:
    CATEGORY = "testing"
    RETURN_TYPES = ("VAE",)
    FUNCTION = "build"
    _cache: dict = {}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    def build(self, seed):
        if seed not in self._cache:
            self._cache[seed] = tiny_models.tiny_vae(seed)
        return (self._cache[seed],)


class TinyTextEncoder:
    """Stands in for a FLUX text encoder (comfy.sd.CLIP): the same two calls CLIPTextEncode makes,
    giving random conditioning seeded by the text, the same as the swapped CLIPTextEncode
    (BokehTestConditioning, tools/workflow_api.py) gives for that text."""

    def __init__(self, preset: str):
        self.cfg = tiny_models.TINY if preset == "tiny" else tiny_models.MID

    def tokenize(self, text):
        return {"text": str(text)}

    def encode_from_tokens_scheduled(self, tokens):
        cond = tiny_models.flux_conditioning(text_seed(tokens["text"]), context_dim=self.cfg["context_in_dim"], vec_dim=self.cfg["vec_in_dim"])
        cond[0][1].pop("guidance")
        return cond


class BokehTestTinyCLIP:
    """Stands in for DualCLIPLoader."""

    CATEGORY = "testing"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"preset": (["tiny", "mid"],)}}

    def build(self, preset):
        return (TinyTextEncoder(preset),)


class BokehTestTinyCheckpoint:
    """Stands in for CheckpointLoaderSimple: MODEL, CLIP (none; text encoding is swapped too), VAE."""

    CATEGORY = "testing"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31}), "preset": (["tiny", "mid"],)}}

    def build(self, seed, preset):
        return (BokehTestTinyFlux().build(seed, preset)[0], None, BokehTestTinyVAE().build(seed)[0])


TEST_NODES = {"BokehTestTinyCLIP": BokehTestTinyCLIP, "BokehTestTinyCheckpoint": BokehTestTinyCheckpoint, "BokehTestTinyVAE": BokehTestTinyVAE, "BokehTestTinyFlux": BokehTestTinyFlux, "BokehTestConditioning": BokehTestConditioning}


def register_test_nodes():
    import nodes

    nodes.NODE_CLASS_MAPPINGS.update(TEST_NODES)


class BokehTestAttentionOverride:
    """Stands in for SageAttention-style nodes: puts its own function into the attention override
    slot, overwriting whatever is there. 'pass' calls the backend as it is; 'scale' changes the
    result (x 0.9). Counts its calls."""

    CATEGORY = "testing"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    calls = 0

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "mode": (["pass", "scale"],)}}

    def patch(self, model, mode):
        def override(func, *args, **kwargs):
            BokehTestAttentionOverride.calls += 1
            out = func(*args, **kwargs)
            return out if mode == "pass" else out * 0.9

        out = model.clone()
        out.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = override
        return (out,)


TEST_NODES["BokehTestAttentionOverride"] = BokehTestAttentionOverride
