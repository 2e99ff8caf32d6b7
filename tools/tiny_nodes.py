"""Test-only nodes that stand in for the model loaders and text encoders: tiny FLUX models
with seeded random weights and random conditioning. Everything else in a test graph is the
host's own nodes or ours."""

from __future__ import annotations

import tiny_models


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


TEST_NODES = {"BokehTestTinyCheckpoint": BokehTestTinyCheckpoint, "BokehTestTinyVAE": BokehTestTinyVAE, "BokehTestTinyFlux": BokehTestTinyFlux, "BokehTestConditioning": BokehTestConditioning}


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
