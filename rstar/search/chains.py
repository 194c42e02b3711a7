"""Cheaper searches: independent chains (greedy, majority vote, best-of-N) and
step beam search with a PPM."""
from __future__ import annotations

from rstar.grading import is_equivalent
from rstar.search.expand import Context, expand
from rstar.search.tree import Node, Tree


def run_chains(trees: list[Tree], ctx: Context, n: int, temperature: float | None = None) -> None:
    """n independent solutions per tree: the root gets n samples, every later
    node one. Temperature 0 with n = 1 is greedy decoding. A PPM scores the
    finished solutions only (best-of-N reads nothing else)."""
    heads = expand([(t, t.root) for t in trees], ctx, n=n, temperature=temperature,
                   score_terminals_only=True)
    while heads := [(t, nd) for t, nd in heads if not nd.terminal]:
        heads = expand(heads, ctx, n=1, temperature=temperature, score_terminals_only=True)


def run_beam(trees: list[Tree], ctx: Context, beam_width: int, per_beam: int) -> None:
    """Step beam search: expand every beam with `per_beam` candidates and keep,
    among the open ones, as many as there are beams without a final answer,
    the ones the PPM scores highest."""
    if ctx.scorer is None:
        raise ValueError("step beam search needs a PPM (--ppm)")
    beams = {t.problem_id: [t.root] for t in trees}
    finished = {t.problem_id: 0 for t in trees}
    live = list(trees)
    while live:
        new = expand([(t, b) for t in live for b in beams[t.problem_id]], ctx, n=per_beam)
        candidates: dict[str, list[Node]] = {t.problem_id: [] for t in live}
        for t, nd in new:
            if nd.terminal:
                finished[t.problem_id] += 1
            else:
                candidates[t.problem_id].append(nd)
        still = []
        for t in live:
            slots = beam_width - finished[t.problem_id]
            keep = sorted(candidates[t.problem_id], key=lambda x: x.ppm, reverse=True)[:max(slots, 0)]
            if keep:
                beams[t.problem_id] = keep
                still.append(t)
        live = still


# -- picking the answer of a tree -------------------------------------------

def terminals(tree: Tree) -> list[Node]:
    """Terminal nodes in sampling order: by the root child they descend from,
    then by id. Every answer picker breaks ties in this order."""
    ends = [n for n in tree.nodes if n.terminal]
    return sorted(ends, key=lambda n: (tree.path(n)[0].id, n.id))


def answers(tree: Tree) -> list[Node]:
    return [n for n in terminals(tree) if n.answer is not None]


def weight(tree: Tree, node: Node) -> int:
    """How many sampled solutions a terminal stands for (merged duplicates)."""
    w = 1
    for x in tree.path(node):
        w *= x.samples
    return w


def majority(votes: list[tuple[str, int]]) -> str | None:
    """The answer with the most votes, equivalent answers grouped; ties go to
    the answer seen first."""
    groups: list[list] = []
    for answer, count in votes:
        for g in groups:
            if answer == g[0] or is_equivalent(answer, g[0]):
                g[1] += count
                break
        else:
            groups.append([answer, count])
    return max(groups, key=lambda g: g[1])[0] if groups else None


def majority_answer(tree: Tree) -> str | None:
    """The most frequent answer among the sampled solutions."""
    return majority([(n.answer, weight(tree, n)) for n in answers(tree)])


def samples(tree: Tree) -> list[dict]:
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
    return max(cands, key=lambda n: (n.ppm if n.ppm is not None else n.value)).answer


def first_answer(tree: Tree) -> str | None:
    cands = answers(tree)
    return cands[0].answer if cands else None
