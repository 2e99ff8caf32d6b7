"""A real ComfyUI, in-process: what the sweep runner, the tests and the benchmarks run graphs on.

Nothing of the host is stubbed: the host is found by runner/host.py (COMFYUI_PATH, the
ComfyUI two folders up, or the pinned copy), its modules are imported as they are, this pack
is loaded by ComfyUI's own custom-node loader from the custom_nodes folder scripts/pack.py made
(so the host's module is the one this runner is part of), and prompts go through the host's
``validate_prompt`` and ``PromptExecutor``. Test fixtures (tiny models) live in fixtures/.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import importlib.util
import inspect
import logging
import os
import sys
import tempfile
import uuid
from pathlib import Path

from . import host

REPO = Path(__file__).resolve().parent.parent
PACK = __package__.rpartition(".")[0]  # the pack's module name (scripts/pack.py)

_state = {}


def boot(cpu: bool = True) -> Path:
    """Import the host (once per process). Returns the ComfyUI root."""
    if "root" in _state:
        return _state["root"]
    root = host.find_host()
    host.importable(root)
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = cpu
    # `nodes` puts ComfyUI/comfy first on sys.path; import the top-level `utils` package first.
    import utils.extra_config  # noqa: F401

    _state["root"] = root
    return root


def load_pack():
    """Load ComfyUI's built-in extra nodes and this pack through ComfyUI's own loader.

    Returns the pack's module as the loader registered it."""
    if "pack" in _state:
        return _state["pack"]
    boot()
    import folder_paths
    import nodes

    folder = Path(sys.modules[PACK].__path__[0])  # <custom_nodes of its own>/<pack>, made by scripts/pack.py
    folder_paths.folder_names_and_paths["custom_nodes"] = ([str(folder.parent)], set())
    out_dir = Path(tempfile.mkdtemp(prefix="bokeh_output_"))
    folder_paths.set_output_directory(str(out_dir))
    folder_paths.set_temp_directory(str(out_dir / "temp"))
    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
    pack = sys.modules.get(PACK)
    if pack is None or not hasattr(pack, "comfy_entrypoint") or f"{PACK}.nodes" not in sys.modules:
        raise RuntimeError(f"ComfyUI did not load the pack from {folder}; see the log above")
    _state["pack"] = pack
    return pack


def load_pack_quietly(level: int = logging.WARNING):
    """load_pack for the commands: ComfyUI logs its optional nodes' import failures (its audio
    nodes without torchaudio) as warnings with tracebacks, which do not concern a sweep or a
    training run; the log level is ``level`` afterwards."""
    logging.getLogger().setLevel(logging.ERROR)
    try:
        return load_pack()
    finally:
        logging.getLogger().setLevel(level)


def pack_module(name: str):
    """A submodule of the pack as ComfyUI loaded it, e.g. pack_module('attention.bokeh')."""
    load_pack()
    return importlib.import_module(f"{PACK}.{name}")


class _Server:
    """What PromptExecutor needs of a server: no client, messages kept for the test."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.messages = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


@dataclasses.dataclass
class RunResult:
    ok: bool
    outputs: dict  # node id -> tuple of outputs (as cached by the executor)
    ui: dict
    errors: dict  # validation: {"error": ..., "node_errors": ...}; execution: the error message
    messages: list


def new_executor():
    """A PromptExecutor as the server holds one: its caches live across the prompts it runs.

    Built as the host's ``main.py`` (``prompt_worker``) builds it with ``--cache-classic``: every
    cache_args key is zero. 0.3.75 and 0.8.0 read "lru" and "ram"; 0.30.0's
    ``PromptExecutor.execute_async`` also reads "ram_inactive" (main.py:349 there), which older
    hosts ignore (they only ``.get`` or index the keys they know)."""
    load_pack()
    import execution

    return execution.PromptExecutor(_Server(), cache_type=execution.CacheType.CLASSIC,
                                    cache_args={"lru": 0, "ram": 0, "ram_inactive": 0})


def _settled(value):
    """A cache lookup's value: 0.30.0's caches are async (``HierarchicalCache.get`` is a
    coroutine), older hosts' return the value itself."""
    return asyncio.run(value) if inspect.isawaitable(value) else value


def run_prompt(prompt: dict, outputs: list[str] | None = None, executor=None) -> RunResult:
    """Validate (host's validate_prompt) and execute (host's PromptExecutor) an API-format prompt.
    A fresh executor per prompt unless one is given (then its caches carry over, as in a server)."""
    load_pack()
    import execution

    prompt_id = str(uuid.uuid4())
    valid = asyncio.run(execution.validate_prompt(prompt_id, prompt, outputs))
    if not valid[0]:
        return RunResult(False, {}, {}, {"error": valid[1], "node_errors": valid[3]}, [])
    executor = executor or new_executor()
    executor.execute(prompt, prompt_id, {}, valid[2])
    node_outputs = {}
    for node_id in prompt:
        entry = _settled(executor.caches.outputs.get(node_id))
        if entry is not None:
            node_outputs[node_id] = entry.outputs
    errors = {}
    for event, data in executor.status_messages:
        if event == "execution_error":
            errors = {"exception_type": data["exception_type"], "exception_message": data["exception_message"],
                      "node_id": data["node_id"], "traceback": data["traceback"]}
    ui = getattr(executor, "history_result", {}).get("outputs", {})
    return RunResult(executor.success and not errors, node_outputs, ui, errors, executor.status_messages)


def quiet_host_logging():
    logging.getLogger().setLevel(logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")
