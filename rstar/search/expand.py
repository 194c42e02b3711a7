"""Expanding many nodes of many trees at once: one engine call, one sandbox
batch, grading, and (when a PPM is given) one scoring call."""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from rstar.grading import is_equivalent, last_boxed
from rstar.prompts import build_prompt
from rstar.search.tree import Node, Tree
from rstar.steps import FINAL_ANSWER, FINAL_CODE, STEP, STOP, Step, observation, parse_step

INVALID = "invalid"  # a generation that is no step: a terminal with reward -1


class Scorer(Protocol):
    """A process preference model: one score in [-1, 1] per partial solution."""

    def score(self, texts: Sequence[str]) -> list[float]: ...


@dataclass(frozen=True)
class ExpandConfig:
    """How a node is expanded (shared by every search algorithm)."""

    candidates: int = 4
    max_depth: int = 16
    max_errors_in_a_row: int = 2
    max_step_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.95
    prompt_style: str = "chat"
    seed: int = 0


@dataclass
class Context:
    """What a search needs: the policy, the executor, an optional PPM, and
    where the time went."""

    engine: object
    sandbox: object
    config: ExpandConfig
    scorer: Scorer | None = None
    seconds: dict = field(default_factory=lambda: defaultdict(float))
    calls: int = 0
    _prompts: dict = field(default_factory=dict)

    def prompt(self, tree: Tree) -> str:
        if tree.problem_id not in self._prompts:
            tokenizer = getattr(self.engine, "tokenizer", None)
            self._prompts[tree.problem_id] = build_prompt(tree.question, tokenizer,
                                                          self.config.prompt_style)
        return self._prompts[tree.problem_id]


def node_text(node: Node) -> str:
    """A node's contribution to the solution text the policy continues."""
    step = node.step
    if step is None:
        return ""
    if step.kind == FINAL_CODE:
        return step.text + observation(node.output)
    if step.kind == STEP and node.status != "ok":
        return step.text + observation(node.output) + "\n"
    return step.text + ("\n\n" if step.kind == STEP else "")


def partial_solution(tree: Tree, node: Node) -> str:
    return "".join(node_text(n) for n in tree.path(node))


def program_steps(tree: Tree, node: Node) -> list[str]:
    """The code a node's program runs: every step on its path whose program
    ran, then its own. A failed step's code is not part of later programs."""
    path = tree.path(node)
    code = [n.step.code for n in path[:-1]
            if n.step.kind in (STEP, FINAL_CODE) and n.status == "ok"]
    return code + [node.step.code]


def expand(jobs: list[tuple[Tree, Node]], ctx: Context, n: int | None = None,
           temperature: float | None = None, score_terminals_only: bool = False) -> list[tuple[Tree, Node]]:
    """Give each (tree, node) its children; returns the new (tree, node) pairs.
    With a PPM, every new node is scored, or only terminals when the search
    never looks at a partial solution's score (independent chains)."""
    if not jobs:
        return []
    cfg = ctx.config
    n = n or cfg.candidates
    prompts = [ctx.prompt(t) + partial_solution(t, nd) for t, nd in jobs]
    t0 = time.perf_counter()
    ctx.calls += 1
    completions = ctx.engine.generate(
        prompts, n=n, stop=list(STOP), max_tokens=cfg.max_step_tokens,
        temperature=cfg.temperature if temperature is None else temperature,
        top_p=cfg.top_p, seed=cfg.seed * 1_000_003 + ctx.calls)
    ctx.seconds["generation"] += time.perf_counter() - t0
    if len(completions) != len(jobs):
        raise RuntimeError(f"engine answered {len(completions)} prompts, asked {len(jobs)}")

    new: list[tuple[Tree, Node]] = []
    for (tree, node), cands in zip(jobs, completions):
        node.expanded = True
        seen: dict[tuple, Node] = {}
        for c in cands:
            key = (c.text, c.stop_reason)
            if key in seen:
                seen[key].samples += 1  # identical candidates are one child that counts them
                continue
            step = parse_step(c.text, c.stop_reason)
            if step is None:
                step = Step(INVALID, c.text)
            seen[key] = tree.add(node, step)
            new.append((tree, seen[key]))

    _execute([(t, nd) for t, nd in new if nd.step.kind in (STEP, FINAL_CODE)], ctx)
    t0 = time.perf_counter()
    for tree, node in new:
        _settle(tree, node, cfg)
    ctx.seconds["grading"] += time.perf_counter() - t0
    scored = [(t, nd) for t, nd in new if nd.terminal or not score_terminals_only]
    if ctx.scorer is not None and scored:
        t0 = time.perf_counter()
        scores = ctx.scorer.score([ctx.prompt(t) + partial_solution(t, nd) for t, nd in scored])
        for (tree, node), s in zip(scored, scores):
            node.ppm = float(s)
            if node.terminal and tree.truth is None and node.step.kind == FINAL_ANSWER:
                node.reward = node.ppm  # at inference the PPM judges the answer
        ctx.seconds["ppm"] += time.perf_counter() - t0
    return new


def _execute(jobs: list[tuple[Tree, Node]], ctx: Context) -> None:
    if not jobs:
        return
    t0 = time.perf_counter()
    results = ctx.sandbox.run_batch([program_steps(t, nd) for t, nd in jobs])
    ctx.seconds["sandbox"] += time.perf_counter() - t0
    for (tree, node), r in zip(jobs, results):
        node.status = r.status.value
        parent = tree.nodes[node.parent]
        if r.ok:
            node.output = r.stdout
            node.errors_in_a_row = 0
        else:
            node.output = r.error or r.status.value
            node.errors_in_a_row = parent.errors_in_a_row + 1


def _settle(tree: Tree, node: Node, cfg: ExpandConfig) -> None:
    """Mark terminals and their rewards."""
    kind = node.step.kind
    if kind == INVALID:
        node.terminal, node.reward = True, -1.0
    elif kind == FINAL_ANSWER:
        node.terminal = True
        node.answer = last_boxed(node.step.text)
        if tree.truth is not None:
            node.correct = is_equivalent(node.answer, tree.truth)
            node.reward = 1.0 if node.correct else -1.0
    elif node.errors_in_a_row >= cfg.max_errors_in_a_row or node.depth >= cfg.max_depth:
        node.terminal, node.reward = True, -1.0
