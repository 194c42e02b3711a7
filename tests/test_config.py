"""Every shipped preset loads; overrides are checked."""
import pytest

from rstar.config import RunConfig, load_config, presets


@pytest.mark.parametrize("name", presets())
def test_every_preset_loads(name):
    assert isinstance(load_config(name), RunConfig)


def test_presets_are_the_documented_ones():
    assert set(presets()) == {"tiny", "cpu-demo", "workstation", "workstation-eval"}
    paper = load_config("workstation")
    assert (paper.mcts.rollouts, paper.expand.candidates, paper.expand.max_depth, paper.mcts.c) == (16, 12, 16, 2.0)


def test_overrides_and_their_errors():
    c = load_config("tiny", ["mcts.rollouts=5", "expand.temperature=1", "engine.int8=true"])
    assert (c.mcts.rollouts, c.expand.temperature, c.engine.int8) == (5, 1.0, True)
    for bad, msg in ((["nope=1"], "unknown config key"), (["mcts.rollouts=2.5"], "must be a int"),
                     (["engine.int8=1"], "must be a bool"), (["mcts=3"], "is a section"),
                     (["rollouts"], "not key=value"), (["engine.kind=tgi"], "hf or vllm"),
                     (["evolve.tuned_engine=tgi"], "auto, hf or vllm")):
        with pytest.raises(ValueError, match=msg):
            load_config("tiny", bad)
    with pytest.raises(ValueError, match="unknown preset"):
        load_config("nope")


def test_config_is_immutable():
    c = load_config("tiny")
    with pytest.raises(Exception):
        c.mcts.rollouts = 3
