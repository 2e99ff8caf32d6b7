"""ComfyUI-Distributed (robertvoy, 1.4.4, Apache-2.0) for tests: the real extension from
../shared/thirdparty/ (tools/thirdparty.py checks and unpacks it), copied unmodified into a test
ComfyUI's custom_nodes (one copy per server: the extension keeps gpu_config.json in its own
folder), and the master's gpu_config.json.

An absent archive is "not tested": tests skip, and fail where CI is set (``unpacked_or_skip``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import thirdparty

FOLDER = "ComfyUI-Distributed"
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1")


def unpacked_or_skip() -> Path:
    """The checked, unpacked extension; a missing archive skips the test (fails it under CI=true)."""
    import pytest

    try:
        return thirdparty.unpack(FOLDER)
    except thirdparty.Missing as e:
        if IN_CI:
            pytest.fail(f"CI=true but ComfyUI-Distributed is not tested: {e} (see ../shared/thirdparty/README.md)")
        pytest.skip(f"not tested: {e}")


def install(custom_nodes) -> Path:
    """A fresh copy of the extension in ``custom_nodes``; returns its folder."""
    dest = Path(custom_nodes) / FOLDER
    shutil.copytree(thirdparty.unpack(FOLDER), dest)
    return dest


def write_master_config(extension: Path, workers: list[tuple[str, int]], timeout_s: int = 10) -> None:
    """The master's gpu_config.json: ``workers`` = [(id, port)] on loopback, all enabled; dispatch
    over HTTP; ``timeout_s``: how long the collector waits for a silent worker before it gives up
    and returns the rows it has (the extension's default is 60 s)."""
    config = {
        "master": {"host": "127.0.0.1"},
        "workers": [{"id": wid, "name": wid, "host": "127.0.0.1", "port": port, "type": "local", "enabled": True}
                    for wid, port in workers],
        "settings": {"debug": True, "auto_launch_workers": False, "stop_workers_on_master_exit": False,
                     "master_delegate_only": False, "websocket_orchestration": False, "worker_timeout_seconds": timeout_s},
    }
    (Path(extension) / "gpu_config.json").write_text(json.dumps(config, indent=2))
