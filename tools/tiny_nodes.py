"""Test-only nodes that stand in for the model loaders and text encoders: tiny FLUX models
with seeded random weights and random conditioning. Everything else in a test graph is the
host's own nodes or ours."""

from __future__ import annotations

import harness


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
            overrides = {} if preset == "tiny" else harness.MID
            self._cache[key] = harness.tiny_flux(seed, **overrides)
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
        cfg = harness.TINY if preset == "tiny" else harness.MID
        return (harness.flux_conditioning(seed, context_dim=cfg["context_in_dim"], vec_dim=cfg["vec_in_dim"], guidance=guidance),)


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
            self._cache[seed] = harness.tiny_vae(seed)
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
