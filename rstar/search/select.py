"""Selection: UCT as in the paper, Q(s) + c * sqrt(ln N(parent) / N(s))."""
from __future__ import annotations

import math

from rstar.search.tree import Node, Tree


def uct(parent: Node, child: Node, c: float) -> float:
    if child.n == 0:
        return math.inf
    return child.value + c * math.sqrt(math.log(max(parent.n, 1)) / child.n)


def select_child(tree: Tree, node: Node, c: float) -> Node:
    """The child with the highest UCT; among unvisited ones, the best PPM
    score first, then the earliest generated."""
    children = [tree.nodes[i] for i in node.children]
    return max(children, key=lambda ch: (uct(node, ch, c),
                                         ch.ppm if ch.ppm is not None else 0.0, -ch.id))
