"""MCTS as in rStar-Math: each rollout descends from the root by UCT,
expanding every unexpanded node on its way, until a terminal; the terminal's
reward is backed up to the root. All trees advance together: each round makes
one engine call and one sandbox batch for every tree that needs an expansion."""
from __future__ import annotations

from dataclasses import dataclass

from rstar.search.expand import Context, expand
from rstar.search.select import select_child
from rstar.search.tree import Tree


@dataclass(frozen=True)
class MCTSConfig:
    rollouts: int = 16
    c: float = 2.0


def run_mcts(trees: list[Tree], ctx: Context, config: MCTSConfig, on_round=None) -> None:
    """Run `config.rollouts` rollouts on every tree (in place)."""
    done = [0] * len(trees)
    cursor = [t.root for t in trees]
    active = set(range(len(trees)))
    while active:
        need = []
        for i in sorted(active):
            tree, node = trees[i], cursor[i]
            while True:
                while node.expanded and not node.terminal:
                    node = select_child(tree, node, config.c)
                if not node.terminal:
                    break
                # At inference without a PPM a terminal has no reward: count it as 0.
                tree.backpropagate(node, node.reward if node.reward is not None else 0.0)
                done[i] += 1
                node = tree.root
                if done[i] >= config.rollouts:
                    break
            if done[i] >= config.rollouts:
                active.discard(i)
                continue
            cursor[i] = node
            need.append(i)
        expand([(trees[i], cursor[i]) for i in need], ctx)
        if on_round:
            on_round(trees, done)
