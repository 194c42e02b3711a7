"""SFT records and PPM pairs from hand-built trees, exactly, rule by rule;
and the reference's released data files, both ways."""

import dataclasses
import json

from typer.testing import CliRunner

from rstar.cli import app
from rstar.prompts import sft_prompt
from rstar.runs.store import append_lines, tree_lines
from rstar.search.expand import node_text
from rstar.search.tree import ANSWERED, CODE_ERRORS, TOO_DEEP, Tree
from rstar.steps import END_ANSWER, END_CODE, END_STEP, FINAL_ANSWER, FINAL_CODE, STEP, Step
from rstar.train.common import read_records
from rstar.train.extract import ExtractConfig, PairCounts, ppm_pairs, sft_records
from rstar.train.official import pairs_to_official, sft_to_official

Q = "What is 6 * 7?"


class Builder:
    def __init__(self):
        self.tree = Tree("p", Q, "42")

    def node(self, parent, kind, text, value, status="ok", output="", end=None, answer=None):
        tag = {STEP: END_STEP, FINAL_CODE: END_CODE, FINAL_ANSWER: END_ANSWER}[kind]
        code = text.strip("\n") if kind != FINAL_ANSWER else ""
        x = self.tree.add(parent or self.tree.root, Step(kind, text + tag, code))
        x.q, x.n, x.status, x.output = value, 1, status, output
        if answer is not None:
            x.terminal, x.end, x.answer, x.correct, x.reward = True, ANSWERED, answer, answer == "42", value
        elif end:
            x.terminal, x.end, x.reward = True, end, -1.0
        return x

    def solved(self, parent, value_code, value_answer, answer, printed="x"):
        final = self.node(
            parent,
            FINAL_CODE,
            f"\n\n# Now print the final answer\nprint({printed})\n",
            value_code,
            output=f"{answer}\n",
        )
        return final, self.node(final, FINAL_ANSWER, f"\n<answer>\\boxed{{{answer}}}", value_answer, answer=answer)


def build():
    """root -> a (0.8) -> print -> 42 (correct)
    -> b: failed code, too many errors (-1): not a wrong answer
    -> c (-0.6) -> print -> 41 (wrong)
    -> d (0.0) -> d1: print (0.5) -> 42 (correct)
               -> d2: print (0.2) -> 41 (wrong)
    -> e (-0.8): a's text but one space -> print -> 41 (wrong)
    -> f (-0.9) -> too deep (-1): not a wrong answer"""
    B = Builder()
    a = B.node(None, STEP, "<code>\n# Step 1: multiply the numbers\nx = 6 * 7\n", 0.8)
    B.solved(a, 1.0, 1.0, "42")
    B.node(None, STEP, "<code>\n# Step 1: oops\nx = 6 / 0\n", -1.0, status="error", end=CODE_ERRORS)
    c = B.node(None, STEP, "<code>\n# Step 1: add them, which is wrong\nx = 6 + 7 + 28\n", -0.6)
    B.solved(c, -1.0, -1.0, "41")
    d = B.node(None, STEP, "<code>\n# Step 1: name both factors first\nf, g = 6, 7\n", 0.0)
    B.solved(d, 0.5, 1.0, "42", printed="f * g")
    B.solved(d, 0.2, -1.0, "41", printed="f * g - 1")
    e = B.node(None, STEP, "<code>\n# Step 1: multiply the numbers\nx = 6 * 7 \n", -0.8)
    B.solved(e, -1.0, -1.0, "41")
    f = B.node(None, STEP, "<code>\n# Step 1: wander off somewhere else\nq = 0\n", -0.9)
    B.node(f, STEP, "\n\n# Step 2: and on\nq += 1\n", -1.0, end=TOO_DEEP)
    return B.tree, (a, c, d, e, f)


def text_of(tree, node):
    return node_text(node)


def test_step_pairs_follow_the_reference_rules_exactly():
    tree, (a, c, d, e, f) = build()
    counts = PairCounts()
    pairs = ppm_pairs(tree, ExtractConfig(answer_pairs=0), counts)
    got = [(p["prefix"], p["positive"], p["negative"], p["pos_count"], p["neg_count"]) for p in pairs]
    root_prefix = sft_prompt(Q)
    # positives a (0.8), d (0.0); negatives e (-0.8), c (-0.6): 2 x 2; (a, e) is near-identical text
    assert got == [
        (root_prefix, node_text(a), node_text(c), 2, 2),
        (root_prefix, node_text(d), node_text(e), 2, 2),
        (root_prefix, node_text(d), node_text(c), 2, 2),
    ]
    assert [p["q_positive"] - p["q_negative"] for p in pairs] == [1.4, 0.8, 0.6]
    # under d (both outcomes below): 1 x 1, margin 0.5 - 0.2 < 0.5
    assert counts == {"considered": 5, "kept": 3, "similar": 1, "small_margin": 1}
    # code errors and too-deep paths are never negatives
    negatives = {p["negative"] for p in pairs}
    assert not any("6 / 0" in n or "wander" in n for n in negatives)


def test_each_filter_is_a_setting():
    tree, (a, c, d, e, f) = build()
    neither = ppm_pairs(tree, ExtractConfig(answer_pairs=0, min_q_margin=0.0, min_edit_distance=0))
    assert len(neither) == 5 and neither[-1]["q_positive"] - neither[-1]["q_negative"] == 0.5 - 0.2
    no_edit = ppm_pairs(tree, ExtractConfig(answer_pairs=0, min_edit_distance=0))
    assert (node_text(a), node_text(e)) in {(p["positive"], p["negative"]) for p in no_edit}
    wide = ppm_pairs(tree, ExtractConfig(answer_pairs=0, pairs_per_side=3, min_edit_distance=0))
    assert {p["pos_count"] for p in wide} == {2} and {p["neg_count"] for p in wide[:6]} == {3}


def test_one_side_with_a_single_node_takes_up_to_four_on_the_other():
    B = Builder()
    good = B.node(None, STEP, "<code>\n# Step 1: the right way to do it\nx = 6 * 7\n", 0.9)
    B.solved(good, 1.0, 1.0, "42")
    for i, v in enumerate((-0.9, -0.8, -0.7, -0.6, -0.5)):
        bad = B.node(None, STEP, f"<code>\n# Step 1: wrong way number {i} here\nx = {i} + {i} * 100\n", v)
        B.solved(bad, -1.0, -1.0, "41")
    pairs = ppm_pairs(B.tree, ExtractConfig(answer_pairs=0))
    assert [(p["q_negative"], p["pos_count"], p["neg_count"]) for p in pairs] == [
        (-0.9, 1, 4),
        (-0.8, 1, 4),
        (-0.7, 1, 4),
        (-0.6, 1, 4),
    ]


def test_the_continuation_check():
    """Q+ > Q- by 0.6, but the positive's best continuation averages below the
    negative's worst one: dropped, unless the check is off."""
    B = Builder()
    p = B.node(None, STEP, "<code>\n# Step 1: start in a good direction\nx = 6\n", 0.5)
    p1 = B.node(p, STEP, "\n\n# Step 2: a detour that looks bad\ny = 7\n", -1.0)
    p2 = B.node(p1, STEP, "\n\n# Step 3: still looks bad\nz = x * y\n", -1.0)
    B.solved(p2, 1.0, 1.0, "42", printed="z")  # chain 0.5, -1, -1, 1, 1: mean -0.1
    n = B.node(None, STEP, "<code>\n# Step 1: something entirely unlike the other start\nx = 5\n", -0.1)
    n1 = B.node(n, STEP, "\n\n# Step 2: a fine looking step\ny = 8\n", 1.0)
    B.solved(n1, 1.0, -1.0, "41", printed="x * y + 1")  # chain -0.1, 1, 1, -1: mean 0.225
    counts = PairCounts()
    assert ppm_pairs(B.tree, ExtractConfig(answer_pairs=0), counts) == [] and counts["not_better"] == 1
    assert len(ppm_pairs(B.tree, ExtractConfig(answer_pairs=0, continuation_check=False))) == 1


def test_answer_pairs_best_correct_against_worst_wrong():
    tree, _ = build()
    counts = PairCounts()
    pairs = [p for p in ppm_pairs(tree, ExtractConfig(), counts) if p["kind"] == "answer"]
    # correct: a-path (mean 0.933), d-path (0.5); wrong: e-path (-0.933), c-path (-0.867);
    # a-path against e-path differ by a space and one digit: dropped as near-identical
    assert [(round(p["q_positive"], 3), round(p["q_negative"], 3)) for p in pairs] == [
        (0.933, -0.867),
        (0.5, -0.933),
        (0.5, -0.867),
    ]
    assert all(p["prefix"] == sft_prompt(Q) and p["positive"].startswith("<code>") for p in pairs)
    assert (counts["answer_considered"], counts["answer_similar"], counts["answer_kept"]) == (4, 1, 3)


def test_sft_records_rank_by_mean_then_min_q_and_skip_failed_code():
    B = Builder()
    low = B.node(None, STEP, "<code>\n# Step 1: one way\nx = 42\n", 0.0)
    B.solved(low, 0.5, 1.0, "42")  # mean 0.5, min 0.0
    flat = B.node(None, STEP, "<code>\n# Step 1: another way\nx = 6 * 7\n", 0.25)
    B.solved(flat, 0.25, 1.0, "42")  # mean 0.5, min 0.25: wins the tie
    broken = B.node(None, STEP, "<code>\n# Step 1: broken\nx = 1 / 0\n", 1.0, status="error")
    B.node(broken, FINAL_ANSWER, "\n<answer>\\boxed{42}", 1.0, answer="42")  # mean 1.0, but a step failed
    records = sft_records(B.tree)
    assert [(r["avg_q"], r["min_q"]) for r in records] == [(0.5, 0.25), (0.5, 0.0)]
    assert records[0]["prompt"] == sft_prompt(Q) and records[0]["question"] == Q
    assert records[0]["response"] == (
        "<code>\n# Step 1: another way\nx = 6 * 7\n<end_of_step>\n\n# Now print the final answer\nprint(x)\n"
        "<end_of_code>\n<output>42<end_of_output>\n<answer>\\boxed{42}<end_of_answer>"
    )
    assert len(sft_records(B.tree, ExtractConfig(sft_per_problem=1))) == 1


def test_official_files_round_trip(tmp_path):
    tree, _ = build()
    sft, pairs = sft_records(tree), ppm_pairs(tree)
    (tmp_path / "sft.json").write_text(json.dumps(sft_to_official(sft), indent=4))
    (tmp_path / "rm.json").write_text(json.dumps(pairs_to_official(pairs), indent=4))
    back = read_records(tmp_path / "sft.json", ("prompt", "response"), "examples")
    assert [(r["prompt"], r["response"]) for r in back] == [(r["prompt"], r["response"]) for r in sft]
    back = read_records(tmp_path / "rm.json", ("prefix", "positive", "negative"), "pairs")
    assert [
        (r["prefix"] + r["positive"], r["prefix"] + r["negative"], r["pos_count"], r["neg_count"]) for r in back
    ] == [(p["prefix"] + p["positive"], p["prefix"] + p["negative"], p["pos_count"], p["neg_count"]) for p in pairs]
    assert {r["id"] for r in back} == {sft_prompt(Q).split("\n<|assistant|>")[0]}  # one problem, one id


def test_extract_command_writes_both_formats_and_counts(tmp_path):
    tree, _ = build()
    append_lines(tmp_path / "trees.jsonl", tree_lines([tree], {}))
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "extract",
            "ppm",
            "--trees",
            str(tmp_path / "trees.jsonl"),
            "--out",
            str(tmp_path / "rm.json"),
            "--format",
            "official",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "step pairs: 5 considered, 3 kept; dropped 0 empty, 0 not better, 1 below the margin, 1 near-identical"
    ) in " ".join(result.output.split())
    rows = json.loads((tmp_path / "rm.json").read_text())
    assert set(rows[0]) == {"prompt", "pos", "neg", "pos_count", "neg_count"} and len(rows) == 6
    result = runner.invoke(
        app,
        [
            "extract",
            "sft",
            "--trees",
            str(tmp_path / "trees.jsonl"),
            "--out",
            str(tmp_path / "sft.jsonl"),
            "extract.sft_per_problem=1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "sft.jsonl").read_text().splitlines()) == 1
    result = runner.invoke(
        app,
        [
            "extract",
            "sft",
            "--trees",
            str(tmp_path / "trees.jsonl"),
            "--out",
            str(tmp_path / "x.json"),
            "--format",
            "nope",
        ],
    )
    assert result.exit_code == 2 and "unknown format" in result.output


def test_config_is_frozen():
    cfg = ExtractConfig()
    assert dataclasses.replace(cfg, min_q_margin=0.1).min_q_margin == 0.1


def test_a_pair_with_a_step_that_wrote_nothing_is_dropped():
    B = Builder()
    good = B.node(None, STEP, "<code>\n# Step 1: the right way to do it\nx = 6 * 7\n", 0.9)
    B.solved(good, 1.0, 1.0, "42")
    empty = B.tree.add(B.tree.root, Step(STEP, "", ""))  # an empty generation: a step that does nothing
    empty.q, empty.n = -1.0, 1
    B.solved(empty, -1.0, -1.0, "41")
    counts = PairCounts()
    assert ppm_pairs(B.tree, ExtractConfig(answer_pairs=0), counts) == []
    assert counts == {"considered": 1, "empty": 1}
