"""Training data from search trees, as in the paper.

SFT: per problem, the two correct trajectories with the highest average step Q
whose every code step ran cleanly, as prompt/response pairs in the step format.

PPM pairs: at every node, among its children (siblings sharing the same
preceding steps), the two with the highest Q that lead to a correct answer are
positives and the two with the lowest Q that lead only to wrong answers are
negatives, all positive x negative combinations; for the final answer, the two
correct full trajectories with the highest average Q against the two wrong ones
with the lowest. Deterministic: ties go to the earlier node.
"""
from __future__ import annotations

from itertools import product

from rstar.prompts import sft_prompt
from rstar.search.expand import node_text, partial_solution
from rstar.search.tree import Node, Tree
from rstar.steps import FINAL_CODE, STEP


def _outcomes(tree: Tree) -> dict[int, tuple[bool, bool]]:
    """Per node: (reaches a correct answer, reaches a wrong answer)."""
    out: dict[int, tuple[bool, bool]] = {}
    for node in reversed(tree.nodes):  # children always come after their parent
        good = bool(node.terminal and node.correct)
        bad = bool(node.terminal and not node.correct)  # wrong answer, failed path or no step
        for c in node.children:
            g, b = out[c]
            good, bad = good or g, bad or b
        out[node.id] = (good, bad)
    return out


def _trajectories(tree: Tree, correct: bool) -> list[tuple[float, list[Node]]]:
    """Terminal answer paths of the given correctness, with their mean step Q."""
    found = []
    for node in tree.nodes:
        if not node.terminal or node.answer is None or bool(node.correct) != correct:
            continue
        path = tree.path(node)
        found.append((sum(n.value for n in path) / len(path), path))
    return found


def _clean(path: list[Node]) -> bool:
    return all(n.status == "ok" for n in path if n.step.kind in (STEP, FINAL_CODE))


def sft_records(tree: Tree, per_problem: int = 2) -> list[dict]:
    best = sorted(((q, p) for q, p in _trajectories(tree, True) if _clean(p)),
                  key=lambda qp: (-qp[0], qp[1][-1].id))[:per_problem]
    return [{"id": tree.problem_id, "prompt": sft_prompt(tree.question),
             "response": "".join(node_text(n) for n in path), "avg_q": q}
            for q, path in best]


def ppm_pairs(tree: Tree, per_side: int = 2) -> list[dict]:
    outcome = _outcomes(tree)
    prompt = sft_prompt(tree.question)
    pairs = []
    for parent in tree.nodes:
        kids = [tree.nodes[c] for c in parent.children]
        pos = sorted((k for k in kids if outcome[k.id][0]), key=lambda k: (-k.value, k.id))[:per_side]
        neg = sorted((k for k in kids if not outcome[k.id][0] and outcome[k.id][1]),
                     key=lambda k: (k.value, k.id))[:per_side]
        prefix = prompt + partial_solution(tree, parent)
        for p, n in product(pos, neg):
            pairs.append({"id": tree.problem_id, "kind": "step", "prefix": prefix,
                          "positive": node_text(p), "negative": node_text(n),
                          "q_positive": p.value, "q_negative": n.value})
    good = sorted(_trajectories(tree, True), key=lambda qp: (-qp[0], qp[1][-1].id))[:per_side]
    bad = sorted(_trajectories(tree, False), key=lambda qp: (qp[0], qp[1][-1].id))[:per_side]
    for (qp, pp), (qn, pn) in product(good, bad):
        pairs.append({"id": tree.problem_id, "kind": "answer", "prefix": prompt,
                      "positive": "".join(node_text(n) for n in pp),
                      "negative": "".join(node_text(n) for n in pn),
                      "q_positive": qp, "q_negative": qn})
    return pairs
