"""Search throughput on Ray workers against the plain one-process run, with the
same resources per worker (one engine thread, one sandbox zygote, one CPU).

    python bench/cluster_bench.py [--preset tiny] [--problems toy_train] [--limit 24] [--repeats 3] [key=value ...]

For each setup (plain: this process; ray1, ray2: `--ray local:1`, `local:2`)
it searches the same problems `--repeats` times into fresh folders (each worker
pinned to a core of its own unless --no-pin) and reports
problems/hour, nodes/s, and the driver's own CPU time as a share of the wall
(engine and cluster start-up are reported apart, not in the wall). Prints a
table and writes bench/results/cluster_<preset>.json. Targets (issue 16): on
the tiny preset 2 workers >= 1.7x one worker; the driver under 2% of the wall.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from report import save_report, search_run_fields  # noqa: E402

from rstar.cluster import open_workers  # noqa: E402
from rstar.config import load_config  # noqa: E402
from rstar.data import load_problems  # noqa: E402
from rstar.runs.search import search_problems  # noqa: E402

SETUPS = {"plain": "", "ray1": "local:1", "ray2": "local:2"}


def one_run(problems, config, ray: str, pin: bool) -> dict:
    """One search into a fresh folder. `pin`: each worker (with the sandbox it
    forks) on a core of its own, and the plain run on one core, so that "one
    core per worker" holds: unpinned, a worker's engine and its sandbox's
    children overlap and take about 1.3 cores here."""
    config = dataclasses.replace(config, cluster=dataclasses.replace(config.cluster, ray=ray))
    everything = os.sched_getaffinity(0)
    cores = sorted(everything)
    t0 = time.perf_counter()
    try:
        with open_workers(config) as workers, tempfile.TemporaryDirectory() as tmp:
            if pin:
                pids = workers.pids() if ray else [os.getpid()]
                for i, pid in enumerate(pids):
                    os.sched_setaffinity(pid, {cores[i % len(cores)]})
            cluster_s = time.perf_counter() - t0
            summary = search_problems(problems, Path(tmp) / "run", config, kept=workers)
    finally:
        os.sched_setaffinity(0, everything)
    run = summary.this_run
    assert run is not None
    return {
        "wall_s": run.wall_s,
        "setup_s": run.setup_s + cluster_s,
        "nodes": summary.nodes,
        "solved": summary.solved,
        "problems_per_hour": len(problems) / run.wall_s * 3600,
        "nodes_per_s": summary.nodes / run.wall_s,
        "driver_share": run.driver_cpu_s / run.wall_s,
    }


def spread(values: list[float]) -> str:
    mean = statistics.mean(values)
    return f"{mean:.3g} ± {statistics.pstdev(values):.2g}" if len(values) > 1 else f"{mean:.3g}"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--problems", default="toy_train")
    parser.add_argument("--limit", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--no-pin", action="store_true", help="leave workers unpinned (they then share the cores)")
    parser.add_argument("--out", default=None)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    one_core = ["engine.threads=1", "sandbox.workers=1", "cluster.cpus_per_worker=1"]
    config = load_config(args.preset, one_core + args.overrides)
    problems = load_problems(args.problems, args.limit)

    runs: dict[str, list[dict]] = {s: [] for s in args.setups}
    for r in range(args.repeats):  # setups interleaved, so drift in the machine's load hits each alike
        for setup in args.setups:
            runs[setup].append(one_run(problems, config, SETUPS[setup], not args.no_pin))
            print(f"repeat {r + 1}, {setup}: {runs[setup][-1]['wall_s']:.1f} s", flush=True)

    rate = {s: [x["problems_per_hour"] for x in runs[s]] for s in runs}
    print(f"\n{len(problems)} problems of {args.problems}, preset {args.preset}, {args.repeats} repeats (mean ± sd)")
    print(
        "\n| setup | wall s | problems/hour | nodes/s | driver share of wall | start-up s |\n|---|---|---|---|---|---|"
    )
    for s, xs in runs.items():
        print(
            f"| {s} | {spread([x['wall_s'] for x in xs])} | {spread(rate[s])} | "
            f"{spread([x['nodes_per_s'] for x in xs])} | {spread([100 * x['driver_share'] for x in xs])}% | "
            f"{spread([x['setup_s'] for x in xs])} |"
        )
    ratios = {}
    for name, a, b in (
        ("ray2_vs_ray1", "ray2", "ray1"),
        ("ray1_vs_plain", "ray1", "plain"),
        ("ray2_vs_plain", "ray2", "plain"),
    ):
        if a in rate and b in rate:
            per_repeat = [x / y for x, y in zip(rate[a], rate[b])]
            ratios[name] = per_repeat
            print(
                f"{a} / {b} throughput: {spread(per_repeat)} (per repeat: {', '.join(f'{v:.2f}' for v in per_repeat)})"
            )
    report = {
        **search_run_fields(args),
        "pinned": not args.no_pin,
        "config": config.to_dict(),
        "runs": runs,
        "ratios": ratios,
    }
    save_report(report, args.out or os.path.join(HERE, "results", f"cluster_{args.preset}.json"))
    return report


if __name__ == "__main__":
    main()
