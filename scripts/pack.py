"""The one place that loads this pack outside ComfyUI's own loader.

The commands in this folder (bokeh_sweep.py, bokeh_train.py, tiny_server.py, dev.py) and the
tests start here. The pack is loaded from a custom_nodes folder of its own, under the module name
ComfyUI's loader gives a custom node folder (its path, "." written "_x_"). When the runner then
starts a ComfyUI in this process (runner/inprocess.py points the host at that folder), the host's
loader runs the pack's ``__init__`` again under the same name and every submodule already imported
stays the one copy: the runner, the nodes and the tests share each class.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FOLDER = "comfyui_bokeh_diffusion"  # the pack's folder name in that custom_nodes folder

_loaded = []


def load():
    """The pack's top-level module (loaded once per process)."""
    if not _loaded:
        nodes_dir = Path(tempfile.mkdtemp(prefix="bokeh_custom_nodes_"))
        atexit.register(shutil.rmtree, nodes_dir, True)
        folder = nodes_dir / FOLDER
        folder.symlink_to(REPO, target_is_directory=True)
        name = str(folder).replace(".", "_x_")  # as ComfyUI's nodes.load_custom_node names it
        spec = importlib.util.spec_from_file_location(name, folder / "__init__.py", submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        _loaded.append(name)
    return sys.modules[_loaded[0]]


def module(name: str):
    """A module of the pack by its dotted path in this repository, e.g. ``module("runner.shard")``."""
    return importlib.import_module(f"{load().__name__}.{name}")


def run(name: str, argv=None) -> int:
    """Run the ``main(argv)`` of the pack's module ``name``: the commands' one entry."""
    return module(name).main(argv)
