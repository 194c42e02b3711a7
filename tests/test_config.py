"""Every shipped preset loads; overrides are checked."""

import dataclasses

import pytest

from rstar.config import RunConfig, load_config, presets


@pytest.mark.parametrize("name", presets())
def test_every_preset_loads(name):
    assert isinstance(load_config(name), RunConfig)


def test_presets_are_the_documented_ones():
    assert set(presets()) == {"tiny", "cpu-demo", "workstation", "workstation-eval"}
    paper = load_config("workstation")
    assert (paper.mcts.rollouts, paper.expand.candidates, paper.expand.max_depth, paper.mcts.c) == (16, 12, 16, 2.0)
    ev = paper.evolve  # round 1 bootstrapped with the 2-shot prompt; PPM-augmented from round 3
    assert (ev.bootstrap, ev.bootstrap_rollouts, ev.bootstrap_errors_threshold, ev.ppm_search_from) == (
        "Qwen/Qwen2.5-Coder-7B-Instruct",
        8,
        2,
        3,
    )
    assert paper.expand.prompt_style == "fewshot" and paper.expand.errors_threshold == 1
    assert (paper.ppm.scale, paper.extract.min_q_margin, paper.extract.min_edit_distance) == (5.0, 0.5, 20)
    infer = load_config("workstation-eval")
    assert (infer.inference.runs * infer.mcts.rollouts, infer.inference.top_k, infer.expand.candidates) == (64, 4, 32)


def test_overrides_and_their_errors():
    c = load_config("tiny", ["mcts.rollouts=5", "expand.temperature=1", "engine.int8=true"])
    assert (c.mcts.rollouts, c.expand.temperature, c.engine.int8) == (5, 1.0, True)
    for bad, msg in (
        (["nope=1"], "unknown config key"),
        (["mcts.rollouts=2.5"], "must be a int"),
        (["engine.int8=1"], "must be a bool"),
        (["mcts=3"], "is a section"),
        (["rollouts"], "not key=value"),
        (["engine.kind=tgi"], "engine.kind must be one of 'hf', 'vllm', not 'tgi'"),
        (["evolve.tuned_engine=tgi"], "'auto', 'hf', 'vllm'"),
        (["evolve.data=some"], "evolve.data must be one of 'all', 'round'"),
    ):
        with pytest.raises(ValueError, match=msg):
            load_config("tiny", bad)
    with pytest.raises(ValueError, match="unknown preset"):
        load_config("nope")


def test_config_is_immutable():
    c = load_config("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.mcts.rollouts = 3


def test_gsm8k_simple_is_what_its_rule_selects():
    import importlib.util
    from pathlib import Path

    from rstar.data import load_problems

    path = Path(__file__).resolve().parent.parent / "scripts" / "make_gsm8k_simple.py"
    spec = importlib.util.spec_from_file_location("make_gsm8k_simple", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    chosen = [p for p in load_problems("gsm8k") if script.simple(p.question, p.answer)]
    assert [p.id for p in load_problems("gsm8k_simple")] == [p.id for p in chosen] and len(chosen) > 100
    assert not script.simple("Tom has 3 apples and twice as many pears. How many fruits?", "9")
    assert script.simple("Tom has 3 apples and buys 4 more. How many apples?", "7")
