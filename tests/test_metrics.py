"""The metric records: JSON out and back in, nested records rebuilt, keys of
another version tolerated, a damaged file named."""

import json

import pytest

from rstar.metrics import (
    AnswerPairs,
    Curve,
    GuidedScore,
    HeldoutMetrics,
    QHistogram,
    RoundMetrics,
    Score,
    SearchCost,
    SearchSummary,
    TrainMetrics,
)


def a_round() -> RoundMetrics:
    held = HeldoutMetrics(
        problems=4,
        greedy=Score(1, 0.25),
        n=4,
        majority=Score(2, 0.5),
        best_of_n=Score(3, 0.75),
        guided=GuidedScore(2, 0.5, mode="mcts", pass_at_n=0.75),
        extra=None,
        pass_at_n=1.0,
        curve=Curve([1, 2, 4], [0.25, 0.5, 0.5], [0.25, 0.5, 0.75]),
        answer_pairs=AnswerPairs(3, 2 / 3),
    )
    return RoundMetrics(
        round=1,
        policy="round-1/policy",
        tuned=True,
        ppm="round-1/ppm",
        eval=held,
        seconds={"search": 1.5},
        search=SearchSummary(4, 2, 40, 3, 6),
        solved_ids=["a", "b"],
        q_values=QHistogram([-1.0, 0.0, 1.0], [3, 5]),
        policy_train=TrainMetrics(steps=3, resumed=False, train_loss=0.5).summary(),
    )


def test_a_round_survives_json():
    m = a_round()
    again = RoundMetrics.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m
    assert isinstance(again.eval.guided, GuidedScore) and isinstance(again.search, SearchSummary)


def test_unknown_keys_are_ignored_and_an_old_name_is_read():
    data = a_round().to_dict()
    data["from_a_later_version"] = {"x": 1}
    guided = data["eval"]["guided"]
    guided["pass"] = guided.pop("pass_at_n")  # as written before the field had its name
    again = RoundMetrics.from_dict(data)
    assert again == a_round()


def test_a_missing_field_or_a_wrong_shape_is_a_value_error():
    data = a_round().to_dict()
    del data["eval"]["greedy"]
    with pytest.raises(ValueError, match="HeldoutMetrics.*greedy"):
        RoundMetrics.from_dict(data)
    with pytest.raises(ValueError, match="expected an object"):
        RoundMetrics.from_dict([1, 2])  # type: ignore[arg-type]


def test_search_summaries_add_up_without_their_costs():
    cost = SearchCost(searched=2, setup_s=1, wall_s=2, seconds={}, other_s=0, driver_cpu_s=0.1)
    a = SearchSummary(2, 1, 10, 2, 3, this_run=cost)
    assert a.plus(SearchSummary(1, 1, 5, 0, 1)) == SearchSummary(3, 2, 15, 2, 4)
