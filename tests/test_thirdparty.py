"""Beside the packs FLUX users run, through ComfyUI's executor on tiny models: speed-up packs that
replace FLUX's forward (TeaCache, WaveSpeed First Block Cache, MagCache: real, unmodified copies
from ../shared/thirdparty/) stop sampling with the error that names them, in either order and
with a Pivot Batch; core EasyCache and LazyCache and core ModelAttentionBackend keep the blur
and the grounding. A missing archive is not tested: a skip, and a failure under CI=true."""

import inspect
import os
import types

import harness
import pytest
import reference
import thirdparty
import torch

CFG = harness.TINY
N_BLOCKS = CFG["depth"] + CFG["depth_single_blocks"]
ADAPTER = "thirdparty.safetensors"
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")

# pack folder -> (node, its inputs, steps). MagCache with retention 0.3 over 4 steps: its first
# step runs in full (with fewer steps its cache is read before anything was stored, which fails
# without this pack too).
SPEEDUP_PACKS = {
    "ComfyUI-TeaCache": ("TeaCache", dict(model_type="flux", rel_l1_thresh=0.4, start_percent=0.0, end_percent=1.0, cache_device="cpu"), 3),
    "Comfy-WaveSpeed": ("ApplyFBCacheOnModel", dict(object_to_patch="diffusion_model", residual_diff_threshold=0.12, start=0.0, end=1.0,
                                                    max_consecutive_cache_hits=-1), 3),
    "ComfyUI-MagCache": ("MagCache", dict(model_type="flux", magcache_thresh=0.06, retention_ratio=0.3, magcache_K=2, start_step=0, end_step=-1), 4),
}
# Core caches: reuse from the first step on, so that they do skip model calls on these tiny models.
CORE_CACHES = {name: dict(reuse_threshold=0.5, start_percent=0.0, end_percent=1.0, verbose=False) for name in ("EasyCache", "LazyCache")}


@pytest.fixture(scope="module")
def adapter(pack, tmp_path_factory):
    return harness.write_adapter(tmp_path_factory.mktemp("thirdparty_models"),
                                 reference.random_adapter_sd(CFG["hidden_size"], range(N_BLOCKS), seed=41), name=ADAPTER)


def graph(node=None, inputs=None, order="after", pivot=False, blur=30.0, grounding=0.8, steps=3):
    """model -> [node] -> Apply -> [Pivot Batch (targets 0, 30)] -> [node] -> KSampler, with ``node``
    before Apply or right before the sampler (``order``)."""
    g = harness.tiny_graph(ADAPTER, blur=blur, steps=steps)
    last = ["apply", 0]
    if pivot:
        g["pivot"] = {"class_type": "BokehPivotBatch", "inputs": {
            "model": last, "latent": ["latent", 0], "pivot_blur": 15.0, "targets": "0, 30", "grounding": grounding}}
        last = ["pivot", 0]
        g["sample"]["inputs"].update(model=last, latent_image=["pivot", 1])
    if node is not None:
        harness.insert_model_node(g, {"class_type": node, "inputs": dict(inputs or {})}, order, last)
    return g


latents = harness.sampled


def without_adapter(prompt):
    g = dict(prompt)
    for node in ("loader", "apply", "pivot"):
        g.pop(node, None)
    g["sample"] = dict(g["sample"], inputs=dict(g["sample"]["inputs"], model=["other", 0], latent_image=["latent", 0]))
    g["other"] = dict(g["other"], inputs=dict(g["other"]["inputs"], model=["model", 0]))
    return g


_usable: dict = {}


def speedup_node(folder):
    """The pack's node on this host, or a skip saying why not (a failure under CI=true when the
    archive is missing). A pack that fails on this host without this pack is skipped with its error."""
    if folder not in _usable:
        try:
            thirdparty.load(folder)
            node, inputs, steps = SPEEDUP_PACKS[folder]
            alone = harness.run_prompt(without_adapter(graph(node, inputs, steps=steps)))
            _usable[folder] = None if alone.ok else (
                f"{folder} fails on this ComfyUI without the Bokeh pack: {alone.errors.get('exception_type', '')}: "
                f"{str(alone.errors.get('exception_message', alone.errors))[:200]}")
        except thirdparty.Missing as e:
            _usable[folder] = ("missing", f"NOT TESTED: {e}")
        except ImportError as e:
            _usable[folder] = f"{folder} does not import on this ComfyUI: {e}"
    why = _usable[folder]
    if isinstance(why, tuple):
        if IN_CI:
            pytest.fail(why[1] + " (CI is set)")
        pytest.skip(why[1])
    if why:
        pytest.skip(why)
    return SPEEDUP_PACKS[folder]


@pytest.mark.parametrize("pivot", [False, True], ids=["apply", "pivot"])
@pytest.mark.parametrize("order", ["before", "after"])
@pytest.mark.parametrize("folder", SPEEDUP_PACKS)
def test_speedup_pack_that_replaces_forward_is_named(adapter, folder, order, pivot):
    node, inputs, steps = speedup_node(folder)
    result = harness.run_prompt(graph(node, inputs, order, pivot, steps=steps))
    assert not result.ok and "sample" not in result.outputs  # no latents without the blur
    assert result.errors["exception_type"].endswith("BokehConflictError"), result.errors
    message = result.errors["exception_message"]
    assert folder in message and "EasyCache" in message and "\n" not in message.strip()


def test_after_a_refused_run_the_model_renders(adapter):
    """Nothing of a refused call (the probe, the slot) is left over for the next run."""
    node, inputs, steps = speedup_node("ComfyUI-TeaCache")
    assert not harness.run_prompt(graph(node, inputs, steps=steps)).ok
    blurred = latents(graph(blur=30.0))
    assert (blurred - latents(graph(blur=0.0))).abs().max() > 1e-3


def assert_blur_and_grounding(node, inputs, order, steps=3):
    grounded = latents(graph(node, inputs, order, pivot=True, grounding=1.0, steps=steps))
    free = latents(graph(node, inputs, order, pivot=True, grounding=0.0, steps=steps))
    # rows: pivot (15), target 0, target 30. The q/k update is the same for every K, so rows 1 and 2
    # differ only through the bokeh bias: the blur reached attention.
    assert (grounded[1] - grounded[2]).abs().max() > 1e-3
    assert (grounded[1:] - free[1:]).abs().max() > 1e-3  # the targets are grounded on the pivot
    return grounded


_plain: dict = {}


def plain_sweep(steps):
    """The grounded Pivot Batch sweep with nothing else on the model (once per module)."""
    if steps not in _plain:
        _plain[steps] = latents(graph(pivot=True, grounding=1.0, steps=steps))
    return _plain[steps]


@pytest.mark.parametrize("order", ["before", "after"])
@pytest.mark.parametrize("cache", CORE_CACHES)
def test_core_caches_keep_blur_and_grounding(adapter, cache, order):
    import nodes

    if cache not in nodes.NODE_CLASS_MAPPINGS:
        pytest.skip(f"this ComfyUI has no {cache} node")
    steps = 6
    cached = assert_blur_and_grounding(cache, CORE_CACHES[cache], order, steps=steps)
    assert (cached - plain_sweep(steps)).abs().max() > 1e-4  # the cache did reuse steps (calls without blocks are fine)


@pytest.mark.parametrize("order", ["before", "after"])
def test_core_attention_backend_keeps_blur_and_grounding(adapter, order):
    """ModelAttentionBackend (0.33.0+) writes the attention override slot itself at node time."""
    import nodes

    if "ModelAttentionBackend" not in nodes.NODE_CLASS_MAPPINGS:
        pytest.skip("this ComfyUI has no ModelAttentionBackend node (0.33.0+)")
    backend = latents(graph("ModelAttentionBackend", {"attention": "pytorch attention"}, order, pivot=True, grounding=1.0))
    assert_blur_and_grounding("ModelAttentionBackend", {"attention": "pytorch attention"}, order)
    # Against the host's default backend (on CPU, sub-quadratic attention; the node picks PyTorch's SDPA):
    # other kernels, so float32 rounding differs (2.9e-6 at values up to 14 measured on 0.33.0); nothing
    # of the pack's attention is lost or doubled.
    default = plain_sweep(3)
    assert torch.allclose(backend, default, rtol=1e-5, atol=1e-4), float((backend - default).abs().max())


def replaced_forward(keep_options: bool):
    """A forward_orig another pack might put on the FLUX instance: FLUX's own, called with the
    sampler's transformer_options (``keep_options``) or with the attention override left out."""
    def forward_orig(self, *args, **kwargs):
        bound = inspect.signature(type(self).forward_orig).bind(self, *args, **kwargs)
        if not keep_options:
            to = bound.arguments.get("transformer_options") or {}
            bound.arguments["transformer_options"] = {k: v for k, v in to.items() if k != "optimized_attention_override"}
        return type(self).forward_orig(*bound.args, **bound.kwargs)
    return forward_orig


@pytest.fixture(scope="module")
def patched(adapter):
    nodes = harness.pack_module("nodes.adapter")
    out = nodes.BokehApplyAdapter.execute(harness.tiny_flux(seed=4), nodes.BokehAdapterLoader.execute(ADAPTER).result[0], 30.0).result[0]
    return out[0] if isinstance(out, list) else out  # an output list where Apply takes lists


def forward_inputs():
    g = torch.Generator().manual_seed(5)
    return (torch.randn(1, 16, 8, 8, generator=g), torch.full((1,), 0.6), torch.randn(1, 8, CFG["context_in_dim"], generator=g),
            torch.randn(1, CFG["vec_in_dim"], generator=g), torch.full((1,), 3.0))


def with_forward(model, keep_options):
    out = model.clone()
    dm = out.get_model_object("diffusion_model")
    out.add_object_patch("diffusion_model.forward_orig", types.MethodType(replaced_forward(keep_options), dm))
    return out


def test_a_foreign_forward_that_passes_the_options_is_not_refused(patched):
    expected = harness.diffusion_forward(patched, *forward_inputs())
    got = harness.diffusion_forward(with_forward(patched, keep_options=True), *forward_inputs())
    assert torch.equal(got, expected)  # the same modules in the same order: the same arithmetic


def test_a_foreign_forward_that_drops_the_override_is_named(patched):
    errors = harness.pack_module("attention.errors")
    with pytest.raises(errors.BokehConflictError, match="test_thirdparty"):
        harness.diffusion_forward(with_forward(patched, keep_options=False), *forward_inputs())
    assert harness.diffusion_forward(patched, *forward_inputs()).isfinite().all()  # the model itself still runs


def test_a_wrapper_that_drops_the_override_inside_the_call_is_caught(patched):
    """The safety net without a foreign forward: the effect decides (q/k ran, attention did not)."""
    import comfy.patcher_extension

    errors = harness.pack_module("attention.errors")

    def drop_override(executor, *args, **kwargs):  # inside the pack's wrapper: added after it
        for value in (*args, *kwargs.values()):  # transformer_options comes by position or by name
            if isinstance(value, dict) and "optimized_attention_override" in value:
                value.pop("optimized_attention_override")
        return executor(*args, **kwargs)

    other = patched.clone()
    other.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "test_drop", drop_override)
    with pytest.raises(errors.BokehConflictError, match="a node on this model's path"):
        harness.diffusion_forward(other, *forward_inputs())
