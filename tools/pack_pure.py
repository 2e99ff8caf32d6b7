"""The pack's pure modules (sweep.levels, sweep.checks, sweep.blur_meter, ...) imported without
ComfyUI, for the runner's parts that run no graph: the argument check and the --servers sweep."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACK_ALIAS = "bokeh_diffusion_pack"


def pack_module(name: str):
    """A pure module of the pack (``sweep.levels``, ``sweep.blur_meter``, ...) without ComfyUI:
    the pack's ``__init__`` only defines its entry point, so importing it runs nothing."""
    if PACK_ALIAS not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACK_ALIAS, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACK_ALIAS] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{PACK_ALIAS}.{name}")
