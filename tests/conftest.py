import harness
import pytest


@pytest.fixture(scope="session")
def pack():
    harness.quiet_host_logging()
    return harness.load_pack()
