"""Picking a tree's answer: first, majority vote (equivalent answers grouped),
the PPM's best, the best-valued answer of an MCTS run and the top-k vote of
the paper's inference; and the sampled solutions a tree holds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rstar.grading import is_equivalent
from rstar.search.tree import EXHAUSTED, Node, Tree


def terminals(tree: Tree) -> list[Node]:
    """The nodes where a solution ended (answers and failures; not the nodes
    MCTS found exhausted), in sampling order: by the root child they descend
    from, then by id. Every answer picker breaks ties in this order."""
    ends = [n for n in tree.nodes if n.terminal and n.end != EXHAUSTED]
    return sorted(ends, key=lambda n: (tree.path(n)[0].id, n.id))


def answers(tree: Tree) -> list[Node]:
    return [n for n in terminals(tree) if n.answer is not None]


def weight(tree: Tree, node: Node) -> int:
    """How many sampled solutions a terminal stands for (merged duplicates)."""
    w = 1
    for x in tree.path(node):
        w *= x.samples
    return w


def majority(votes: Sequence[tuple[str, float]]) -> str | None:
    """The answer with the most votes, equivalent answers grouped; ties go to
    the answer seen first."""
    groups: list[list[Any]] = []
    for answer, count in votes:
        for g in groups:
            if answer == g[0] or is_equivalent(answer, g[0]):
                g[1] += count
                break
        else:
            groups.append([answer, count])
    return str(max(groups, key=lambda g: g[1])[0]) if groups else None


def majority_answer(tree: Tree) -> str | None:
    """The most frequent answer among the sampled solutions."""
    return majority([(n.answer, weight(tree, n)) for n in answers(tree) if n.answer is not None])


def samples(tree: Tree) -> list[dict[str, Any]]:
    """The sampled solutions of a chains tree in sampling order, one entry per
    sample (a merged duplicate repeated), with answer, PPM score and
    correctness (None without a ground truth); a failed solution has no answer."""
    out = []
    for node in terminals(tree):
        entry = {"answer": node.answer, "ppm": node.ppm, "correct": node.correct}
        out += [entry] * weight(tree, node)
    return out


def best_answer(tree: Tree) -> str | None:
    """The answer whose terminal the PPM (or the backed-up Q) rates highest."""
    cands = answers(tree)
    if not cands:
        return None
    return max(cands, key=lambda n: n.ppm if n.ppm is not None else n.value).answer


def best_valued(tree: Tree) -> tuple[str, float] | None:
    """The answer with the highest value (its reward: the PPM's score at
    inference) and that value; what one MCTS run contributes to the vote."""
    cands = [(n.reward, n.answer) for n in answers(tree) if n.reward is not None and n.answer is not None]
    if not cands:
        return None
    reward, answer = max(cands, key=lambda ra: ra[0])
    return answer, reward


def top_k_vote(picks: list[tuple[str, float]], k: int) -> str | None:
    """The reference's inference answer (`eval_maj.py`): the k picks with the
    highest value, then a majority vote among them (equivalent answers
    grouped); a tie goes to the higher-valued answer (the reference draws)."""
    top = sorted(picks, key=lambda p: -p[1])[:k]
    return majority([(answer, 1) for answer, _ in top])


def first_answer(tree: Tree) -> str | None:
    cands = answers(tree)
    return cands[0].answer if cands else None
