"""Search trees as plain data: nodes in a list, parents by index.

Statistics follow the reference: `q` is the sum of the values a node was
updated with, `n` its visit count, and Q = q / n (0 while unvisited). A node
carries the step, what the sandbox said of its program and, once terminal,
why it ended and its reward.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from rstar.steps import FINAL_ANSWER, FINAL_CODE, STEP, Step

# Why a node is terminal (`Node.end`).
ANSWERED = "answer"  # a final answer: graded (or judged by the PPM)
INVALID = "invalid"  # a generation that is no step
CODE_ERRORS = "code_errors"  # errors_threshold consecutive steps failed to run
TOO_DEEP = "too_deep"  # deeper than max_depth
EXHAUSTED = "exhausted"  # every child is terminal: nothing left to select below it
ENDS = (ANSWERED, INVALID, CODE_ERRORS, TOO_DEEP, EXHAUSTED)
FAILED_ENDS = (INVALID, CODE_ERRORS, TOO_DEEP)  # -1 on the node alone, nothing backed up


@dataclass(slots=True)
class Node:
    id: int
    parent: int | None
    depth: int
    step: Step | None = None  # None at the root
    status: str = "ok"  # the sandbox's status of this node's program
    output: str = ""  # stdout of a final code step, or the error line
    q: float = 0.0
    n: int = 0
    ppm: float | None = None  # the PPM's score of the partial solution up to here
    terminal: bool = False
    end: str | None = None  # why terminal: one of ENDS
    reward: float | None = None  # the value it was given when it ended (+1 / -1, or the PPM's score)
    answer: str | None = None
    correct: bool | None = None
    errors_in_a_row: int = 0
    samples: int = 1  # identical candidates merged into this node
    children: list[int] = field(default_factory=list)
    expanded: bool = False

    @property
    def value(self) -> float:
        """Q: the mean of the values this node was updated with; 0 unvisited."""
        return self.q / self.n if self.n else 0.0

    def update(self, value: float) -> None:
        """One visit with this value, this node only."""
        self.q += value
        self.n += 1


def step_of(node: Node) -> Step:
    """A node's step; only the root (the question) has none."""
    if node.step is None:
        raise ValueError("the root has no step")
    return node.step


@dataclass(slots=True)
class Tree:
    """One problem's search tree."""

    problem_id: str
    question: str
    truth: str | None
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.nodes:
            self.nodes.append(Node(id=0, parent=None, depth=0))

    @property
    def root(self) -> Node:
        return self.nodes[0]

    def add(self, parent: Node, step: Step) -> Node:
        node = Node(id=len(self.nodes), parent=parent.id, depth=parent.depth + 1, step=step)
        self.nodes.append(node)
        parent.children.append(node.id)
        return node

    def parent_of(self, node: Node) -> Node:
        if node.parent is None:
            raise ValueError("the root has no parent")
        return self.nodes[node.parent]

    def path(self, node: Node) -> list[Node]:
        """Root excluded, `node` included, in order."""
        out = []
        while node.parent is not None:
            out.append(node)
            node = self.nodes[node.parent]
        return out[::-1]

    def backpropagate(self, node: Node, reward: float) -> None:
        """One visit with this reward for every node from `node` to the root."""
        while True:
            node.update(reward)
            if node.parent is None:
                return
            node = self.nodes[node.parent]

    @property
    def solved(self) -> bool:
        return any(n.correct for n in self.nodes)


# -- on disk: one JSON object per tree ---------------------------------------


_NODE_FIELDS = tuple(f.name for f in fields(Node))
_STEP_FIELDS = tuple(f.name for f in fields(Step))


def tree_to_record(tree: Tree, config: dict[str, Any] | None = None) -> dict[str, Any]:
    # Field by field: dataclasses.asdict deep-copies every value, ten times slower.
    nodes = []
    for node in tree.nodes:
        row = {name: getattr(node, name) for name in _NODE_FIELDS}
        step = node.step
        row["step"] = {name: getattr(step, name) for name in _STEP_FIELDS} if step else None
        nodes.append(row)
    return {
        "id": tree.problem_id,
        "question": tree.question,
        "answer": tree.truth,
        "config": config or {},
        "nodes": nodes,
    }


def tree_from_record(record: dict[str, Any]) -> Tree:
    nodes = []
    for row in record["nodes"]:
        row = dict(row)
        row["step"] = Step(**row["step"]) if row["step"] else None
        nodes.append(Node(**row))
    return Tree(problem_id=record["id"], question=record["question"], truth=record.get("answer"), nodes=nodes)


__all__ = [
    "Node",
    "Tree",
    "tree_to_record",
    "tree_from_record",
    "STEP",
    "FINAL_CODE",
    "FINAL_ANSWER",
    "ENDS",
    "FAILED_ENDS",
    "ANSWERED",
    "INVALID",
    "CODE_ERRORS",
    "TOO_DEEP",
    "EXHAUSTED",
]
