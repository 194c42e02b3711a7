"""Search logic: UCT, back-propagation, serialization, program assembly, and
MCTS / chains driven by a deterministic scripted policy with the real sandbox."""
import json
import math

import pytest

from rstar.llm.types import Completion
from rstar.search.chains import majority_answer, run_chains
from rstar.search.expand import Context, ExpandConfig, program_steps
from rstar.search.mcts import MCTSConfig, run_mcts
from rstar.search.select import select_child, uct
from rstar.search.tree import Tree, tree_from_record, tree_to_record
from rstar.steps import END_ANSWER, END_CODE, END_STEP, FINAL_CODE, STEP, Step


def hand_tree() -> Tree:
    t = Tree("p1", "What is 6 * 7?", "42")
    a = t.add(t.root, Step(STEP, "<code>\nx = 6 * 7\n" + END_STEP, "x = 6 * 7"))
    b = t.add(t.root, Step(STEP, "<code>\nx = 1 / 0\n" + END_STEP, "x = 1 / 0"))
    t.root.n, a.n, a.q, b.n, b.q = 3, 2, 1.0, 1, -1.0
    return t


def test_uct_exact():
    t = hand_tree()
    a, b = t.nodes[1], t.nodes[2]
    assert uct(t.root, a, 2.0) == pytest.approx(0.5 + 2.0 * math.sqrt(math.log(3) / 2))
    assert uct(t.root, b, 2.0) == pytest.approx(-1.0 + 2.0 * math.sqrt(math.log(3) / 1))
    c = t.add(t.root, Step(STEP, "y = 1" + END_STEP, "y = 1"))
    assert uct(t.root, c, 2.0) == math.inf and select_child(t, t.root, 2.0) is c


def test_backpropagation_exact():
    t = hand_tree()
    leaf = t.add(t.nodes[1], Step(FINAL_CODE, "print(x)\n" + END_CODE, "print(x)"))
    t.backpropagate(leaf, 1.0)
    assert (leaf.q, leaf.n) == (1.0, 1)
    assert (t.nodes[1].q, t.nodes[1].n) == (2.0, 3)
    assert (t.root.q, t.root.n) == (1.0, 4)
    assert t.nodes[2].n == 1  # off the path: untouched


def test_serialization_round_trip():
    t = hand_tree()
    t.nodes[2].status, t.nodes[2].output = "error", "ZeroDivisionError: division by zero"
    t.nodes[1].ppm = 0.25
    record = json.loads(json.dumps(tree_to_record(t, {"rollouts": 4})))
    back = tree_from_record(record)
    assert back == t and record["config"] == {"rollouts": 4}


def test_program_skips_failed_steps():
    t = hand_tree()
    t.nodes[2].status = "error"
    leaf = t.add(t.nodes[2], Step(FINAL_CODE, "print(2)" + END_CODE, "print(2)"))
    assert program_steps(t, leaf) == ["print(2)"]
    leaf2 = t.add(t.nodes[1], Step(FINAL_CODE, "print(x)" + END_CODE, "print(x)"))
    assert program_steps(t, leaf2) == ["x = 6 * 7", "print(x)"]


class ScriptedPolicy:
    """Answers by depth (the number of end tags after the question)."""

    SCRIPT = {
        0: [("<code>\n# Step 1: multiply\nx = 6 * 7\n", END_STEP),
            ("<code>\n# Step 1: oops\nx = 6 / 0\n", END_STEP),
            ("<code>\n# Step 1: multiply\nx = 6 * 7\n", END_STEP)],  # a duplicate
        1: [("# Now print the final answer\nprint(x)\n", END_CODE)],
        2: [("<answer>The answer is \\boxed{42}", END_ANSWER),
            ("<answer>The answer is \\boxed{41}", END_ANSWER)],
    }
    tokenizer = None

    def generate(self, prompts, n=1, stop=(), max_tokens=256, temperature=0.0, top_p=1.0, seed=None):
        out = []
        for p in prompts:
            solution = p.rsplit("Question: What is 6 * 7?", 1)[1]
            depth = sum(solution.count(tag) for tag in (END_STEP, END_CODE, END_ANSWER))
            script = self.SCRIPT.get(depth, [("rambling", "length")])
            out.append([Completion(text, reason, 5, -1.0)
                        for text, reason in (script * n)[:n]])
        return out


def check_invariants(tree: Tree):
    for node in tree.nodes:
        child_visits = sum(tree.nodes[c].n for c in node.children)
        terminal_visits = node.n if node.terminal else 0
        assert node.n == child_visits + terminal_visits
        if node.terminal:
            assert node.reward in (1.0, -1.0)


def test_mcts_with_a_scripted_policy(sb):
    trees = [Tree(f"p{i}", "What is 6 * 7?", "42") for i in range(3)]
    ctx = Context(ScriptedPolicy(), sb, ExpandConfig(candidates=3, prompt_style="plain"))
    run_mcts(trees, ctx, MCTSConfig(rollouts=6, c=2.0))
    for t in trees:
        check_invariants(t)
        assert t.root.n == 6 and t.solved
        assert len(t.root.children) == 2  # the duplicate merged
        good, bad = (t.nodes[i] for i in t.root.children)
        assert good.status == "ok" and bad.status == "error"
        assert "ZeroDivisionError" in bad.output
        assert good.value > bad.value
        final = t.nodes[good.children[0]]
        assert final.output == "42\n"
        assert {t.nodes[i].answer for i in final.children} == {"42", "41"}
    # one engine call and one sandbox batch per round, for all trees together
    assert ctx.calls <= 6 * 3


def test_recorded_status_is_what_the_sandbox_says(sb):
    trees = [Tree("p", "What is 6 * 7?", "42")]
    run_mcts(trees, Context(ScriptedPolicy(), sb, ExpandConfig(candidates=3, prompt_style="plain")),
             MCTSConfig(rollouts=4))
    t = trees[0]
    code_nodes = [n for n in t.nodes if n.step and n.step.kind in (STEP, FINAL_CODE)]
    rerun = sb.run_batch([program_steps(t, n) for n in code_nodes])
    assert [r.status.value for r in rerun] == [n.status for n in code_nodes]


def test_chains_and_majority(sb):
    trees = [Tree("p", "What is 6 * 7?", "42")]
    run_chains(trees, Context(ScriptedPolicy(), sb, ExpandConfig(prompt_style="plain")), n=3)
    assert majority_answer(trees[0]) == "42"
