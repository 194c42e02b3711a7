import pytest

from sandbox import Limits, Sandbox


@pytest.fixture(scope="session")
def sb():
    """One sandbox for the whole session: 2 zygotes, short limits."""
    with Sandbox(workers=2, limits=Limits(wall_s=3.0, cpu_s=3.0, memory_mb=512)) as box:
        yield box
