import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import harness  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def pack():
    harness.quiet_host_logging()
    return harness.load_pack()
