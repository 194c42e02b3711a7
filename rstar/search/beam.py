"""Step beam search with a PPM (the reference's `agents/beam_search.py`)."""

from __future__ import annotations

from rstar.search.expand import Context, expand
from rstar.search.tree import ANSWERED, Node, Tree


def run_beam(trees: list[Tree], ctx: Context, beam_width: int, per_beam: int) -> None:
    """Step beam search as the reference does it: every beam gets `per_beam`
    candidates, the PPM scores them all, each answer among them takes one
    beam away for good, and the best-scored candidates fill the beams left
    (a terminal one that makes the cut holds its beam for this step and is
    not continued). The answer is the best-scored one (`best_answer`)."""
    if ctx.scorer is None:
        raise ValueError("step beam search needs a PPM (--ppm)")
    beams = {t.problem_id: [t.root] for t in trees}
    width = {t.problem_id: beam_width for t in trees}
    live = list(trees)
    while live:
        new = expand([(t, b) for t in live for b in beams[t.problem_id]], ctx, n=per_beam)
        candidates: dict[str, list[Node]] = {t.problem_id: [] for t in live}
        for t, nd in new:
            candidates[t.problem_id].append(nd)
            if nd.end == ANSWERED:
                width[t.problem_id] -= 1
        still = []
        for t in live:
            ranked = sorted(candidates[t.problem_id], key=_ppm, reverse=True)
            keep = [nd for nd in ranked[: max(width[t.problem_id], 0)] if not nd.terminal]
            if keep:
                beams[t.problem_id] = keep
                still.append(t)
        live = still


def _ppm(node: Node) -> float:
    """A node's PPM score (every candidate of a PPM-guided search has one)."""
    if node.ppm is None:
        raise ValueError(f"node {node.id} has no PPM score")
    return node.ppm
