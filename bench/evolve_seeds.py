"""Self-evolution over several seeds: round-by-round held-out accuracy as mean
± standard error over whole runs, so that a README number is one that holds
across seeds rather than one run's luck.

    python bench/evolve_seeds.py --seeds 0 1 2 [--workdir runs/seeds] [--preset cpu-demo] [key=value ...]

Each seed is a whole `rstar evolve` run in its own work folder (resumable:
run the command again to continue) with `expand.seed`, `policy_train.seed`
and `ppm_train.seed` set to it, and by default 100 held-out problems
(`evolve.heldout_size=100`; one run's 20 give a standard error of ~11
points). Prints the table and writes bench/results/evolve_seeds.json.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from report import save_report  # noqa: E402

from rstar.config import load_config  # noqa: E402
from rstar.evolve import evolve  # noqa: E402

COLUMNS = (
    ("greedy", "greedy"),
    ("majority", "majority@N"),
    ("best_of_n", "PPM best-of-N"),
    ("guided", "PPM-guided"),
    ("extra", "greedy, other set"),
)


def mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan"))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workdir", default="runs/seeds")
    parser.add_argument("--preset", default="cpu-demo")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "evolve_seeds.json"))
    parser.add_argument("overrides", nargs="*", help="section.key=value (default: evolve.heldout_size=100)")
    args = parser.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    overrides = args.overrides or ["evolve.heldout_size=100"]
    runs, seconds = {}, {}
    for seed in args.seeds:
        config = load_config(
            args.preset, [*overrides, f"expand.seed={seed}", f"policy_train.seed={seed}", f"ppm_train.seed={seed}"]
        )
        started = time.perf_counter()
        result = evolve(
            Path(args.workdir) / f"seed-{seed}",
            config,
            args.preset,
            log=lambda msg, s=seed: print(f"[seed {s}] {msg}", flush=True),
        )
        seconds[seed] = time.perf_counter() - started
        runs[seed] = result.rounds
    table = []
    for k in range(len(next(iter(runs.values())))):
        row = {"round": k}
        for key, _ in COLUMNS:
            values = [getattr(r[k].eval, key).accuracy for r in runs.values() if getattr(r[k].eval, key)]
            row[key] = dict(zip(("mean", "se"), mean_se(values))) | {"runs": values} if values else None
        table.append(row)
    print(f"\n{args.preset}, seeds {args.seeds}, overrides {overrides}\n")
    print("| round | " + " | ".join(label for _, label in COLUMNS) + " |\n|---|" + "---|" * len(COLUMNS))
    for row in table:
        cells = ["–" if row[key] is None else f"{row[key]['mean']:.1%} ± {row[key]['se']:.1%}" for key, _ in COLUMNS]
        print(f"| {row['round']} | " + " | ".join(cells) + " |")
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "preset": args.preset,
        "overrides": overrides,
        "seeds": args.seeds,
        "rounds": table,
        "wall_s_this_invocation": seconds,
    }
    save_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
