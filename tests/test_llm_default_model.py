"""The real embedded default model, loaded offline from its pip package."""

import os

import pytest

from tests.helpers import STEP_PROMPT


@pytest.fixture(scope="module")
def default_engine():
    from rstar.llm import load_engine

    return load_engine("hf", model="default", threads=2)


def test_default_model_continues_a_step_greedily(default_engine):
    stop = ["<end_of_step>", "<end_of_code>"]
    ((a,),) = default_engine.generate([STEP_PROMPT], stop=stop, max_tokens=48)
    ((b,),) = default_engine.generate([STEP_PROMPT], stop=stop, max_tokens=48)
    assert a == b  # greedy is deterministic
    assert a.text.strip() and a.num_tokens > 0 and a.logprob < 0
    assert a.stop_reason in (*stop, "length", "eos")
    assert "<end_of_step>" not in a.text


def test_default_model_is_cached_as_safetensors():
    from rstar.llm import resolve_model

    folder = resolve_model("default")
    names = set(os.listdir(folder))
    assert "model.safetensors" in names and "config.json" in names
    assert "rstar-source.json" in names
