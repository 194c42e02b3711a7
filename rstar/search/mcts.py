"""MCTS as the reference implementation does it (microsoft/rStar, branch
rStar-math: `agents/mcts.py`, `nodes/mcts_node.py`, `solver.py`).

A rollout starts at the root and selects (UCT, unvisited children scored 0,
terminal children skipped) down to a node without children, expands it, and
goes on selecting among the new children and expanding, until it reaches a
node whose children are all terminal: that node becomes terminal and the
rollout ends. Values enter the tree when nodes are created:

- an answer: its reward (+1 / -1 against the ground truth; the PPM's score
  when there is none) is backed up at once through every ancestor;
- an invalid generation, too many code errors, too deep: -1 on the node
  alone, nothing propagated;
- with a PPM (PPM-augmented MCTS), every other new node is updated once with
  its PPM score, so the PPM steers selection from the start.

All trees advance together: each round makes one engine call, one sandbox
batch and one PPM call for every tree that needs an expansion. A tree's
growth does not depend on the others (given the engine's samples).

Deliberate difference: the reference also stops a rollout after `max_depth`
selection steps, which only cuts its very first rollout one level short (the
root's expansion takes a step); here a rollout always runs to its end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rstar.search.expand import Context, expand
from rstar.search.select import select_child
from rstar.search.tree import ANSWERED, EXHAUSTED, FAILED_ENDS, Node, Tree


@dataclass(frozen=True)
class MCTSConfig:
    rollouts: int = field(
        default=16,
        metadata={"help": "rollouts per tree (the paper: 8 for the bootstrap round, 16 later, 64 for hard problems)"},
    )
    c: float = field(default=2.0, metadata={"help": "exploration weight of UCT (the reference: 2)"})


def run_mcts(
    trees: list[Tree],
    ctx: Context,
    config: MCTSConfig,
    on_round: Callable[[list[Tree], list[int]], object] | None = None,
) -> None:
    """Run `config.rollouts` rollouts on every tree (in place)."""
    done = [0] * len(trees)
    cursor: list[Node | None] = [None] * len(trees)
    active = list(range(len(trees)))
    while active:
        need = []
        for i in active:
            node = _next_leaf(trees[i], cursor[i], config, done, i)
            cursor[i] = node
            if node is not None:
                need.append(i)
        active = need
        new = expand([(trees[i], node) for i in need if (node := cursor[i]) is not None], ctx)
        for tree, node in new:
            _value(tree, node, ctx)
        if on_round:
            on_round(trees, done)


def _next_leaf(tree: Tree, node: Node | None, config: MCTSConfig, done: list[int], i: int) -> Node | None:
    """Select from `node` (a new rollout from the root when None) down to the
    next node to expand; None when the tree has run all its rollouts or has
    nothing left to search."""
    while True:
        if node is None:
            if done[i] >= config.rollouts or tree.root.terminal:
                return None
            node = tree.root
        if not node.expanded:
            return node
        child = select_child(tree, node, config.c)
        if child is None:  # every child is terminal: so is this node; the rollout ends
            node.terminal, node.end = True, EXHAUSTED
            done[i] += 1
            node = None
        else:
            node = child


def _value(tree: Tree, node: Node, ctx: Context) -> None:
    """Put a new node's value into the tree, as the reference does at creation."""
    if node.end in FAILED_ENDS:
        node.update(-1.0)
    elif node.end == ANSWERED:
        if node.reward is None:  # no ground truth: the PPM judges the answer (0 without one)
            node.reward = node.ppm if node.ppm is not None else 0.0
        tree.backpropagate(node, node.reward)
    elif ctx.scorer is not None and node.ppm is not None:
        node.update(node.ppm)
