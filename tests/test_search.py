"""The search as the reference defines it: selection, expansion, backup and
failing code on hand-built trees with exact numbers; and MCTS driven by a
scripted policy with the real sandbox, matched visit for visit against a
small model of the reference's algorithm written here."""

import contextlib
import hashlib
import io
import json
import math
import traceback

import pytest

from rstar.llm.types import Completion
from rstar.prompts import sft_prompt
from rstar.search.answers import best_valued, majority_answer, top_k_vote
from rstar.search.beam import run_beam
from rstar.search.chains import run_chains
from rstar.search.expand import Context, ExpandConfig, expand, node_text, program_steps
from rstar.search.mcts import MCTSConfig, run_mcts
from rstar.search.select import select_child, uct
from rstar.search.tree import (
    ANSWERED,
    CODE_ERRORS,
    EXHAUSTED,
    INVALID,
    TOO_DEEP,
    Tree,
    tree_from_record,
    tree_to_record,
)
from rstar.steps import END_ANSWER, END_CODE, END_STEP, FINAL_ANSWER, FINAL_CODE, STEP, Step


def step(code, kind=STEP):
    return Step(kind, "\n\n" + code + "\n" + (END_STEP if kind == STEP else END_CODE), code)


def hand_tree() -> Tree:
    t = Tree("p1", "What is 6 * 7?", "42")
    for code in ("x = 6 * 7", "x = 1 / 0", "x = 7 * 6"):
        t.add(t.root, step(code))
    return t


# -- selection ------------------------------------------------------------------


def test_unvisited_children_score_zero_and_ties_go_to_the_first():
    t = hand_tree()
    a, b, c = (t.nodes[i] for i in t.root.children)
    assert uct(t.root, a, 2.0) == 0.0
    assert select_child(t, t.root, 2.0) is a
    b.q, b.n = -0.2, 1  # visited, below zero: the unvisited first child still wins
    t.root.n = 1
    assert select_child(t, t.root, 2.0) is a


def test_a_ppm_favoured_child_is_followed_before_its_unvisited_siblings():
    t = hand_tree()
    a, b, c = (t.nodes[i] for i in t.root.children)
    c.update(0.6)  # PPM-augmented: a new node gets one visit with its PPM score
    assert t.root.n == 0 and uct(t.root, c, 2.0) == 0.6  # no bonus while the parent has no visit
    assert select_child(t, t.root, 2.0) is c
    a.update(0.7)
    assert select_child(t, t.root, 2.0) is a


def test_a_bad_child_loses_to_an_unvisited_sibling_only_as_the_bonus_says():
    t = hand_tree()
    a, b, c = (t.nodes[i] for i in t.root.children)
    a.update(-1.0)
    t.root.n = 1  # ln 1 = 0: Q alone, -1 < 0
    assert uct(t.root, a, 2.0) == -1.0 and select_child(t, t.root, 2.0) is b
    t.root.n = 2  # -1 + 2 sqrt(ln 2) = 0.665 > 0: revisited
    assert uct(t.root, a, 2.0) == pytest.approx(-1 + 2 * math.sqrt(math.log(2)))
    assert select_child(t, t.root, 2.0) is a
    assert select_child(t, t.root, 1.0) is b  # -1 + sqrt(ln 2) = -0.17 < 0
    t.root.n = 3
    assert uct(t.root, a, 1.0) == pytest.approx(-1 + math.sqrt(math.log(3)))
    assert select_child(t, t.root, 1.0) is a  # -1 + 1.048 > 0


def test_terminal_children_are_never_selected():
    t = hand_tree()
    a, b, c = (t.nodes[i] for i in t.root.children)
    a.update(1.0)
    a.terminal, a.end = True, ANSWERED
    assert select_child(t, t.root, 2.0) is b
    b.terminal = c.terminal = True
    assert select_child(t, t.root, 2.0) is None


def test_backup_and_local_updates_exact():
    t = hand_tree()
    a = t.nodes[1]
    final = t.add(a, step("print(x)", FINAL_CODE))
    answer = t.add(final, Step(FINAL_ANSWER, "\n<answer>\\boxed{42}<end_of_answer>"))
    t.backpropagate(answer, 1.0)
    assert [(n.q, n.n) for n in (answer, final, a, t.root)] == [(1.0, 1)] * 4
    bad = t.add(final, Step(INVALID, "rambling"))
    bad.update(-1.0)  # -1 on the node only
    assert (bad.q, bad.n, final.q, final.n, t.root.q, t.root.n) == (-1.0, 1, 1.0, 1, 1.0, 1)
    assert t.nodes[2].n == 0 and t.nodes[2].value == 0.0


def test_program_of_a_node_as_the_reference_assembles_it():
    t = hand_tree()
    ok, failed = t.nodes[1], t.nodes[2]
    failed.status = "error"
    after_failure = t.add(failed, step("y = 2"))
    assert program_steps(t, after_failure) == ["x = 1 / 0", "y = 2"]  # a failed step's code stays
    slow = t.add(ok, step("while True: pass"))
    slow.status = "timeout"
    assert program_steps(t, t.add(slow, step("z = x"))) == ["x = 6 * 7", "z = x"]  # a timeout's does not
    final = t.add(ok, step("print(x)", FINAL_CODE))
    assert program_steps(t, t.add(final, step("w = 1"))) == ["w = 1"]  # a new program after the output


def test_serialization_round_trip():
    t = hand_tree()
    t.nodes[2].status, t.nodes[2].output = "error", "ZeroDivisionError: division by zero"
    t.nodes[1].ppm, t.nodes[1].terminal, t.nodes[1].end = 0.25, True, ANSWERED
    record = json.loads(json.dumps(tree_to_record(t, {"rollouts": 4})))
    back = tree_from_record(record)
    assert back == t and record["config"] == {"rollouts": 4}


# -- a scripted policy and PPM ----------------------------------------------------

CODE_POOL = [
    ("\n\n# Step: multiply\nx = 6 * 7\n", END_STEP),
    ("\n\n# Step: oops\ny = 1 / 0\n", END_STEP),
    ("\n\n# Step: reuse\nz = x + 0\n", END_STEP),
    ("\n\n# Step: another\nw = 2\n", END_STEP),
    ("\n\n# Step: and another\nv = 3 + 4\n", END_STEP),
    ("\n\n# Step: a third\nu = [1, 2]\n", END_STEP),
    ("\n\n# Now print the final answer\nprint(x)\n", END_CODE),
    ("\n\n# Now print the final answer\nprint(6 * 7)\n", END_CODE),
    ("rambling without an end", "length"),
    ("\n\nso the answer is \\boxed{42}\n", END_STEP),  # an answer, though it stopped at a step's end
]
ANSWER_POOL = [
    ("\n<answer>\\boxed{42}", END_ANSWER),
    ("\n<answer>\\boxed{41}", END_ANSWER),
    ("\n<answer>\\boxed{7}", END_ANSWER),
]
FIRST = [
    ("<code>\n# Step 1: multiply\nx = 6 * 7\n", END_STEP),
    ("<code>\n# Step 1: oops\nx = 6 / 0\n", END_STEP),
    ("<code>\n# Now print the final answer\nprint(42)\n", END_CODE),
]


def _h(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def scripted(question: str, solution: str, n: int) -> list[tuple[str, str]]:
    """Deterministic candidates for a question's partial solution: they
    depend on the text alone, never on batching or on a seed."""
    pool = FIRST if not solution else ANSWER_POOL if solution.endswith("<end_of_output>") else CODE_POOL
    return [pool[_h(f"{question}|{solution}|{j}") % len(pool)] for j in range(n)]


def scripted_score(solution: str) -> float:
    return (_h("ppm" + solution) % 2001 - 1000) / 1000


class ScriptedPolicy:
    tokenizer = None
    calls = 0

    def generate(self, prompts, n=1, stop=(), max_tokens=256, temperature=0.0, top_p=1.0, seed=None):
        self.calls += 1
        out = []
        for p in prompts:
            head, solution = p.split("\n<|assistant|>: Let's think step by step and solve the problem with code.", 1)
            question = head.removeprefix("<|user|>:\n")
            out.append([Completion(text, reason, 5, -1.0) for text, reason in scripted(question, solution, n)])
        return out


class ScriptedPPM:
    def score(self, texts):
        return [scripted_score(t.split("solve the problem with code.", 1)[1]) for t in texts]


# -- the reference's algorithm, written out plainly -------------------------------


class RefNode:
    """As `MCTSNode`: visits and value sum, updated at creation."""

    def __init__(self, parent, text="", kind=None, code=""):
        self.parent, self.children, self.text, self.kind, self.code = parent, [], text, kind, code
        self.depth = parent.depth + 1 if parent else 0
        self.visits, self.value_sum, self.terminal, self.errors, self.timeout = 0, 0.0, False, 0, False

    def q(self):
        return self.value_sum / self.visits if self.visits else 0.0

    def update(self, value):
        self.visits += 1
        self.value_sum += value

    def update_recursive(self, value):
        self.update(value)
        if self.parent:
            self.parent.update_recursive(value)

    def puct(self, c):
        if self.visits == 0:
            return 0.0
        u = c * math.sqrt(math.log(self.parent.visits) / self.visits) if self.parent.visits else 0.0
        return self.q() + u

    def solution(self):
        return (self.parent.solution() if self.parent else "") + self.text


def ref_run(code: str) -> tuple[bool, str]:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(code, {})
    except Exception as exc:  # the test's own scripted code, nothing foreign
        return False, traceback.format_exception_only(exc)[-1].strip()  # the exception's last line
    return True, out.getvalue()


def ref_search(question, truth, rollouts, n, c, threshold, max_depth, ppm):
    root = RefNode(None)

    def select(node):
        best, best_value = None, -math.inf
        for child in node.children:
            if not child.terminal and child.puct(c) > best_value:
                best, best_value = child, child.puct(c)
        if best is None:
            node.terminal = True
        return best

    def expand(node):
        cands, seen = [], set()
        for text, reason in scripted(question, node.solution(), n):
            if text not in seen:
                seen.add(text)
                cands.append((text, reason))
        if any(r == END_ANSWER for _, r in cands):
            cands = [next(x for x in cands if x[1] == END_ANSWER)]
        for text, reason in cands:
            child = RefNode(node, text + (reason if reason in (END_STEP, END_CODE, END_ANSWER) else ""))
            if "boxed" in text:
                child.terminal = True
                answer = text.split("\\boxed{")[1].split("}")[0]
                reward = (1.0 if answer == truth else -1.0) if truth else scripted_score(child.solution())
                child.update_recursive(reward)
            else:  # everything else runs as code
                child.kind, child.code = reason, text.replace("<code>", "").strip("\n")
                codes, up = [], node
                while up.parent and up.kind != END_CODE:
                    if not up.timeout:
                        codes.append(up.code)
                    up = up.parent
                ok, output = ref_run("\n".join(codes[::-1] + [child.code]))
                if reason == END_CODE:
                    child.text += f"\n<output>{output.strip()}<end_of_output>"
                if not ok:
                    child.errors = node.errors + 1
                    if child.errors >= threshold:
                        child.terminal = True
                        child.update(-1.0)
            if not child.terminal and child.depth > max_depth:
                child.terminal = True
                child.update(-1.0)
            node.children.append(child)
        if ppm:
            for child in node.children:
                if not child.terminal and child.visits < 1:
                    child.update(scripted_score(child.solution()))

    for _ in range(rollouts):
        node = root
        if root.children:
            node = select(root)
            if node is None:
                break
        while True:
            if not node.children:
                expand(node)
            node = select(node)
            if node is None:
                break
    return root


def shape(tree: Tree, node=None):
    node = node or tree.root
    text = node_text(node) if node.step else ""
    return (text, node.n, round(node.q, 9), node.terminal, [shape(tree, tree.nodes[i]) for i in node.children])


def ref_shape(node: RefNode):
    return (node.text, node.visits, round(node.value_sum, 9), node.terminal, [ref_shape(c) for c in node.children])


QUESTIONS = [
    "What is 6 * 7?",
    "Six times seven?",
    "What is 42 / 1?",
    "Compute 7 * 6.",
    "What is 40 + 2?",
    "What is 50 - 8?",
    "What is 84 / 2?",
    "What is 21 * 2?",
]


@pytest.mark.parametrize(
    "threshold,with_ppm,truth", [(2, False, "42"), (1, False, "42"), (1, True, "42"), (2, True, "42"), (1, True, None)]
)
def test_mcts_matches_the_reference_visit_for_visit(sb, threshold, with_ppm, truth):
    trees = [Tree(f"p{i}", q, truth) for i, q in enumerate(QUESTIONS)]
    cfg = ExpandConfig(candidates=4, max_depth=5, errors_threshold=threshold, prompt_style="sft")
    ctx = Context(ScriptedPolicy(), sb, cfg, ScriptedPPM() if with_ppm else None)
    run_mcts(trees, ctx, MCTSConfig(rollouts=12, c=2.0))
    for t in trees:
        assert shape(t) == ref_shape(ref_search(t.question, truth, 12, 4, 2.0, threshold, 5, with_ppm))
    # not vacuous: the trees are deep, branch, and hold every kind of ending
    nodes = [n for t in trees for n in t.nodes]
    assert len(nodes) > 100 and max(n.depth for n in nodes) >= 4
    assert {n.end for n in nodes} >= {ANSWERED, CODE_ERRORS, TOO_DEEP, EXHAUSTED}
    assert any(n.step and "rambling" in n.step.text and n.status == "error" for n in nodes)  # ran as code
    assert any(n.n > 1 and not n.terminal and n.parent is not None for n in nodes)  # revisited
    # one engine call per round for all trees: fewer calls than expansions
    assert ctx.engine.calls < sum(n.expanded for n in nodes)


def test_every_terminal_is_in_the_root_at_once_and_failures_stay_local(sb):
    t = Tree("p", "What is 6 * 7?", "42")
    root_kids = [
        ("<code>\nx = 6 * 7\n", END_STEP),
        ("\\boxed{42}", END_ANSWER),
        ("\\boxed{41}", END_STEP),
        ("no step", "length"),
        ("<code>\nx = 1 / 0\n", END_STEP),
    ]

    class Policy:
        tokenizer = None

        def generate(self, prompts, n=1, **kw):
            return [
                [Completion(a, b, 1, 0.0) for a, b in root_kids]
                if p.endswith("with code.")
                else [Completion("\n<answer>\\boxed{42}", END_ANSWER, 1, 0.0)]
                for p in prompts
            ]

    ctx = Context(Policy(), sb, ExpandConfig(candidates=5, single_answer=False, unended="invalid", prompt_style="sft"))
    new = expand([(t, t.root)], ctx)
    from rstar.search.mcts import _value

    for tree, node in new:
        _value(tree, node, ctx)
    ok, right, wrong, invalid, failed = (t.nodes[i] for i in t.root.children)
    assert (right.end, right.reward, wrong.end, wrong.reward) == (ANSWERED, 1.0, ANSWERED, -1.0)
    assert (invalid.end, invalid.q, invalid.n) == (INVALID, -1.0, 1)
    assert (failed.end, failed.q, failed.n, failed.output) == (
        CODE_ERRORS,
        -1.0,
        1,
        "ZeroDivisionError: division by zero",
    )
    assert (t.root.q, t.root.n) == (0.0, 2)  # +1 and -1, both backed up when created; failures not
    assert ok.n == 0 and not ok.terminal
    # A rollout: the only live child is followed, its one answer backed up, and it is exhausted.
    t2 = Tree("p", "What is 6 * 7?", "42")
    run_mcts([t2], ctx, MCTSConfig(rollouts=1))
    ok2 = t2.nodes[t2.root.children[0]]
    assert (ok2.q, ok2.n, ok2.end, t2.root.q, t2.root.n) == (1.0, 1, EXHAUSTED, 1.0, 3)


def test_a_node_whose_children_are_all_terminal_becomes_terminal(sb):
    t = Tree("p", "What is 6 * 7?", "42")

    class Policy:
        tokenizer = None
        calls = 0

        def generate(self, prompts, n=1, **kw):
            self.calls += 1
            return [[Completion("\\boxed{42}", END_ANSWER, 1, 0.0)] * n for _ in prompts]

    ctx = Context(Policy(), sb, ExpandConfig(candidates=3, prompt_style="sft"))
    run_mcts([t], ctx, MCTSConfig(rollouts=5))
    assert t.root.terminal and t.root.end == EXHAUSTED
    assert ctx.engine.calls == 1 and len(t.root.children) == 1  # one answer kept of the three


def test_too_deep_ends_a_path_with_minus_one(sb):
    t = Tree("p", "What is 6 * 7?", "42")

    class Policy:
        tokenizer = None

        def generate(self, prompts, n=1, **kw):
            return [[Completion(f"\n\nx{len(p)} = 1\n", END_STEP, 1, 0.0)] for p in prompts]

    run_mcts(
        [t], Context(Policy(), sb, ExpandConfig(candidates=1, max_depth=2, prompt_style="sft")), MCTSConfig(rollouts=3)
    )
    deepest = t.nodes[-1]
    assert deepest.depth == 3 and deepest.end == TOO_DEEP and (deepest.q, deepest.n) == (-1.0, 1)
    assert t.root.terminal and t.root.n == 0  # nothing was backed up


def test_recorded_status_is_what_the_sandbox_says(sb):
    trees = [Tree(f"p{i}", q, "42") for i, q in enumerate(QUESTIONS)]
    run_mcts(
        trees,
        Context(ScriptedPolicy(), sb, ExpandConfig(candidates=3, max_depth=4, errors_threshold=2, prompt_style="sft")),
        MCTSConfig(rollouts=4),
    )
    nodes = [(t, n) for t in trees for n in t.nodes if n.step and n.step.kind in (STEP, FINAL_CODE)]
    rerun = sb.run_batch([program_steps(t, n) for t, n in nodes])
    assert [r.status.value for r in rerun] == [n.status for _, n in nodes]


def test_the_ppm_reads_the_sft_prompt_and_the_solution(sb):
    seen = []

    class Recorder:
        def score(self, texts):
            seen.extend(texts)
            return [0.0] * len(texts)

    t = Tree("p", "What is 6 * 7?", "42")
    ctx = Context(ScriptedPolicy(), sb, ExpandConfig(candidates=2, prompt_style="sft"), Recorder())
    new = expand([(t, t.root)], ctx)
    assert seen == [sft_prompt("What is 6 * 7?") + node_text(nd) for _, nd in new]


def test_chains_and_majority(sb):
    trees = [Tree("p", "What is 6 * 7?", "42")]
    run_chains(trees, Context(ScriptedPolicy(), sb, ExpandConfig(prompt_style="sft")), n=4)
    assert sum(1 for n in trees[0].nodes if n.terminal) >= 1
    assert majority_answer(trees[0]) in (None, "42", "41", "7")


def test_beam_search_keeps_the_best_scored_and_answers_use_up_beams(sb):
    trees = [Tree("p", "What is 6 * 7?", None)]
    ctx = Context(ScriptedPolicy(), sb, ExpandConfig(candidates=3, max_depth=4, prompt_style="sft"), ScriptedPPM())
    run_beam(trees, ctx, beam_width=2, per_beam=3)
    t = trees[0]
    for node in t.nodes:
        kids = [t.nodes[i] for i in node.children]
        expanded = [k for k in kids if k.expanded]
        if expanded:  # only the best-scored open children were continued
            ranked = sorted(kids, key=lambda k: -k.ppm)
            assert all(k in ranked[:2] for k in expanded)


def test_inference_vote_over_the_top_k_by_value():
    picks = [("7", 0.9), ("42", 0.8), ("42", 0.7), ("7", 0.1), ("42", 0.05)]
    assert top_k_vote(picks, 1) == "7"
    assert top_k_vote(picks, 3) == "42"  # 42 twice among the three best
    assert top_k_vote(picks[:2], 4) == "7"  # a tie goes to the higher value
    assert top_k_vote([], 4) is None
    t = hand_tree()
    a = t.add(t.nodes[1], Step(FINAL_ANSWER, "\\boxed{42}"))
    b = t.add(t.nodes[1], Step(FINAL_ANSWER, "\\boxed{7}"))
    for node, ans, r in ((a, "42", 0.2), (b, "7", 0.6)):
        node.terminal, node.end, node.answer, node.reward = True, ANSWERED, ans, r
    assert best_valued(t) == ("7", 0.6)
