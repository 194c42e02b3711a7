"""Expanding many nodes of many trees at once: one engine call, one sandbox
batch, grading, and (when a PPM is given) one scoring call. Every search
algorithm grows its trees through `expand`; what it does with the new nodes'
values (MCTS backs them up) is its own business."""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rstar.grading import is_equivalent, last_boxed
from rstar.llm.types import Engine
from rstar.prompts import PROMPT_STYLES, build_prompt, sft_prompt
from rstar.search.tree import ANSWERED, CODE_ERRORS, INVALID, TOO_DEEP, Node, Tree, step_of
from rstar.steps import END_ANSWER, FINAL_ANSWER, FINAL_CODE, STEP, STOP, Step, observation, parse_step


class ExecResult(Protocol):
    """What the search reads of a sandbox result."""

    @property
    def ok(self) -> bool: ...
    @property
    def stdout(self) -> str: ...
    @property
    def error(self) -> str | None: ...
    @property
    def status(self) -> Any: ...  # an enum whose .value is the status's name


class Executor(Protocol):
    """Runs programs given as their steps' code (the sandbox's `run_batch`)."""

    def run_batch(self, programs: Sequence[Sequence[str]]) -> Sequence[ExecResult]: ...


class Scorer(Protocol):
    """A process preference model: one score in [-1, 1] per partial solution."""

    def score(self, texts: Sequence[str]) -> list[float]: ...


@dataclass(frozen=True)
class ExpandConfig:
    """How a node is expanded (shared by every search algorithm)."""

    candidates: int = field(
        default=4,
        metadata={"help": "steps sampled per expansion (the reference: 12 in data synthesis, 32 at inference)"},
    )
    max_depth: int = field(default=16, metadata={"help": "a node deeper than this ends its path (-1 on it)"})
    errors_threshold: int = field(
        default=1,
        metadata={
            "help": "consecutive steps that fail to run before a path ends (-1 on the node): the reference's 1 "
            "in later rounds and at inference; evolve.bootstrap_errors_threshold (2) applies in round 1"
        },
    )
    unended: str = field(
        default="code",
        metadata={
            "help": "a generation that holds no boxed answer and stopped at no code tag (EOS, the token limit, "
            "<end_of_answer> without an answer): code runs it as a step, as the reference does (an empty "
            "one is a step that does nothing and lets the next sample try again); invalid ends the path "
            "with -1 on the node"
        },
    )
    single_answer: bool = field(
        default=True,
        metadata={
            "help": "when any candidate of an expansion stops at <end_of_answer>, keep only the first of those "
            "and drop the rest, as the reference does (an answer follows from the program's output); "
            "independent chains (greedy, maj, bon) never do"
        },
    )
    max_step_tokens: int = field(default=256, metadata={"help": "tokens per generated step"})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature of candidates"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling of candidates"})
    prompt_style: str = field(
        default="chat",
        metadata={
            "help": "sft (the official SFT prompt: fine-tuned policies), fewshot (the reference's 2-shot "
            "instruction prompt, plain text: round-1 bootstrap models), chat (our instruction and one "
            "worked example through the tokenizer's chat template), plain (the same without it)"
        },
    )
    seed: int = field(
        default=0,
        metadata={
            "help": "sampling seed: a node's candidates are drawn from (seed, problem id, node id), so a "
            "problem's tree is the same whichever batch, worker or resumed run searches it"
        },
    )

    def __post_init__(self) -> None:
        if self.prompt_style not in PROMPT_STYLES:
            raise ValueError(
                f"expand.prompt_style must be one of {', '.join(PROMPT_STYLES)}, not {self.prompt_style!r}"
            )
        if self.unended not in ("code", "invalid"):
            raise ValueError(f"expand.unended must be code or invalid, not {self.unended!r}")
        if self.errors_threshold < 1 or self.max_depth < 1:
            raise ValueError("expand.errors_threshold and expand.max_depth must be >= 1")


@dataclass
class Context:
    """What a search needs: the policy, the executor, an optional PPM, and
    where the time went."""

    engine: Engine
    sandbox: Executor
    config: ExpandConfig
    scorer: Scorer | None = None
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _prompts: dict[str, str] = field(default_factory=dict)

    def prompt(self, tree: Tree) -> str:
        """The policy's prompt for a tree's question (built once)."""
        if tree.problem_id not in self._prompts:
            tokenizer = getattr(self.engine, "tokenizer", None)
            self._prompts[tree.problem_id] = build_prompt(tree.question, tokenizer, self.config.prompt_style)
        return self._prompts[tree.problem_id]


def node_seed(seed: int, problem_id: str, node_id: int) -> int:
    """The sampling seed of one node's expansion: a stable hash of what
    identifies it, never of the batch or call it happens to be in."""
    digest = hashlib.blake2b(f"{seed}\0{problem_id}\0{node_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2  # < 2**62: every engine takes it


def node_text(node: Node) -> str:
    """A node's part of the solution text: the step as written (a final code
    step with the program's output after it)."""
    step = node.step
    if step is None:
        return ""
    if step.kind == FINAL_CODE:
        return step.text + observation(node.output)
    return step.text


def partial_solution(tree: Tree, node: Node) -> str:
    return "".join(node_text(n) for n in tree.path(node))


def ppm_text(tree: Tree, node: Node) -> str:
    """What the PPM reads: the SFT prompt and the solution up to `node`, as in
    its training pairs, whatever prompt the policy was given."""
    return sft_prompt(tree.question) + partial_solution(tree, node)


def program_steps(tree: Tree, node: Node) -> list[str]:
    """The code a node's program runs, as the reference assembles it: the code
    steps on its path since the last final code step (a failed step's code
    included: it fails again; a timed-out one left out, as the reference
    means to), then its own."""
    code = []
    for n in reversed(tree.path(node)[:-1]):
        step = step_of(n)
        if step.kind == FINAL_CODE:
            break
        if step.kind == STEP and n.status != "timeout":
            code.append(step.code)
    return code[::-1] + [step_of(node).code]


def expand(
    jobs: list[tuple[Tree, Node]],
    ctx: Context,
    n: int | None = None,
    temperature: float | None = None,
    score: str = "all",
    single_answer: bool | None = None,
) -> list[tuple[Tree, Node]]:
    """Give each (tree, node) its children; returns the new (tree, node) pairs.

    Args:
        score: which new nodes the PPM scores (when there is one): "all", or
            "terminals" when the search reads no partial solution's score.
        single_answer: keep one answer per expansion (default: the config's).
    """
    if not jobs:
        return []
    cfg = ctx.config
    n = n or cfg.candidates
    single = cfg.single_answer if single_answer is None else single_answer
    prompts = [ctx.prompt(t) + partial_solution(t, nd) for t, nd in jobs]
    t0 = time.perf_counter()
    completions = ctx.engine.generate(
        prompts,
        n=n,
        stop=list(STOP),
        max_tokens=cfg.max_step_tokens,
        temperature=cfg.temperature if temperature is None else temperature,
        top_p=cfg.top_p,
        seed=[node_seed(cfg.seed, t.problem_id, nd.id) for t, nd in jobs],
    )
    ctx.seconds["generation"] += time.perf_counter() - t0
    if len(completions) != len(jobs):
        raise RuntimeError(f"engine answered {len(completions)} prompts, asked {len(jobs)}")

    new: list[tuple[Tree, Node]] = []
    for (tree, node), cands in zip(jobs, completions):
        node.expanded = True
        if single and any(c.stop_reason == END_ANSWER for c in cands):
            cands = [next(c for c in cands if c.stop_reason == END_ANSWER)]
        seen: dict[tuple[str, str], Node] = {}
        for c in cands:
            key = (c.text, c.stop_reason)
            if key in seen:
                seen[key].samples += 1  # identical candidates are one child that counts them
                continue
            step = parse_step(c.text, c.stop_reason, cfg.unended == "code") or Step(INVALID, c.text)
            seen[key] = tree.add(node, step)
            new.append((tree, seen[key]))

    _execute([(t, nd) for t, nd in new if step_of(nd).kind in (STEP, FINAL_CODE)], ctx)
    t0 = time.perf_counter()
    for tree, node in new:
        _settle(tree, node, cfg)
    ctx.seconds["grading"] += time.perf_counter() - t0
    scored = [(t, nd) for t, nd in new if score == "all" or nd.terminal]
    if ctx.scorer is not None and scored:
        t0 = time.perf_counter()
        scores = ctx.scorer.score([ppm_text(t, nd) for t, nd in scored])
        if len(scores) != len(scored):
            raise RuntimeError(f"PPM returned {len(scores)} scores for {len(scored)} texts")
        for (_, node), s in zip(scored, scores):
            node.ppm = float(s)
        ctx.seconds["ppm"] += time.perf_counter() - t0
    return new


def _execute(jobs: list[tuple[Tree, Node]], ctx: Context) -> None:
    if not jobs:
        return
    t0 = time.perf_counter()
    results = ctx.sandbox.run_batch([program_steps(t, nd) for t, nd in jobs])
    ctx.seconds["sandbox"] += time.perf_counter() - t0
    if len(results) != len(jobs):
        raise RuntimeError(f"sandbox returned {len(results)} results for {len(jobs)} programs")
    for (tree, node), r in zip(jobs, results):
        node.status = r.status.value
        if r.ok:
            node.output = r.stdout
            node.errors_in_a_row = 0
        else:
            node.output = r.error or r.status.value
            node.errors_in_a_row = tree.parent_of(node).errors_in_a_row + 1


def _settle(tree: Tree, node: Node, cfg: ExpandConfig) -> None:
    """Mark a new node terminal where the reference does, with why, its
    answer and (where the ground truth says) its reward."""
    step = step_of(node)
    kind = step.kind
    if kind == INVALID:
        node.terminal, node.end, node.reward = True, INVALID, -1.0
    elif kind == FINAL_ANSWER:
        node.terminal, node.end = True, ANSWERED
        node.answer = last_boxed(step.text)
        if tree.truth is not None:
            node.correct = node.answer is not None and is_equivalent(node.answer, tree.truth)
            node.reward = 1.0 if node.correct else -1.0
    elif node.errors_in_a_row >= cfg.errors_threshold:
        node.terminal, node.end, node.reward = True, CODE_ERRORS, -1.0
    if not node.terminal and node.depth > cfg.max_depth:
        node.terminal, node.end, node.reward = True, TOO_DEEP, -1.0
