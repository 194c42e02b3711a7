"""Selection as the reference does it (`MCTSNode.puct`, `MCTS.select_child`)."""

from __future__ import annotations

import math

from rstar.search.tree import Node, Tree


def uct(parent: Node, child: Node, c: float) -> float:
    """Q(child) + c * sqrt(ln N(parent) / N(child)); 0 for an unvisited child.

    An unvisited child gets no exploration bonus: a visited sibling with a
    decent Q is followed deeper before it, which is what lets the PPM's score
    (one visit with value = score, in PPM-augmented search) steer. No bonus
    either while the parent has no visit (ln 0 is undefined).
    """
    if child.n == 0:
        return 0.0
    bonus = c * math.sqrt(math.log(parent.n) / child.n) if parent.n > 0 else 0.0
    return child.value + bonus


def select_child(tree: Tree, node: Node, c: float) -> Node | None:
    """The non-terminal child with the highest UCT, the earliest on a tie;
    None when every child is terminal."""
    best, best_score = None, -math.inf
    for i in node.children:
        child = tree.nodes[i]
        if child.terminal:
            continue
        score = uct(node, child, c)
        if score > best_score:
            best, best_score = child, score
    return best
