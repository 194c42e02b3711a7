"""Self-evolution (`rstar evolve`): rounds of MCTS data synthesis, policy SFT
and PPM training, each evaluated on a held-out set, in one work folder.

    DIR/evolve.json            the run's preset and resolved config (a rerun must match)
    DIR/round-0/               the base policy's held-out evaluation
    DIR/round-K/config.json    the round's resolved search config, policy and PPM
    DIR/round-K/search/        trees.jsonl (resumable per problem), summary.json
    DIR/round-K/data/          sft.jsonl, ppm.jsonl
    DIR/round-K/policy/        the fine-tuned policy (merged), adapter/, checkpoints/
    DIR/round-K/ppm/           the PPM (merged), adapter/, checkpoints/
    DIR/round-K/eval/          greedy/ and sample/ (answers.jsonl, metrics.json)
    DIR/round-K/metrics.json   written last: the round is finished
    DIR/report.md, DIR/plots/  rewritten after every round

Every stage leaves a file that says it finished, and each stage resumes on its
own (search per problem, training from its last checkpoint, evaluation per
batch), so running the same command again continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from rstar.config import RunConfig, with_policy
from rstar.data import Problem, load_problems
from rstar.metrics import (
    AnswerPairs,
    Curve,
    EvolveResult,
    ExtraScore,
    GuidedScore,
    HeldoutMetrics,
    QHistogram,
    Record,
    RoundMetrics,
    Score,
    SearchSummary,
    TrainMetrics,
)
from rstar.runs.evaluate import evaluate
from rstar.runs.search import search_problems
from rstar.runs.store import claim, read_jsonl, read_trees, write_atomic
from rstar.runs.workers import KeptEngine, Workers
from rstar.search.answers import majority
from rstar.search.tree import Tree
from rstar.train.extract import PairCounts, describe_counts, ppm_pairs, sft_records

SPEC = "evolve.json"
DONE = "metrics.json"
R = TypeVar("R", bound=Record)  # a metrics record read back from its file


class EvolveError(ValueError):
    """A work folder that cannot be continued; nothing in it was changed."""


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """The held-out set, and the second one of problems the pool's generator
    did not write (greedy only; may be empty)."""

    main: list[Problem]
    extra: list[Problem]


def evolve(workdir: Path, config: RunConfig, preset: str, log=print, workers=None) -> EvolveResult:
    """Run (or continue) `config.evolve.rounds` rounds in `workdir`; returns the
    metrics of every round, round 0 (the base policy) first. `workers`: where
    searches and evaluations run (default: this process; see `rstar.cluster`)."""
    from rstar.report import write_report

    ev = config.evolve
    workdir = Path(workdir)
    claim_workdir(workdir, config, preset)
    pool = load_problems(ev.pool, ev.pool_size or None)
    heldout = load_problems(ev.heldout, ev.heldout_size or None)
    extra = load_problems(ev.extra_heldout, ev.extra_heldout_size or None) if ev.extra_heldout else []
    for name, held in ((ev.heldout, heldout), (ev.extra_heldout, extra)):
        shared = {p.question for p in pool} & {p.question for p in held}
        if shared:
            raise EvolveError(f"the held-out set {name} shares {len(shared)} questions with the pool {ev.pool}")
    heldout = HeldOut(heldout, extra)

    # Read every finished round first: a damaged one stops the run before anything is written.
    finished = [_read_done(workdir / f"round-{k}") for k in range(ev.rounds + 1)]
    history = [finished[0]]
    # a round's evaluation and the next round's search share the policy's engine
    kept = workers or KeptEngine()
    try:
        if finished[0] is None:
            history = [_round_zero(workdir / "round-0", heldout, config, kept, log)]
            write_report(workdir, history, config, preset)
        for k in range(1, ev.rounds + 1):
            if finished[k] is not None:
                history.append(finished[k])
                continue
            log(f"round {k}: start")
            history.append(run_round(k, workdir / f"round-{k}", pool, heldout, config, history, workdir, kept, log))
            write_report(workdir, history, config, preset)
            log(f"round {k}: done; report in {workdir / 'report.md'}")
    finally:
        kept.close()
    if not (workdir / "report.md").exists():
        write_report(workdir, history, config, preset)
    return EvolveResult(history, workdir / "report.md")


def claim_workdir(workdir: Path, config: RunConfig, preset: str) -> None:
    """Record what this work folder runs; refuse one of another preset or
    config. Only `evolve.rounds` may change (to add rounds)."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec = workdir / SPEC
    settings = json.loads(json.dumps(config.to_dict()))
    settings["evolve"].pop("rounds")
    if not spec.exists():
        for child in workdir.iterdir():
            raise EvolveError(f"{workdir} is not empty and has no {SPEC} ({child.name}); use an empty or new --workdir")

    def mismatch(theirs: dict) -> str:
        if theirs.get("preset") != preset:
            return (
                f"{workdir} holds an evolve run of preset {theirs.get('preset')!r}, not {preset!r}; "
                "use another --workdir"
            )
        diff = _differences(theirs.get("config", {}), settings)
        return (
            f"{workdir} holds an evolve run with other settings ({', '.join(diff)}); "
            "use the same overrides or another --workdir"
        )

    defaults = {"preset": preset, "config": RunConfig().to_dict()}
    claim(spec, {"preset": preset, "config": settings}, mismatch, EvolveError, defaults)


def run_round(
    k: int,
    folder: Path,
    pool: list[Problem],
    heldout: HeldOut,
    config: RunConfig,
    history: list[RoundMetrics],
    workdir: Path,
    kept: Workers,
    log,
) -> RoundMetrics:
    ev = config.evolve
    previous = history[-1]
    base = config.engine.model
    policy, ppm, tuned = previous.policy, previous.ppm, previous.tuned
    searcher = ev.bootstrap if (k == 1 and ev.bootstrap) else policy
    search_cfg = with_policy(config, searcher, tuned and searcher == policy)
    if k == 1:  # the bootstrap round: its own rollout count and code-error threshold, as the reference
        search_cfg = dataclasses.replace(
            search_cfg,
            expand=dataclasses.replace(search_cfg.expand, errors_threshold=ev.bootstrap_errors_threshold),
            mcts=dataclasses.replace(search_cfg.mcts, rollouts=ev.bootstrap_rollouts or search_cfg.mcts.rollouts),
        )
    search_ppm = ppm if k >= ev.ppm_search_from else None  # the paper: terminal-guided in rounds 1-2
    solved_before = {i for m in history[1:] for i in m.solved_ids}
    more = ev.unsolved_rollouts if k >= ev.unsolved_from else 0
    rollouts = {p.id: more for p in pool if p.id not in solved_before} if more else {}
    _claim_round(
        folder,
        {
            "round": k,
            "search_model": searcher,
            "ppm": search_ppm,
            "unsolved_rollouts": more,
            "search": search_cfg.to_dict(),
        },
    )
    seconds = _Seconds(folder / "seconds.json")

    with seconds.phase("search"):
        log(
            f"round {k}: MCTS over {len(pool)} problems with {searcher}"
            + (" guided by the PPM" if search_ppm else ", terminal-guided")
            + (f", {more} rollouts for {len(rollouts)} unsolved" if rollouts else "")
        )
        search = search_problems(
            pool,
            folder / "search",
            search_cfg,
            ppm=search_ppm,
            rollouts=rollouts,
            on_batch=_counter(f"round {k}:   searched", log, solved=True),
            kept=kept,
        )
        trees = _in_pool_order(read_trees(folder / "search" / "trees.jsonl"), pool)
    log(
        f"round {k}: solved {search.solved}/{search.problems}, {search.nodes} nodes, {search.steps_failed} failed steps"
    )

    with seconds.phase("extract"):
        sources = [folder] if ev.data == "round" else [workdir / f"round-{i}" for i in range(1, k + 1)]
        all_trees = [
            t
            for src in sources
            for t in (trees if src == folder else _in_pool_order(read_trees(src / "search" / "trees.jsonl"), pool))
        ]
        sft = _write_once(folder / "data" / "sft.jsonl", [r for t in all_trees for r in sft_records(t, config.extract)])
        counts = PairCounts()
        pairs = [r for t in all_trees for r in ppm_pairs(t, config.extract, counts)]
        if ev.max_pairs and len(pairs) > ev.max_pairs:
            keep = sorted(random.Random(config.ppm_train.seed).sample(range(len(pairs)), ev.max_pairs))
            pairs = [pairs[i] for i in keep]
        pairs = _write_once(folder / "data" / "ppm.jsonl", pairs)
    log(f"round {k}: {sft} SFT examples, {pairs} PPM pairs ({describe_counts(counts)})")

    policy_metrics: TrainMetrics | None = None
    ppm_metrics: TrainMetrics | None = None
    if sft or pairs >= ev.min_pairs:
        kept.close()  # training needs the memory; the policy changes anyway
    if sft:
        start_from = base if ev.policy_from == "base" or not tuned else policy
        with seconds.phase("policy"):
            log(f"round {k}: fine-tuning {start_from} on {sft} solutions")
            policy_metrics = _train(
                folder / "policy",
                folder / "data" / "sft.jsonl",
                "policy",
                dataclasses.replace(config.policy_train, base=start_from),
                config,
            )
        policy, tuned = str((folder / "policy").resolve()), True
    else:
        log(f"round {k}: no verified solution; the policy stays {policy}")
    if pairs >= ev.min_pairs:
        with seconds.phase("ppm"):
            log(f"round {k}: training the PPM from {policy} on {pairs} pairs")
            ppm_metrics = _train(
                folder / "ppm",
                folder / "data" / "ppm.jsonl",
                "ppm",
                dataclasses.replace(config.ppm_train, base=policy),
                config,
            )
        ppm = str((folder / "ppm").resolve())
    else:
        log(f"round {k}: {pairs} PPM pairs (< {ev.min_pairs}); the PPM stays {ppm}")

    with seconds.phase("eval"):
        evaluation = evaluate_heldout(folder / "eval", heldout, config, policy, tuned, ppm, kept, log)
    metrics = RoundMetrics(
        round=k,
        policy=policy,
        tuned=tuned,
        ppm=ppm,
        search_model=searcher,
        search=dataclasses.replace(search, this_run=None),
        solved_ids=sorted(t.problem_id for t in trees if t.solved),
        q_values=q_histogram(trees),
        sft_examples=sft,
        ppm_pairs=pairs,
        pair_counts=dict(counts),
        policy_train=policy_metrics.summary() if policy_metrics else None,
        ppm_train=ppm_metrics.summary() if ppm_metrics else None,
        eval=evaluation,
        seconds=seconds.read(),
    )
    _write_json(folder / DONE, metrics.to_dict())
    return metrics


def evaluate_heldout(
    folder: Path, held: HeldOut, config: RunConfig, policy: str, tuned: bool, ppm: str | None, kept: Workers, log
) -> HeldoutMetrics:
    """Greedy accuracy, and N samples judged by majority vote and (with a PPM)
    by the PPM, on the held-out set; with the curves against N; PPM-guided
    search; greedy accuracy on the second held-out set."""
    ev = config.evolve
    cfg = with_policy(config, policy, tuned)
    heldout = held.main
    log(f"  held-out: greedy on {len(heldout)} problems")
    greedy = evaluate(heldout, "greedy", 1, folder / "greedy", cfg, on_batch=_counter("    greedy:", log), kept=kept)
    mode = "bon" if ppm else "maj"
    log(f"  held-out: {ev.eval_n} samples per problem ({'PPM best-of-N and ' if ppm else ''}majority vote)")
    sample = evaluate(
        heldout, mode, ev.eval_n, folder / "sample", cfg, ppm=ppm, on_batch=_counter("    sampled:", log), kept=kept
    )
    guided = None
    if ppm and ev.eval_guided:
        mode, width = ev.eval_guided, ev.eval_beam_width
        log(
            f"  held-out: PPM-guided {mode}"
            + (
                f" (width {width})"
                if mode == "beam"
                else f" ({config.inference.runs} runs x {config.mcts.rollouts} rollouts)"
            )
        )
        result = evaluate(
            heldout, mode, width, folder / mode, cfg, ppm=ppm, on_batch=_counter(f"    {mode}:", log), kept=kept
        )
        guided = GuidedScore(result.correct, result.accuracy, mode=mode, pass_at_n=result.pass_at_n)
    extra = None
    if held.extra:
        log(f"  {ev.extra_heldout}: greedy on {len(held.extra)} problems")
        result = evaluate(
            held.extra, "greedy", 1, folder / "extra", cfg, on_batch=_counter("    extra:", log), kept=kept
        )
        extra = ExtraScore(result.correct, result.accuracy, set=ev.extra_heldout, problems=len(held.extra))
    ids = {p.id for p in heldout}
    rows = [r for r in read_jsonl(folder / "sample" / "answers.jsonl") if r["id"] in ids]
    return HeldoutMetrics(
        problems=len(heldout),
        greedy=Score(greedy.correct, greedy.accuracy),
        n=ev.eval_n,
        majority=Score(sample.majority_correct, sample.majority_accuracy),
        best_of_n=Score(sample.correct, sample.accuracy) if ppm else None,
        guided=guided,
        extra=extra,
        pass_at_n=sample.pass_at_n,
        curve=sample_curves(rows, ev.eval_n, with_ppm=ppm is not None),
        answer_pairs=answer_pair_accuracy(rows) if ppm else None,
    )


def sample_curves(rows: list[dict], n: int, with_ppm: bool) -> Curve:
    """Accuracy of majority vote (and PPM best-of-N) using the first k samples
    of each problem, for k = 1, 2, 4, ... up to n."""
    ks = sorted({min(2**i, n) for i in range(n.bit_length() + 1)})
    majority_at: list[float] = []
    best_at: list[float] = []
    for k in ks:
        maj = bon = 0
        for row in rows:
            first = row["samples"][:k]
            grade = {s["answer"]: s["correct"] for s in first}
            winner = majority([(s["answer"], 1) for s in first if s["answer"] is not None])
            maj += bool(winner is not None and grade.get(winner))
            scored = [s for s in first if s["answer"] is not None and s["ppm"] is not None]
            if scored:
                bon += bool(max(scored, key=lambda s: s["ppm"])["correct"])
        majority_at.append(maj / len(rows))
        best_at.append(bon / len(rows))
    return Curve(ks, majority_at, best_at if with_ppm else None)


def answer_pair_accuracy(rows: list[dict]) -> AnswerPairs:
    """How often the PPM scores a correct held-out solution above a wrong one
    of the same problem (distinct solutions; problems with both kinds only)."""
    wins = total = 0
    for row in rows:
        good = {s["ppm"] for s in row["samples"] if s["answer"] is not None and s["correct"]}
        bad = {s["ppm"] for s in row["samples"] if s["answer"] is not None and not s["correct"]}
        for g in good:
            for b in bad:
                total += 1
                wins += g > b
    return AnswerPairs(total, wins / total if total else None)


def q_histogram(trees, bins: int = 20) -> QHistogram:
    """Counts of step nodes' Q-values in equal bins over [-1, 1]."""
    counts = [0] * bins
    for t in trees:
        for node in t.nodes:
            if node.step is not None and node.n:
                counts[min(int((node.value + 1) / 2 * bins), bins - 1)] += 1
    return QHistogram([-1 + 2 * i / bins for i in range(bins + 1)], counts)


# -- helpers -------------------------------------------------------------------


def _round_zero(folder: Path, heldout: HeldOut, config: RunConfig, kept: Workers, log) -> RoundMetrics:
    log(f"round 0: evaluating the base policy {config.engine.model}")
    seconds = _Seconds(folder / "seconds.json")
    with seconds.phase("eval"):
        evaluation = evaluate_heldout(folder / "eval", heldout, config, config.engine.model, False, None, kept, log)
    metrics = RoundMetrics(
        round=0, policy=config.engine.model, tuned=False, ppm=None, eval=evaluation, seconds=seconds.read()
    )
    _write_json(folder / DONE, metrics.to_dict())
    return metrics


def _in_pool_order(trees: list[Tree], pool: list[Problem]) -> list[Tree]:
    """Trees in the pool's order, whatever order the workers finished them in,
    so that a round's training data is the same at any scale."""
    rank = {p.id: i for i, p in enumerate(pool)}
    return sorted(trees, key=lambda t: rank.get(t.problem_id, len(rank)))


def _counter(what: str, log, solved: bool = False):
    """A per-batch progress line: problems done in this run (and, with
    `solved`, how many were solved: a search knows, an evaluation does not)."""
    done = {"problems": 0, "solved": 0}

    def on_batch(batch: SearchSummary) -> None:
        done["problems"] += batch.problems
        done["solved"] += batch.solved
        log(f"{what} {done['problems']} problems" + (f", {done['solved']} solved" if solved else ""))

    return on_batch


def _train(out: Path, data: Path, what: str, settings, config: RunConfig) -> TrainMetrics:
    done = out / "metrics.json"
    if done.exists():
        return _load(TrainMetrics, done)
    from rstar.train.launch import train

    return train(what, data, out, settings, config.launch)


def _claim_round(folder: Path, spec: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    claim(
        path,
        spec,
        lambda _: (
            f"{path} records another round than the one this run would make "
            "(earlier rounds changed?); move the round folder away to redo it"
        ),
        EvolveError,
        {"search": RunConfig().to_dict()},
    )


def _read_done(folder: Path) -> RoundMetrics | None:
    path = folder / DONE
    return _load(RoundMetrics, path) if path.exists() else None


def _load(record: type[R], path: Path) -> R:
    data = _load_json(path)
    try:
        return record.from_dict(data)
    except ValueError as exc:
        raise EvolveError(f"{path} is damaged ({exc}); move it away to redo that stage") from None


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise EvolveError(f"{path} is damaged (not JSON); move it away to redo that stage") from None
    if not isinstance(data, dict):
        raise EvolveError(f"{path} is damaged (not an object); move it away to redo that stage")
    return data


def _write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2))


def _write_once(path: Path, records: list[dict]) -> int:
    """Write a data file unless a finished one exists; returns its record count."""
    if not path.exists():
        write_atomic(path, "".join(json.dumps(r) + "\n" for r in records))
    return sum(1 for line in open(path) if line.strip())


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


class _Seconds:
    """Wall seconds per phase, kept in a file so a resumed round adds to them."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> dict:
        return _load_json(self.path) if self.path.exists() else {}

    @contextmanager
    def phase(self, name: str):
        started = time.perf_counter()
        yield
        seconds = self.read()
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
        _write_json(self.path, seconds)
