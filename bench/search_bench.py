"""Where the wall time of `rstar search` goes: generation, sandbox, grading,
PPM scoring, and everything else (the search's own bookkeeping).

    python bench/search_bench.py [--problems gsm8k_train] [--limit 8] [--preset cpu-demo] [key=value ...]

Prints a table and writes bench/results/search.json. Target: everything else
under 5% of the wall time (engine and sandbox start-up are reported apart).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from report import save_report, search_run_fields  # noqa: E402

from rstar.config import load_config  # noqa: E402
from rstar.data import load_problems  # noqa: E402
from rstar.runs.search import search_problems  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="gsm8k_train")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--preset", default="cpu-demo")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "search.json"))
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    config = load_config(args.preset, args.overrides)
    problems = load_problems(args.problems, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        summary = search_problems(problems, Path(tmp) / "run", config)
    run = summary.this_run
    assert run is not None
    wall = run.wall_s
    phases = {
        **{k: run.seconds.get(k, 0.0) for k in ("generation", "sandbox", "grading", "ppm")},
        "everything else": run.other_s,
    }
    print(
        f"\n{len(problems)} problems of {args.problems}, preset {args.preset}: "
        f"{summary.nodes} nodes, {summary.solved} solved, {summary.steps_failed} failed steps; "
        f"start-up {run.setup_s:.1f} s (not in the wall time)"
    )
    print("\n| phase | seconds | share of wall |\n|---|---|---|")
    for name, sec in phases.items():
        print(f"| {name} | {sec:.2f} | {sec / wall:.1%} |")
    print(f"| wall | {wall:.2f} | 100% |")
    report = {
        **search_run_fields(args),
        "config": config.to_dict(),
        "summary": summary,
        "phases": phases,
        "other_share": run.other_s / wall,
    }
    save_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
