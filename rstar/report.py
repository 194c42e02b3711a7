"""The self-evolution report: a Markdown page (a table per round) and PNG plots
made with matplotlib, rewritten after every round."""

from __future__ import annotations

import os
from pathlib import Path

from rstar.config import RunConfig
from rstar.metrics import ExtraScore, GuidedScore, RoundMetrics, Score, TrainSummary
from rstar.runs.store import write_atomic


def write_report(workdir: Path, rounds: list[RoundMetrics], config: RunConfig, preset: str) -> Path:
    plots = workdir / "plots"
    plots.mkdir(exist_ok=True)
    images = _plots(plots, rounds)
    ev = config.evolve
    lines = [
        f"# rstar evolve: {workdir.name}",
        "",
        f"Preset `{preset}`; base policy `{config.engine.model}`"
        + (f", round 1 bootstrapped by `{ev.bootstrap}`" if ev.bootstrap else "")
        + f"; pool `{ev.pool}` ({ev.pool_size or 'all'} problems); held-out `{ev.heldout}` "
        f"({rounds[0].eval.problems} problems, never trained on); N = {ev.eval_n}.",
        "",
        "## Held-out accuracy per round",
        "",
        "| round | policy | greedy | majority@N | PPM best-of-N | PPM-guided search | pass@N "
        "| PPM pair acc. (held-out pairs) | PPM pair acc. (held-out problems) | greedy, other set |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in rounds:
        e, pt, pairs = m.eval, m.ppm_train, m.eval.answer_pairs
        lines.append(
            f"| {m.round} | {_short(m.policy)} | {_count(e.greedy, e.problems)} "
            f"| {_count(e.majority, e.problems)} | {_count(e.best_of_n, e.problems)} "
            f"| {_guided(e.guided, e.problems)} "
            f"| {e.pass_at_n:.0%} | {_pct(pt and pt.eval_pairwise_accuracy)}"
            f"{_n(pt and pt.eval_pairs)} | {_pct(pairs and pairs.accuracy)}{_n(pairs and pairs.pairs)} "
            f"| {_extra(e.extra)} |"
        )
    lines += ["", *(f"![{name}](plots/{name}.png)" for name in images), ""]
    for m in rounds[1:]:
        lines += _round_section(m)
    lines += [
        "## Files",
        "",
        "Each `round-K/` holds `config.json` (the round's resolved settings), `search/trees.jsonl`, "
        "`data/sft.jsonl` and `data/ppm.jsonl`, `policy/` and `ppm/` (merged weights, `adapter/`, "
        "`checkpoints/`), `eval/greedy` and `eval/sample` (`answers.jsonl`, `metrics.json`), "
        "`seconds.json` and `metrics.json`.",
        "",
    ]
    path = workdir / "report.md"
    write_atomic(path, "\n".join(lines))
    return path


def _round_section(m: RoundMetrics) -> list[str]:
    s, pt, mt = m.search, m.policy_train, m.ppm_train
    rows = [
        ("search model", f"`{_short(m.search_model or '')}`"),
        ("problems solved in search", f"{s.solved}/{s.problems}" if s else "–"),
        ("nodes (steps that failed to run)", f"{s.nodes} ({s.steps_failed})" if s else "–"),
        ("SFT examples / PPM pairs", f"{m.sft_examples} / {m.ppm_pairs}"),
        (
            "step pairs considered / dropped (empty, not better, margin, near-identical)",
            _pair_counts(m.pair_counts),
        ),
        ("policy training", _trained(pt, "not trained (no data)")),
        ("PPM training", _trained(mt, "not trained (too few pairs)")),
    ]
    rows += [(f"wall s: {phase}", f"{sec:.0f}") for phase, sec in m.seconds.items()]
    return [f"## Round {m.round}", "", "| | |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows), ""]


def _trained(summary: TrainSummary | None, otherwise: str) -> str:
    if summary is None:
        return otherwise
    return f"{summary.steps} steps, loss {summary.train_loss:.3f}" if summary.train_loss is not None else "–"


def _pair_counts(c: dict | None) -> str:
    if not c:
        return "–"
    return (
        f"{c.get('considered', 0)} / {c.get('empty', 0)}, {c.get('not_better', 0)}, "
        f"{c.get('small_margin', 0)}, {c.get('similar', 0)}"
    )


def _plots(folder: Path, rounds: list[RoundMetrics]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    ks = [m.round for m in rounds]

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key, label in (
        ("greedy", "greedy"),
        ("majority", "majority@N"),
        ("best_of_n", "PPM best-of-N"),
        ("guided", "PPM-guided search"),
    ):
        ys = [getattr(m.eval, key).accuracy if getattr(m.eval, key) else None for m in rounds]
        pts = [(k, y) for k, y in zip(ks, ys) if y is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=label)
    _finish(ax, "round", "held-out accuracy", "Accuracy per round", ks)
    made.append(_save(fig, folder, "accuracy"))

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for m in rounds:
        c = m.eval.curve
        ax.plot(c.k, c.majority, linestyle="--", marker=".", label=f"round {m.round} majority")
        if c.best_of_n:
            ax.plot(c.k, c.best_of_n, marker="o", label=f"round {m.round} PPM best-of-N")
    ax.set_xscale("log", base=2)
    _finish(ax, "N (samples)", "held-out accuracy", "Best-of-N vs majority vote", rounds[0].eval.curve.k)
    made.append(_save(fig, folder, "best_of_n"))

    searched = [(m.round, m.q_values) for m in rounds if m.q_values]
    if searched:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for k, h in searched:
            centers = [(a + b) / 2 for a, b in zip(h.edges, h.edges[1:])]
            ax.step(centers, h.counts, where="mid", label=f"round {k}")
        _finish(ax, "Q-value", "step nodes", "Distribution of Q-values", None)
        made.append(_save(fig, folder, "q_values"))

    trained = [(m.round, m.ppm_train) for m in rounds if m.ppm_train]
    if trained:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        xs = [k for k, _ in trained]
        ax.plot(
            xs,
            [t.eval_pairwise_accuracy for _, t in trained],
            marker="o",
            label="held-out pairs (pool problems kept out of training)",
        )
        held = [
            (m.round, m.eval.answer_pairs.accuracy)
            for m in rounds
            if m.ppm_train and m.eval.answer_pairs and m.eval.answer_pairs.accuracy is not None
        ]
        if held:
            ax.plot(*zip(*held), marker="s", label="held-out problems: correct vs wrong answers")
        ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        _finish(ax, "round", "pairwise accuracy", "PPM pairwise accuracy", xs)
        made.append(_save(fig, folder, "ppm_accuracy"))
    return made


def _finish(ax, xlabel: str, ylabel: str, title: str, xticks) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if xticks:
        ax.set_xticks(xticks, [str(x) for x in xticks])
    if ylabel.endswith("accuracy"):
        ax.set_ylim(-0.02, 1.02)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _save(fig, folder: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = folder / f".{name}.png"
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, folder / f"{name}.png")
    return name


def _count(result: Score | None, total: int) -> str:
    return "–" if result is None else f"{result.accuracy:.0%} ({result.correct}/{total})"


def _guided(result: GuidedScore | None, total: int) -> str:
    return "–" if result is None else f"{result.mode}: {_count(result, total)}"


def _extra(result: ExtraScore | None) -> str:
    return "–" if result is None else f"{result.set}: {_count(result, result.problems)}"


def _pct(x) -> str:
    return "–" if x is None else f"{x:.0%}"


def _n(count) -> str:
    return f" (n={count})" if count else ""


def _short(model: str) -> str:
    """A model name, or a round folder's path from the work folder on."""
    parts = Path(model).parts
    for i, part in enumerate(parts):
        if part.startswith("round-"):
            return "/".join(parts[i:])
    return model
