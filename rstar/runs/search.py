"""`rstar search`: MCTS data synthesis over a problem set, one tree per
problem appended to `trees.jsonl` as batches finish; a rerun searches only
what is missing."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import defaultdict
from pathlib import Path

from rstar.config import RunConfig
from rstar.data import Problem
from rstar.metrics import SearchCost, SearchSummary
from rstar.ppm.model import check_ppm_folder
from rstar.runs.store import TREES, append_lines, claim_folder, read_trees, tree_lines
from rstar.runs.workers import KeptEngine, Workers
from rstar.search.expand import Context
from rstar.search.mcts import MCTSConfig, run_mcts
from rstar.search.tree import Tree


def search_problems(
    problems: list[Problem],
    out: Path,
    config: RunConfig,
    on_batch=None,
    ppm: str | None = None,
    rollouts: dict[str, int] | None = None,
    kept: Workers | None = None,
) -> SearchSummary:
    """MCTS over every problem not yet in `out/trees.jsonl` (PPM-augmented when
    a PPM is given); `rollouts` gives some problems another number of rollouts
    than `config.mcts.rollouts`; `kept`: the workers to run on (a `KeptEngine`
    or Ray workers; default: this process). This process is the only writer
    of the tree file, in the order batches finish; `on_batch` gets each
    batch's `SearchSummary`. Returns the summary."""
    if ppm is not None:
        check_ppm_folder(ppm)  # a bad PPM fails before anything is written
    claim_folder(out, config, "search" + (f" ppm={Path(ppm).resolve()}" if ppm else ""))
    path = out / TREES
    finished = read_trees(path)  # read once: what is done, and the summary's start
    summary = summarize(finished)
    done = {t.problem_id for t in finished}
    del finished  # a long run's trees need not stay in memory
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
        for _, (lines, batch_summary), spent in workers.map(search_task, config, ppm, batches):
            append_lines(path, lines)
            summary = summary.plus(batch_summary)
            for phase, s in spent.items():
                seconds[phase] += s
            if on_batch:
                on_batch(batch_summary)
        wall, driver_s = time.perf_counter() - started, time.process_time() - driver_started
    finally:
        if kept is None:
            workers.close()
    # "other" is the search's own bookkeeping: wall time minus the measured phases
    # (on several workers the phases are summed over them: worker-seconds).
    cost = SearchCost(
        searched=len(todo),
        setup_s=setup_s,
        wall_s=wall,
        seconds=dict(seconds),
        other_s=max(0.0, wall - sum(seconds.values())),
        driver_cpu_s=driver_s,
    )
    summary = dataclasses.replace(summary, this_run=cost)
    (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2))
    return summary


def search_task(ctx: Context, payload: tuple[MCTSConfig, list[Problem]]) -> tuple[list[str], SearchSummary]:
    """One batch of problems searched together: their lines of the tree file
    and their summary (made on the worker: the driver only writes)."""
    mcts, problems = payload
    trees = [Tree(p.id, p.question, p.answer) for p in problems]
    run_mcts(trees, ctx, mcts)
    return tree_lines(trees, {"mcts": dataclasses.asdict(mcts)}), summarize(trees)


def _by_rollouts(problems: list[Problem], config: RunConfig, rollouts: dict[str, int]):
    """The problems grouped by their MCTS settings, in order of first appearance."""
    groups: dict[int, list[Problem]] = {}
    for p in problems:
        groups.setdefault(rollouts.get(p.id, config.mcts.rollouts), []).append(p)
    return [(dataclasses.replace(config.mcts, rollouts=r), group) for r, group in groups.items()]


def summarize(trees: list[Tree]) -> SearchSummary:
    nodes = [n for t in trees for n in t.nodes if n.step is not None]
    return SearchSummary(
        problems=len(trees),
        solved=sum(t.solved for t in trees),
        nodes=len(nodes),
        steps_failed=sum(n.status != "ok" for n in nodes),
        terminals=sum(n.terminal for n in nodes),
    )
