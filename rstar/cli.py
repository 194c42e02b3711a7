"""The `rstar` command."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rstar.metrics import RoundMetrics, Score

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="rStar-Math: code-augmented MCTS, PPM and self-evolution on one machine.",
)
console = Console(stderr=True, soft_wrap=True)


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def _config(preset: str, overrides: list[str], policy: str | None, **direct):
    """The preset with overrides. A policy folder we trained (it records its
    prompt style) is run as `rstar evolve` runs it: its prompt style, the
    `evolve.tuned_engine` and no int8 unless `evolve.tuned_int8`; an explicit
    expand.prompt_style, engine.kind or engine.int8 override wins."""
    import dataclasses

    from rstar.config import load_config, with_policy
    from rstar.prompts import prompt_style_of

    overrides = list(overrides or [])
    try:
        config = load_config(preset, overrides, **{"engine.model": policy}, **direct)
    except ValueError as exc:
        _fail(str(exc))
    if not policy or not prompt_style_of(policy):
        return config
    given = {o.split("=", 1)[0].strip() for o in overrides}
    tuned = with_policy(config, policy, True)
    engine = dataclasses.replace(
        tuned.engine, **{k: getattr(config.engine, k) for k in ("kind", "int8") if f"engine.{k}" in given}
    )
    style = config.expand.prompt_style if "expand.prompt_style" in given else tuned.expand.prompt_style
    return dataclasses.replace(tuned, engine=engine, expand=dataclasses.replace(tuned.expand, prompt_style=style))


def _problems(source: str, limit: int | None):
    from rstar.data import ProblemFileError, load_problems

    try:
        return load_problems(source, limit)
    except ProblemFileError as exc:
        _fail(str(exc))


def _check_model(name: str) -> None:
    from rstar.llm import ModelNotFoundError, resolve_model

    try:
        resolve_model(name)
    except (ModelNotFoundError, ValueError) as exc:
        _fail(str(exc))


def _workers(config):
    """Where the run searches (a context manager): this process, or the Ray
    cluster named; a bad cluster setting is an error before anything is written."""
    from rstar.cluster import ClusterError, open_workers

    try:
        return open_workers(config)
    except ClusterError as exc:
        _fail(str(exc))


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[stats]}"),
        console=console,
    )


@app.command()
def search(
    problems: str = typer.Option(..., help="problem set name (gsm8k_train, math_train, ...) or JSONL file"),
    out: Path = typer.Option(..., help="output folder: trees.jsonl, summary.json, config.json"),
    preset: str = typer.Option("cpu-demo", help="tiny, cpu-demo or workstation"),
    policy: str | None = typer.Option(None, help="policy model (default: the preset's)"),
    ppm: str | None = typer.Option(None, help="PPM folder: PPM-augmented MCTS"),
    limit: int | None = typer.Option(None, help="only the first N problems"),
    ray: str | None = typer.Option(
        None, help="run on Ray: auto, local:N (N workers here) or a cluster address (cluster.ray)"
    ),
    overrides: list[str] | None = typer.Argument(None, help="section.key=value overrides"),
):
    """MCTS data synthesis: one tree per problem, every step verified in the sandbox.
    An interrupted run continues where it stopped."""
    from rstar.runs.search import search_problems

    config = _config(preset, overrides, policy, **{"cluster.ray": ray})
    items = _problems(problems, limit)
    _check_model(config.engine.model)
    with _workers(config) as workers, _progress() as bar:
        started = time.perf_counter()
        task = bar.add_task("search", total=len(items), stats="")
        totals = {"solved": 0, "nodes": 0}

        def on_batch(batch):
            totals["solved"] += batch.solved
            totals["nodes"] += batch.nodes
            done = bar.tasks[task].completed + batch.problems
            rate = totals["nodes"] / max(time.perf_counter() - started, 1e-9)
            bar.update(
                task,
                advance=batch.problems,
                stats=(f"nodes {totals['nodes']}  steps/s {rate:.1f}  solved {totals['solved']}/{done}"),
            )

        try:
            summary = search_problems(items, out, config, on_batch, ppm=ppm, kept=workers)
        except (ValueError, FileNotFoundError) as exc:
            _fail(str(exc))
    console.print(
        f"{summary.problems} trees in {out / 'trees.jsonl'}: solved {summary.solved}, "
        f"{summary.nodes} nodes, {summary.steps_failed} failed steps"
    )


@app.command("eval")
def evaluate_cmd(
    dataset: str = typer.Option(..., help="math500, gsm8k, aime2024, amc23, or a JSONL file"),
    out: Path = typer.Option(..., help="output folder: answers.jsonl, metrics.json"),
    mode: str = typer.Option("greedy", help="greedy, maj, bon, beam or mcts (the last three need --ppm)"),
    n: int = typer.Option(8, help="samples for maj and bon; beam width for beam"),
    preset: str = typer.Option("cpu-demo"),
    policy: str | None = typer.Option(None, help="policy model (default: the preset's)"),
    ppm: str | None = typer.Option(None, help="PPM folder (bon, beam, mcts)"),
    runs: int | None = typer.Option(None, help="mcts: independent MCTS runs per problem (inference.runs)"),
    top_k: int | None = typer.Option(None, help="mcts: best-valued run answers that vote (inference.top_k)"),
    limit: int | None = typer.Option(None, help="only the first N problems"),
    ray: str | None = typer.Option(
        None, help="run on Ray: auto, local:N (N workers here) or a cluster address (cluster.ray)"
    ),
    overrides: list[str] | None = typer.Argument(None, help="section.key=value overrides"),
):
    """Solve a benchmark without its answers, then grade with math-verify."""
    from rstar.runs.evaluate import evaluate

    config = _config(
        preset, overrides, policy, **{"inference.runs": runs, "inference.top_k": top_k, "cluster.ray": ray}
    )
    items = _problems(dataset, limit)
    _check_model(config.engine.model)
    with _workers(config) as workers, _progress() as bar:
        started = time.perf_counter()
        task = bar.add_task(f"eval {mode}", total=len(items), stats="")
        nodes = [0]

        def on_batch(batch):
            nodes[0] += batch.nodes
            rate = nodes[0] / max(time.perf_counter() - started, 1e-9)
            bar.update(
                task,
                advance=batch.problems,
                stats=f"nodes {nodes[0]}  steps/s {rate:.1f}  answers found {batch.terminals} (last batch)",
            )

        try:
            metrics = evaluate(items, mode, n, out, config, ppm=ppm, on_batch=on_batch, kept=workers)
        except (ValueError, FileNotFoundError) as exc:
            _fail(str(exc))
    title = f"{dataset}: {mode}" + (f"@{n}" if mode == "maj" else "")
    if mode == "mcts":
        title += f" ({config.inference.runs} runs x {config.mcts.rollouts} rollouts, top-{config.inference.top_k} vote)"
    table = Table(title=title)
    for col in ("problems", "correct", "accuracy", f"maj@{metrics.n}", f"pass@{metrics.n}", "wall s"):
        table.add_column(col)
    table.add_row(
        str(metrics.problems),
        str(metrics.correct),
        f"{metrics.accuracy:.1%}",
        f"{metrics.majority_accuracy:.1%}",
        f"{metrics.pass_at_n:.1%}",
        f"{metrics.wall_s:.0f}",
    )
    Console().print(table)


@app.command()
def extract(
    kind: str = typer.Argument(..., help="sft (best verified trajectories) or ppm (preference pairs)"),
    trees: Path = typer.Option(..., help="a trees.jsonl written by rstar search"),
    out: Path = typer.Option(..., help="output file"),
    fmt: str = typer.Option(
        "ours",
        "--format",
        help="ours (JSON Lines with Q-values and ids) or official "
        "(the reference's released format: a JSON array of {query, response} or "
        "{prompt, pos, neg, pos_count, neg_count})",
    ),
    preset: str = typer.Option("cpu-demo", help="the preset whose `extract` section applies"),
    overrides: list[str] | None = typer.Argument(None, help="extract.key=value overrides"),
):
    """Training data from search trees, as the reference extracts it."""
    import json

    from rstar.runs.store import read_trees, write_atomic
    from rstar.train.extract import PairCounts, describe_counts, ppm_pairs, sft_records
    from rstar.train.official import official_text, pairs_to_official, sft_to_official

    if kind not in ("sft", "ppm"):
        _fail(f"unknown kind {kind!r}: sft or ppm")
    if fmt not in ("ours", "official"):
        _fail(f"unknown format {fmt!r}: ours or official")
    if not trees.is_file():
        _fail(f"{trees} does not exist")
    settings = _config(preset, overrides, None).extract
    try:
        loaded = read_trees(trees)
    except ValueError as exc:
        _fail(str(exc))
    counts = PairCounts()
    if kind == "sft":
        records = [r for t in loaded for r in sft_records(t, settings)]
    else:
        records = [r for t in loaded for r in ppm_pairs(t, settings, counts)]
    if fmt == "official":
        text = official_text((sft_to_official if kind == "sft" else pairs_to_official)(records))
    else:
        text = "".join(json.dumps(r) + "\n" for r in records)
    write_atomic(out, text)  # never a half-written data file
    covered = len({r["id"] for r in records})
    console.print(f"{len(records)} {kind} records from {covered} of {len(loaded)} trees -> {out}")
    if kind == "ppm":
        console.print(describe_counts(counts))


@app.command()
def train(
    what: str = typer.Argument(..., help="policy (SFT with LoRA) or ppm (pairwise loss, LoRA + head)"),
    data: Path = typer.Option(..., help="rstar extract sft / ppm output"),
    out: Path = typer.Option(..., help="output folder (rerun to resume from its last checkpoint)"),
    preset: str = typer.Option("cpu-demo"),
    base: str | None = typer.Option(None, help="the model to start from (default: the preset's)"),
    overrides: list[str] | None = typer.Argument(None, help="section.key=value overrides"),
):
    """Fine-tune the policy or train the PPM (on several processes or GPUs with
    launch.processes=N, and launch.accelerate_config=FILE for FSDP / ZeRO-3)."""
    from rstar.train.common import DataFileError
    from rstar.train.launch import LaunchError, train

    if what not in ("policy", "ppm"):
        _fail(f"unknown target {what!r}: policy or ppm")
    section = "policy_train" if what == "policy" else "ppm_train"
    from rstar.config import load_config

    try:
        config = load_config(preset, overrides or [], **{f"{section}.base": base})
    except ValueError as exc:
        _fail(str(exc))
    settings = getattr(config, section)
    _check_model(settings.base)
    try:
        metrics = train(what, data, out, settings, config.launch)
    except (DataFileError, LaunchError, ValueError) as exc:
        _fail(str(exc))
    summary = f"{what}: {metrics.steps} steps, final loss {metrics.losses[-1]:.4f}"
    if metrics.skipped_too_long:
        summary += f", {metrics.skipped_too_long} skipped as longer than max_length"
    if metrics.eval_pairwise_accuracy is not None:
        summary += f", held-out pairwise accuracy {metrics.eval_pairwise_accuracy:.1%}"
    console.print(summary + f" -> {out}")


@app.command()
def evolve(
    workdir: Path = typer.Option(..., help="work folder: one round-K/ per round, report.md, plots/"),
    preset: str = typer.Option("cpu-demo", help="tiny, cpu-demo, cpu-demo-qwen or workstation"),
    rounds: int | None = typer.Option(None, help="number of rounds (default: the preset's)"),
    ray: str | None = typer.Option(
        None, help="run on Ray: auto, local:N (N workers here) or a cluster address (cluster.ray)"
    ),
    overrides: list[str] | None = typer.Argument(None, help="section.key=value overrides"),
):
    """Self-evolution: rounds of MCTS -> policy SFT -> PPM training, each round
    evaluated on a held-out set. Run the same command again to continue an
    interrupted run (or, with a larger --rounds, to add rounds)."""
    from rstar.config import load_config
    from rstar.data import ProblemFileError
    from rstar.evolve import evolve as run_evolve
    from rstar.train.common import DataFileError
    from rstar.train.launch import LaunchError

    try:
        config = load_config(preset, overrides or [], **{"evolve.rounds": rounds, "cluster.ray": ray})
    except ValueError as exc:
        _fail(str(exc))
    for model in {config.engine.model, config.evolve.bootstrap} - {""}:
        _check_model(model)
    started = time.perf_counter()
    try:
        with _workers(config) as workers:
            result = run_evolve(
                workdir,
                config,
                preset,
                log=lambda msg: console.print(f"[dim]{time.perf_counter() - started:6.0f}s[/dim] {msg}"),
                workers=workers,
            )
    except (ValueError, FileNotFoundError, ProblemFileError, DataFileError, LaunchError) as exc:
        _fail(str(exc))
    Console().print(_evolve_table(result.rounds))
    console.print(f"report: {result.report}")


def _evolve_table(rounds: list[RoundMetrics]) -> Table:
    table = Table(title="held-out accuracy per round")
    for col in ("round", "greedy", "majority@N", "PPM best-of-N", "PPM-guided", "PPM pair acc.", "other set", "wall s"):
        table.add_column(col)
    for m in rounds:
        e = m.eval

        def cell(result: Score | None, total: int = e.problems) -> str:
            return "-" if result is None else f"{result.accuracy:.0%} ({result.correct}/{total})"

        ppm = m.ppm_train.eval_pairwise_accuracy if m.ppm_train else None
        table.add_row(
            str(m.round),
            cell(e.greedy),
            cell(e.majority),
            cell(e.best_of_n),
            cell(e.guided),
            "-" if ppm is None else f"{ppm:.0%}",
            cell(e.extra, e.extra.problems) if e.extra else "-",
            f"{sum(m.seconds.values()):.0f}",
        )
    return table


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    sys.exit(main())
