import pytest

from sandbox import Limits, Sandbox


@pytest.fixture(scope="session", autouse=True)
def offline():
    """Nothing in the tests may come from a model hub."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="session")
def sb():
    """One sandbox for the whole session: 2 zygotes, short limits."""
    with Sandbox(workers=2, limits=Limits(wall_s=3.0, cpu_s=3.0, memory_mb=512)) as box:
        yield box


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random 2-layer Llama and a byte-level BPE tokenizer, built offline."""
    from rstar.llm.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir):
    from rstar.llm.hf import HFEngine, HFEngineConfig

    return HFEngine(HFEngineConfig(model=str(tiny_model_dir), threads=1))
