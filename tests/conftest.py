import sys

import pack  # scripts/pack.py, the one loader of the pack (pyproject's pytest pythonpath: scripts)
import pytest

# The tests' import path, set here once: the runner's and the fixtures' modules the tests import by
# a short name (`import harness`) are the pack's own modules, one copy each.
TEST_IMPORTS = {
    "harness": "fixtures.harness", "tiny_nodes": "fixtures.test_nodes.tiny_nodes", "thirdparty": "fixtures.thirdparty",
    "distributed_pack": "fixtures.distributed_pack", "learn_scenes": "fixtures.learn_scenes", "comfy_client": "runner.client", "shard_sweep": "runner.shard",
    "workflow_api": "runner.workflow_api", "model_files": "runner.model_files", "bokeh_sweep": "runner.sweep_command",
    "make_locales": "tools.make_locales", "make_workflows": "tools.make_workflows",
}
for short, name in TEST_IMPORTS.items():
    sys.modules[short] = pack.module(name)

import harness  # noqa: E402

harness.boot()  # the tests run on the CPU; the tiny models need the host imported


@pytest.fixture(scope="session")
def pack():
    harness.quiet_host_logging()
    return harness.load_pack()


# The pack's modules as the tests call them (mods.pivot is nodes/pivot.py), one name each.
PACK_MODULES = {
    "ckpt": "weights.checkpoint", "keys": "weights.keys", "safetensors_file": "weights.safetensors_file",
    "torch_zip": "weights.torch_zip", "folder": "weights.folder",
    "errors": "attention.errors", "families": "attention.families", "binding": "attention.binding", "patch": "attention.patch",
    "bokeh": "attention.bokeh",
    "adapter": "nodes.adapter", "pivot": "nodes.pivot", "color": "nodes.color", "blur_meter": "nodes.blur_meter",
    "contact_sheet": "nodes.contact_sheet", "blur_levels": "nodes.blur_levels", "photo": "nodes.photo",
    "gather": "nodes.gather", "node": "nodes.render",
    "levels": "sweep.levels", "parts": "sweep.participants", "colormath": "sweep.color", "outputs": "sweep.outputs",
    "pivot_latents": "sweep.pivot_latents",
    "data": "training.data", "recipe": "training.recipe", "trainer": "training.trainer", "batches": "training.batches",
    "exif": "training.exif", "step": "training.step", "io": "training.adapter_io", "render": "training.render",
    "defocus": "training.defocus", "train_binding": "training.binding",
}


class PackModules:
    """mods.<name>: the pack's module (as ComfyUI loaded it) by its name in PACK_MODULES."""

    def __getattr__(self, name):
        if name not in PACK_MODULES:
            raise AttributeError(f"no pack module called {name!r} in tests/conftest.py PACK_MODULES")
        module = harness.pack_module(PACK_MODULES[name])
        setattr(self, name, module)
        return module


@pytest.fixture(scope="session")
def mods(pack):
    return PackModules()


# BOKEH_TEST_SCOPE=core (set by .ci/run for the hosts between the floor and the newest): the tests
# that start real ComfyUI servers (harness.comfy_server / comfy_servers: the HTTP API, the browser,
# the multi-server sweeps) are skipped there; the maths and the host hooks run on every host.
SERVER_HELPER = "harness.comfy_server"


def _starts_servers(module, seen={}):  # noqa: B006 (a per-session cache of module sources)
    if module not in seen:
        import inspect

        seen[module] = SERVER_HELPER in inspect.getsource(module)
    return seen[module]


def pytest_collection_modifyitems(config, items):
    import os

    if os.environ.get("BOKEH_TEST_SCOPE", "all") != "core":
        return
    skip = pytest.mark.skip(reason="BOKEH_TEST_SCOPE=core: tests that start ComfyUI servers run on the floor and the newest host (.ci/run)")
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and _starts_servers(module):
            item.add_marker(skip)
