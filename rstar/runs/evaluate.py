"""`rstar eval`: solve a problem set without its answers (greedy, majority
vote, PPM best-of-N, step beam search, or the paper's repeated PPM-guided
MCTS), then grade; rows appended to `answers.jsonl` per batch, metrics.json."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rstar.config import RunConfig
from rstar.data import Problem
from rstar.grading import is_equivalent
from rstar.metrics import EvalMetrics, SearchSummary
from rstar.ppm.model import check_ppm_folder
from rstar.runs.search import summarize
from rstar.runs.store import append_jsonl, claim_folder, read_jsonl
from rstar.runs.workers import KeptEngine, Workers
from rstar.search.answers import (
    answers,
    best_answer,
    best_valued,
    first_answer,
    majority,
    majority_answer,
    samples,
    top_k_vote,
)
from rstar.search.beam import run_beam
from rstar.search.chains import run_chains
from rstar.search.expand import Context
from rstar.search.mcts import run_mcts
from rstar.search.tree import Tree

ANSWERS = "answers.jsonl"


def evaluate(
    problems: list[Problem],
    mode: str,
    n: int,
    out: Path,
    config: RunConfig,
    ppm: str | None = None,
    on_batch=None,
    kept: Workers | None = None,
) -> EvalMetrics:
    """Solve without the ground truth, then grade; writes answers.jsonl (one row
    per problem, appended per batch: an interrupted run continues) and metrics.json;
    `kept`: run on its engine; `on_batch` gets each batch's `SearchSummary`.

    Modes: greedy; maj (majority vote over n samples); bon (the PPM's best of
    the same n samples, majority vote reported beside it); beam (step beam
    search, beam width n, expand.candidates per beam); mcts (the paper's
    inference: `inference.runs` PPM-guided MCTS runs, each keeping its
    best-valued answer, then a vote among the `inference.top_k` best).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if MODES[mode].needs_ppm and ppm is None:
        raise ValueError(f"mode {mode} needs a PPM (--ppm FOLDER)")
    if ppm is not None:
        check_ppm_folder(ppm)
    claim_folder(out, config, f"eval-{mode}-{n}" + (f" ppm={Path(ppm).resolve()}" if ppm else ""))
    path = out / ANSWERS
    rows = read_jsonl(path)
    done = {r["id"] for r in rows}
    todo = [p for p in problems if p.id not in done]
    started = time.perf_counter()
    if todo:
        workers = kept or KeptEngine()
        try:
            workers.prepare(config, ppm)
            size = config.batch_problems
            batches = [(mode, n, todo[i : i + size], config) for i in range(0, len(todo), size)]
            for _, (new, batch_summary), _ in workers.map(evaluate_task, config, ppm, batches):
                append_jsonl(path, new)
                rows += new
                if on_batch:
                    on_batch(batch_summary)
        finally:
            if kept is None:
                workers.close()
    wanted = {p.id for p in problems}
    rows = [r for r in rows if r["id"] in wanted]
    count = len(rows)
    metrics = EvalMetrics(
        mode=mode,
        n=MODES[mode].reported_n(n, config),
        problems=count,
        correct=sum(r["correct"] for r in rows),
        accuracy=sum(r["correct"] for r in rows) / count,
        pass_at_n=sum(r["pass"] for r in rows) / count,
        majority_correct=sum(r["majority_correct"] for r in rows),
        majority_accuracy=sum(r["majority_correct"] for r in rows) / count,
        wall_s=time.perf_counter() - started,
    )
    (out / "metrics.json").write_text(json.dumps(metrics.to_dict(), indent=2))
    return metrics


def evaluate_task(ctx: Context, payload: tuple[str, int, list[Problem], RunConfig]) -> tuple[list[dict], SearchSummary]:
    """One batch of problems solved together without their truth, then graded:
    the answer rows, and the trees' summary (for progress; solved counts 0)."""
    mode, n, batch, config = payload
    trees = [Tree(p.id, p.question, None) for p in batch]
    return MODES[mode].solve(batch, trees, ctx, n, config), summarize(trees)


def _grader(truth: str | None):
    """answer -> correct, each distinct answer graded once; None is wrong."""
    grades: dict = {None: False}

    def graded(answer):
        if answer not in grades:
            grades[answer] = truth is not None and is_equivalent(answer, truth)
        return grades[answer]

    return graded


def _mcts_runs(trees: list[Tree], ctx: Context, config: RunConfig) -> list[list[dict]]:
    """`inference.runs` independent MCTS runs per problem (run r samples with
    seed expand.seed + r); `trees` get the first run. Returns per problem the
    best-valued answer of every run that found one, with the answers found."""
    picks: list[list[dict]] = [[] for _ in trees]
    for r in range(config.inference.runs):
        run_trees = trees if r == 0 else [Tree(t.problem_id, t.question, None) for t in trees]
        seeded = dataclasses.replace(config.expand, seed=config.expand.seed + r)
        run_mcts(run_trees, Context(ctx.engine, ctx.sandbox, seeded, ctx.scorer, ctx.seconds), config.mcts)
        for mine, tree in zip(picks, run_trees):
            best = best_valued(tree)
            found = [n.answer for n in answers(tree)]
            mine.append({"answer": best[0] if best else None, "value": best[1] if best else None, "found": found})
    return picks


def _mcts_row(problem: Problem, tree: Tree, runs: list[dict], top_k: int) -> dict:
    truth = problem.answer
    graded = _grader(truth)

    picked = [(r["answer"], r["value"]) for r in runs if r["answer"] is not None]
    answer = top_k_vote(picked, top_k)
    maj = majority([(a, 1) for a, _ in picked])
    found = [a for r in runs for a in r["found"]]
    row = _common_row(problem, answer, maj, found, graded)
    row["runs"] = [{"answer": a, "value": v, "correct": graded(a)} for a, v in picked]
    return row


def _common_row(problem: Problem, answer, maj, found: list, graded) -> dict:
    """What every evaluation row holds: the picked and majority answers and
    every answer found, graded against the problem's truth."""
    return {
        "id": problem.id,
        "answer": answer,
        "truth": problem.answer,
        "correct": graded(answer),
        "majority": maj,
        "majority_correct": graded(maj),
        "pass": any(graded(a) for a in found),
        "answers": found,
    }


def _graded_row(problem: Problem, tree: Tree, pick: Callable[[Tree], str | None], lists_samples: bool) -> dict:
    """One problem's evaluation: the picked answer, the majority answer, and
    (for sampled chains) every sample with its PPM score, all graded."""
    graded = _grader(problem.answer)
    found = [x.answer for x in tree.nodes if x.terminal and x.answer is not None]
    row = _common_row(problem, pick(tree), majority_answer(tree), found, graded)
    if lists_samples:
        row["samples"] = [{**s, "correct": graded(s["answer"])} for s in samples(tree)]
    return row


# -- the modes: a search algorithm and how a tree's answer is picked ---------

Solve = Callable[[list[Problem], list[Tree], Context, int, RunConfig], list[dict]]


@dataclass(frozen=True)
class Mode:
    solve: Solve  # grows the batch's trees, returns their graded rows
    needs_ppm: bool = False
    reported_n: Callable[[int, RunConfig], int] = lambda n, config: n  # the N of its metrics


def _grown_then_picked(
    grow: Callable[[list[Tree], Context, int], None], pick: Callable[[Tree], str | None], lists_samples: bool = False
) -> Solve:
    def solve(batch, trees, ctx, n, config):
        grow(trees, ctx, n)
        return [_graded_row(p, t, pick, lists_samples) for p, t in zip(batch, trees)]

    return solve


def _mcts_solve(batch, trees, ctx, n, config):
    picks = _mcts_runs(trees, ctx, config)
    return [_mcts_row(p, t, pk, config.inference.top_k) for p, t, pk in zip(batch, trees, picks)]


def _sampled(trees: list[Tree], ctx: Context, n: int) -> None:
    run_chains(trees, ctx, n=n)


def _beam(trees: list[Tree], ctx: Context, n: int) -> None:
    run_beam(trees, ctx, beam_width=n, per_beam=ctx.config.candidates)


MODES: dict[str, Mode] = {
    "greedy": Mode(
        _grown_then_picked(lambda trees, ctx, n: run_chains(trees, ctx, n=1, temperature=0.0), first_answer),
        reported_n=lambda n, config: 1,
    ),
    "maj": Mode(_grown_then_picked(_sampled, majority_answer, lists_samples=True)),
    "bon": Mode(_grown_then_picked(_sampled, best_answer, lists_samples=True), needs_ppm=True),
    "beam": Mode(_grown_then_picked(_beam, best_answer), needs_ppm=True),
    "mcts": Mode(_mcts_solve, needs_ppm=True, reported_n=lambda n, config: config.inference.runs),
}
