"""SFT records and PPM pairs from a hand-built tree, exactly."""
from rstar.extract import ppm_pairs, sft_records
from rstar.prompts import sft_prompt
from rstar.search.tree import Tree
from rstar.steps import END_ANSWER, END_CODE, END_STEP, FINAL_ANSWER, FINAL_CODE, STEP, Step


def code(text, kind=STEP):
    tag = END_STEP if kind == STEP else END_CODE
    return Step(kind, text + tag, text)


def build() -> Tree:
    """root -> a (ok) -> fa (final code) -> {42 correct, 41 wrong}
            -> b (error) -> fb (final code) -> 41 wrong
            -> c (ok) -> fc (final code) -> 42 correct"""
    t = Tree("p", "What is 6 * 7?", "42")

    def node(parent, step, q, n, status="ok", output="", answer=None, correct=None):
        x = t.add(parent, step)
        x.q, x.n, x.status, x.output = q, n, status, output
        if answer is not None:
            x.terminal, x.answer, x.correct, x.reward = True, answer, correct, 1.0 if correct else -1.0
        return x

    a = node(t.root, code("x = 6 * 7"), 1.0, 3)
    b = node(t.root, code("x = 6 / 0"), -1.0, 1, status="error", output="ZeroDivisionError: division by zero")
    c = node(t.root, code("x = 7 * 6"), 1.0, 1)
    fa = node(a, code("print(x)", FINAL_CODE), 1.0, 3, output="42\n")
    node(fa, Step(FINAL_ANSWER, "<answer>\\boxed{42}" + END_ANSWER), 2.0, 2, answer="42", correct=True)
    node(fa, Step(FINAL_ANSWER, "<answer>\\boxed{41}" + END_ANSWER), -1.0, 1, answer="41", correct=False)
    fb = node(b, code("print(1)", FINAL_CODE), -1.0, 1, output="1\n")
    node(fb, Step(FINAL_ANSWER, "<answer>\\boxed{41}" + END_ANSWER), -1.0, 1, answer="41", correct=False)
    fc = node(c, code("print(x)", FINAL_CODE), 1.0, 1, output="42\n")
    node(fc, Step(FINAL_ANSWER, "<answer>\\boxed{42}" + END_ANSWER), 1.0, 1, answer="42", correct=True)
    t.root.n, t.root.q = 5, 1.0
    return t


def test_sft_records_exact():
    records = sft_records(build())
    # both correct paths are clean; mean step Q: a-path (1/3 + 1/3 + 1) / 3, c-path 1.0
    assert [r["avg_q"] for r in records] == [1.0, (1 / 3 + 1 / 3 + 1.0) / 3]
    assert records[0]["prompt"] == sft_prompt("What is 6 * 7?")
    assert records[0]["response"] == (
        "x = 7 * 6<end_of_step>\n\nprint(x)<end_of_code>\n<output>42<end_of_output>\n"
        "<answer>\\boxed{42}<end_of_answer>")


def test_ppm_pairs_exact():
    pairs = ppm_pairs(build())
    steps = [p for p in pairs if p["kind"] == "step"]
    answers = [p for p in pairs if p["kind"] == "answer"]
    # at the root: positives c (Q 1.0) then a (1/3); negative b (-1.0)
    root = [(p["positive"], p["negative"]) for p in steps if p["prefix"] == sft_prompt("What is 6 * 7?")]
    assert root == [("x = 7 * 6<end_of_step>\n\n", "x = 6 / 0<end_of_step>\n<output>ZeroDivisionError: "
                     "division by zero<end_of_output>\n\n"),
                    ("x = 6 * 7<end_of_step>\n\n", "x = 6 / 0<end_of_step>\n<output>ZeroDivisionError: "
                     "division by zero<end_of_output>\n\n")]
    # under fa: the 42 answer against the 41 answer
    under_fa = [p for p in steps if p["prefix"].endswith("<output>42<end_of_output>\n")
                and "x = 6 * 7" in p["prefix"]]
    assert [(p["q_positive"], p["q_negative"]) for p in under_fa] == [(1.0, -1.0)]
    assert len(steps) == 3
    # final answers: 2 best correct trajectories x 2 worst wrong ones
    assert len(answers) == 4 and all(p["q_positive"] > p["q_negative"] for p in answers)
    assert ppm_pairs(build()) == pairs  # deterministic
