"""Training data from search trees, as the reference extracts it
(`extra_sft_file.py` + `train/sample_sft_data.py`, `extra_rm_file.py` +
`train/sample_rm_data.py`).

SFT: per problem, the correct trajectories ranked by their average step Q
(ties: the higher minimum Q), the top `sft_per_problem`; a trajectory with a
step that failed to run is dropped (the reference drops any whose text
contains "error"; we read the sandbox's status instead).

PPM step pairs, walking down from the root: at a node, positives are the
children with a correct answer below them (highest Q first), negatives the
children with a wrong *answer* below them (lowest Q first; code errors,
invalid generations and too-deep paths are not wrong answers); 2 x 2, or 1 x
up to 4 when one side has a single node. A pair is kept if Q+ > Q- and the
positive's best continuation has a higher mean Q than the negative's worst
one, then if Q+ - Q- >= 0.5 and the two steps are at least 20 edits apart.
The walk goes on into children with both correct and wrong answers below.
Final-answer pairs (the paper): the best correct full trajectories against
the worst wrong ones. Every rule is a setting and counted (`PairCounts`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import editdistance

from rstar.prompts import sft_prompt
from rstar.search.expand import node_text, partial_solution
from rstar.search.tree import ANSWERED, Node, Tree
from rstar.steps import FINAL_CODE, STEP


@dataclass(frozen=True)
class ExtractConfig:
    """Which trajectories become SFT data and which step pairs PPM data."""

    sft_per_problem: int = field(default=2, metadata={"help": "correct trajectories kept per problem"})
    pairs_per_side: int = field(default=2, metadata={"help": "positives and negatives per node (2 x 2)"})
    pairs_single_side: int = field(
        default=4, metadata={"help": "when one side has a single node, up to this many on the other (1 x 4)"}
    )
    continuation_check: bool = field(
        default=True,
        metadata={
            "help": "keep a pair only if the positive's best continuation has a higher mean Q than the "
            "negative's worst one (the reference)"
        },
    )
    min_q_margin: float = field(default=0.5, metadata={"help": "drop pairs with Q+ - Q- below this"})
    min_edit_distance: int = field(
        default=20, metadata={"help": "drop pairs whose two steps are fewer than this many character edits apart"}
    )
    answer_pairs: int = field(
        default=2,
        metadata={
            "help": "final-answer pairs: this many best correct x worst wrong full trajectories (the paper; "
            "the released extraction code has none: 0 to match it)"
        },
    )


class PairCounts(Counter):
    """Candidate pairs and what each rule dropped: `considered`, `empty` (a
    side is a step that wrote nothing: an empty generation runs as a no-op
    step, and such a pair teaches nothing; the reference would keep it),
    `not_better` (Q+ <= Q- or the continuation check), `small_margin`,
    `similar`, `kept` (step pairs), and the same with an `answer_` prefix for
    answer pairs."""


def describe_counts(counts: Counter) -> str:
    """One line: what each rule kept and dropped, step pairs then answer pairs."""
    parts = []
    for label, k in (("step pairs", ""), ("answer pairs", "answer_")):
        parts.append(
            f"{label}: {counts[k + 'considered']} considered, {counts[k + 'kept']} kept; dropped "
            f"{counts[k + 'empty']} empty, {counts[k + 'not_better']} not better, "
            f"{counts[k + 'small_margin']} below the margin, {counts[k + 'similar']} near-identical"
        )
    return "; ".join(parts)


def _answers_below(tree: Tree) -> dict[int, tuple[int, int]]:
    """Per node: (correct answers, wrong answers) at or below it."""
    out: dict[int, tuple[int, int]] = {}
    for node in reversed(tree.nodes):  # children always come after their parent
        good = int(node.end == ANSWERED and node.correct is True)
        bad = int(node.end == ANSWERED and node.correct is False)
        for c in node.children:
            g, b = out[c]
            good, bad = good + g, bad + b
        out[node.id] = (good, bad)
    return out


def _trajectories(tree: Tree, correct: bool) -> list[tuple[float, float, list[Node]]]:
    """Answer paths of the given correctness: (mean step Q, min step Q, path)."""
    found = []
    for node in tree.nodes:
        if node.end != ANSWERED or node.correct is not correct:
            continue
        path = tree.path(node)
        qs = [n.value for n in path]
        found.append((sum(qs) / len(qs), min(qs), path))
    return found


def _ran_cleanly(path: list[Node]) -> bool:
    return all(n.status == "ok" for n in path if n.step.kind in (STEP, FINAL_CODE))


def sft_records(tree: Tree, config: ExtractConfig = ExtractConfig()) -> list[dict]:
    best = sorted(
        (t for t in _trajectories(tree, True) if _ran_cleanly(t[2])), key=lambda t: (-t[0], -t[1], t[2][-1].id)
    )[: config.sft_per_problem]
    return [
        {
            "id": tree.problem_id,
            "question": tree.question,
            "prompt": sft_prompt(tree.question),
            "response": "".join(node_text(n) for n in path),
            "avg_q": avg,
            "min_q": low,
        }
        for avg, low, path in best
    ]


def _continuation(tree: Tree, node: Node, below: dict, best: bool) -> float:
    """Mean Q along the path from `node` that keeps to children with a correct
    (best) or wrong (worst) answer below, taking the highest (lowest) Q."""
    side = 0 if best else 1
    chain = [node]
    while True:
        kids = [tree.nodes[c] for c in chain[-1].children if below[c][side] > 0]
        if not kids:
            break
        chain.append(sorted(kids, key=lambda k: -k.value if best else k.value)[0])
    return sum(n.value for n in chain) / len(chain)


def ppm_pairs(tree: Tree, config: ExtractConfig = ExtractConfig(), counts: PairCounts | None = None) -> list[dict]:
    """Step pairs and final-answer pairs of one tree; `counts` (if given) adds
    what each rule kept and dropped. Deterministic: ties keep node order."""
    counts = PairCounts() if counts is None else counts
    below = _answers_below(tree)
    prompt = sft_prompt(tree.question)
    pairs: list[dict] = []
    queue = [tree.root]
    while queue:
        node = queue.pop(0)
        kids = [tree.nodes[c] for c in node.children]
        chosen = sorted((k for k in kids if below[k.id][0] > 0), key=lambda k: -k.value)
        rejected = sorted((k for k in kids if below[k.id][1] > 0), key=lambda k: k.value)
        pos, neg = chosen[: config.pairs_per_side], rejected[: config.pairs_per_side]
        if pos and neg:
            if len(pos) == 1:
                neg = rejected[: config.pairs_single_side]
            if len(neg) == 1:
                pos = chosen[: config.pairs_single_side]
            prefix = prompt + partial_solution(tree, node)
            for p in pos:
                for n in neg:
                    keep = _filter(
                        config,
                        counts,
                        "",
                        p.value,
                        n.value,
                        node_text(p),
                        node_text(n),
                        lambda p=p, n=n: _continuation(tree, p, below, True) > _continuation(tree, n, below, False),
                    )
                    if keep:
                        pairs.append(
                            _pair(
                                tree, "step", prefix, node_text(p), node_text(n), p.value, n.value, len(pos), len(neg)
                            )
                        )
        queue += [k for k in kids if below[k.id][0] > 0 and below[k.id][1] > 0]
    if config.answer_pairs:
        good = sorted(_trajectories(tree, True), key=lambda t: (-t[0], t[2][-1].id))[: config.answer_pairs]
        bad = sorted(_trajectories(tree, False), key=lambda t: (t[0], t[2][-1].id))[: config.answer_pairs]
        for qp, _, pp in good:
            for qn, _, pn in bad:
                text_p, text_n = "".join(map(node_text, pp)), "".join(map(node_text, pn))
                if _filter(config, counts, "answer_", qp, qn, text_p, text_n, lambda: True):
                    pairs.append(_pair(tree, "answer", prompt, text_p, text_n, qp, qn, len(good), len(bad)))
    return pairs


def _filter(
    config: ExtractConfig,
    counts: Counter,
    kind: str,
    q_pos: float,
    q_neg: float,
    text_pos: str,
    text_neg: str,
    better_continuation,
) -> bool:
    counts[kind + "considered"] += 1
    if not text_pos.strip() or not text_neg.strip():  # a generation that wrote nothing teaches nothing
        counts[kind + "empty"] += 1
        return False
    if q_pos - q_neg <= 0 or (config.continuation_check and not better_continuation()):
        counts[kind + "not_better"] += 1
        return False
    if q_pos - q_neg < config.min_q_margin:
        counts[kind + "small_margin"] += 1
        return False
    if editdistance.eval(text_pos, text_neg) < config.min_edit_distance:
        counts[kind + "similar"] += 1
        return False
    counts[kind + "kept"] += 1
    return True


def _pair(
    tree: Tree,
    kind: str,
    prefix: str,
    positive: str,
    negative: str,
    q_pos: float,
    q_neg: float,
    pos_count: int,
    neg_count: int,
) -> dict:
    return {
        "id": tree.problem_id,
        "kind": kind,
        "prefix": prefix,
        "positive": positive,
        "negative": negative,
        "q_positive": q_pos,
        "q_negative": q_neg,
        "pos_count": pos_count,
        "neg_count": neg_count,
    }
