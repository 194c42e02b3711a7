"""Sandbox benchmark: our fork-server against ToRA's own executor, a pebble pool and subprocess.

    python -m sandbox bench [--tora PATH]   # or: python bench/sandbox_bench.py [--quick]

With --tora (a microsoft/ToRA checkout), ToRA's `PythonExecutor` runs in the
same run (bench/tora.py says how).

Prints a table and writes bench/results/sandbox.json. Everything is measured
in the same run on the same machine; compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import NamedTuple

# The pool executors fork their workers from this process: load what a real
# harness's process has loaded (ToRA's and Qwen2.5-Math's graders import sympy).
import numpy  # noqa: F401
import sympy  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from baselines import PebbleExecutor, SubprocessExecutor  # noqa: E402
from machine import busy_cpu_s, cpu_ms_per_program, processes_created, settle  # noqa: E402
from report import save_report  # noqa: E402
from workload import make_workload, tree_order  # noqa: E402

from sandbox import Limits, Sandbox  # noqa: E402
from sandbox._sandbox import DEFAULT_WARMUP  # noqa: E402
from sandbox._worker import zygote_env  # noqa: E402

CALL_SIZE = 12  # one MCTS expansion
PLAIN_REPEATS = 3  # the step form's plain batch, each executor: the median
STEP_FLOOR = "bare forks, no isolation (bench/step_floor.py)"
TIMEOUT_S = 5.0

FLOOR_SCRIPT = r"""
import os, sys, time, json
from step_floor import warm_like_a_zygote
warm_like_a_zygote(("sympy", "numpy"), sys.argv[1])
def trial(run):
    t = time.perf_counter()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        if run:
            os.dup2(w, 1)
            print(1, flush=True)
        os._exit(0)
    os.close(w)
    while os.read(r, 4096):
        pass
    os.close(r)
    os.waitpid(pid, 0)
    return time.perf_counter() - t
out = {}
for name, run in (("fork_exit", False), ("fork_print", True)):
    ts = sorted(trial(run) for _ in range(200))
    out[name] = ts[len(ts) // 2]
print(json.dumps(out))
"""


def run_json(args: list[str]) -> dict:
    """A floor measurement in a fresh interpreter with a zygote's environment."""
    env = zygote_env()
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(HERE), HERE])
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout)


def measure_floor() -> dict:
    return run_json(["-c", FLOOR_SCRIPT, DEFAULT_WARMUP])


def measure_step_floor(n_problems: int, workers: int) -> dict:
    """bench/step_floor.py: the step workload with forks alone (its docstring)."""
    return run_json([os.path.join(HERE, "step_floor.py"), str(n_problems), str(workers)])


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def latency(run_one, n: int) -> dict:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        run_one()
        times.append(time.perf_counter() - t)
    return {"p50_ms": percentile(times, 0.5) * 1e3, "p99_ms": percentile(times, 0.99) * 1e3}


def in_calls(run_batch, programs: list[str]) -> float:
    t = time.perf_counter()
    for i in range(0, len(programs), CALL_SIZE):
        run_batch(programs[i : i + CALL_SIZE])
    return len(programs) / (time.perf_counter() - t)


def timed(run_batch, programs: list[str]) -> tuple[float, list]:
    t = time.perf_counter()
    out = run_batch(programs)
    return time.perf_counter() - t, out


def bench_sandbox(workers: int, plain: list[str], full: list[str], calls: list[str], n_lat: int) -> dict:
    t = time.perf_counter()
    sb = Sandbox(workers=workers, limits=Limits(wall_s=TIMEOUT_S, cpu_s=TIMEOUT_S))
    start_s = time.perf_counter() - t
    try:
        sb.run_batch(plain[:CALL_SIZE])  # first contact
        plain_s, _ = timed(sb.run_batch, plain)
        full_s, results = timed(sb.run_batch, full)
        return {
            "start_s": start_s,
            "zygote_rss_mb": sum(i["rss_mb"] for i in sb.info),
            "plain_per_s": len(plain) / plain_s,
            "full_wall_s": full_s,
            "full_timeouts": sum(r.status == "timeout" for r in results),
            "calls_per_s": in_calls(sb.run_batch, calls),
            "print1": latency(lambda: sb.run("print(1)"), n_lat),
        }
    finally:
        sb.close()
        settle()


class StepRun(NamedTuple):
    per_s: float  # programs per second
    resumed: int  # steps taken from snapshots
    stats: dict  # the live snapshots at the end
    forks: int  # processes the machine created meanwhile
    cpu_s: float  # CPU seconds the machine was busy meanwhile


def run_steps(workers: int, programs: list, call_size: int, snapshots: bool = True) -> StepRun:
    """Programs of steps in calls of `call_size` (all at once if 0) on a fresh Sandbox."""
    sb = Sandbox(workers=workers, limits=Limits(wall_s=TIMEOUT_S, cpu_s=TIMEOUT_S), snapshots=snapshots)
    try:
        sb.run_batch(["pass"] * CALL_SIZE)  # first contact
        size = call_size or len(programs)
        forks, cpu = processes_created(), busy_cpu_s()
        t = time.perf_counter()
        resumed = 0
        for i in range(0, len(programs), size):
            resumed += sum(r.snapshot_steps for r in sb.run_batch(programs[i : i + size]))
        per_s = len(programs) / (time.perf_counter() - t)
        return StepRun(per_s, resumed, sb.snapshot_stats(), processes_created() - forks, busy_cpu_s() - cpu)
    finally:
        sb.close()
        settle()


def median_run(runs: list[StepRun]) -> StepRun:
    """The run whose programs per second is the median (an odd count)."""
    return sorted(runs, key=lambda r: r.per_s)[len(runs) // 2]


def bench_steps(workers: int, tree: list, n_steps: int) -> dict:
    """The step form: each program as its steps, in tree order (level by level,
    a node's children together), from prefix snapshots. The plain batch is
    short (about half a second): the median of PLAIN_REPEATS, each on a fresh
    Sandbox, as for the peers and the bare forks."""
    programs = [list(p.steps) for p in tree]
    runs = [run_steps(workers, programs, 0) for _ in range(PLAIN_REPEATS)]
    plain = median_run(runs)
    calls = run_steps(workers, programs, CALL_SIZE)
    return {
        "plain_per_s": plain.per_s,
        "plain_runs_per_s": [r.per_s for r in runs],
        "plain_cpu_ms": cpu_ms_per_program([r.cpu_s for r in runs], len(programs)),
        "calls_per_s": calls.per_s,
        "steps": n_steps,
        "plain_from_snapshot": plain.resumed / n_steps,
        "calls_from_snapshot": calls.resumed / n_steps,
        "plain_snapshots": plain.stats,
        "calls_snapshots": calls.stats,
        "plain_forks_per_program": plain.forks / len(programs),
        "calls_forks_per_program": calls.forks / len(programs),
    }


def bench_snapshot_waste(workers: int, tree: list) -> dict:
    """Programs of steps that snapshots cannot help (no two share a prefix:
    each step carries its program's number), snapshots on against off; and
    the tree's programs with each step but the last ending in a newline (a
    path's last step then differs from the same step inside a longer path by
    that newline alone), which must reuse prefixes as the plain tree does.
    On and off run PLAIN_REPEATS times each, in pairs whose order alternates
    (the second of two back-to-back runs reads a few percent apart from the
    first on this machine): each case is the median of its runs."""
    unique = [[f"# program {i}\n{step}" for step in p.steps] for i, p in enumerate(tree)]
    newline = [[step + "\n" for step in p.steps[:-1]] + [p.steps[-1]] for p in tree]
    n_steps = sum(len(p.steps) for p in tree)
    runs: dict[str, list] = {}
    for pair in range(PLAIN_REPEATS):
        for prefix, call_size in (("unique", 0), ("unique_calls", CALL_SIZE)):
            for on in (True, False) if pair % 2 == 0 else (False, True):
                name = f"{prefix}_{'on' if on else 'off'}"
                runs.setdefault(name, []).append(run_steps(workers, unique, call_size, on))
    runs["newline_on"] = [run_steps(workers, newline, 0, True)]
    row: dict = {}
    for name, measured in runs.items():
        median = median_run(measured)
        row[name] = {
            "per_s": median.per_s,
            "runs_per_s": [r.per_s for r in measured],
            "from_snapshot": median.resumed / n_steps,
            "live_snapshots": median.stats["live"],
            "forks_per_program": median.forks / len(unique),
        }
    row["unique_ratio"] = row["unique_on"]["per_s"] / row["unique_off"]["per_s"]
    row["unique_calls_ratio"] = row["unique_calls_on"]["per_s"] / row["unique_calls_off"]["per_s"]
    return row


def bench_pool_steps(ex, tree: list) -> dict:
    """A pool executor on the step form's programs, as joined source; the
    plain batch as bench_steps measures it (one pool per call: fresh each)."""
    sources = [p.source for p in tree]
    runs, cpu = [], []
    for _ in range(PLAIN_REPEATS):
        before = busy_cpu_s()
        runs.append(len(sources) / timed(ex.run_batch, sources)[0])
        cpu.append(busy_cpu_s() - before)
    return {
        "plain_per_s": statistics.median(runs),
        "plain_runs_per_s": runs,
        "plain_cpu_ms": cpu_ms_per_program(cpu, len(sources)),
        "calls_per_s": in_calls(ex.run_batch, sources),
    }


def bench_pool(ex, plain: list[str], full: list[str], calls: list[str], n_lat: int) -> dict:
    """A pool executor (pebble, ToRA's) on the string programs."""
    t = time.perf_counter()
    ex.run_batch(["import sympy, numpy"])
    start_s = time.perf_counter() - t
    plain_s, statuses = timed(ex.run_batch, plain)
    full_s, full_statuses = timed(ex.run_batch, full)
    return {
        "start_s": start_s,
        "plain_per_s": len(plain) / plain_s,
        "plain_errors": statuses.count("error"),
        "full_wall_s": full_s,
        "full_timeouts": full_statuses.count("timeout"),
        "calls_per_s": in_calls(ex.run_batch, calls),
        "print1": latency(lambda: ex.run_batch(["print(1)"]), n_lat),
    }


def bench_subprocess(workers: int, plain: list[str], n_lat: int) -> dict:
    ex = SubprocessExecutor(workers, TIMEOUT_S)
    try:
        plain_s, _ = timed(ex.run_batch, plain)
        return {
            "plain_per_s": len(plain) / plain_s,
            "calls_per_s": in_calls(ex.run_batch, plain[: 2 * CALL_SIZE]),
            "print1": latency(lambda: ex.run_batch(["print(1)"]), n_lat),
        }
    finally:
        ex.close()


def fmt(value, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def print_table(report: dict) -> None:
    floor = report["floor"]
    print(
        f"\nraw floor (zygote memory layout): fork+_exit+waitpid {floor['fork_exit'] * 1e3:.2f} ms, "
        f"+ print(1) over a pipe {floor['fork_print'] * 1e3:.2f} ms"
    )
    cols = (
        "executor",
        "workers",
        "plain prog/s",
        f"full wall s ({TIMEOUT_S:.0f}s t/o)",
        f"calls of {CALL_SIZE} prog/s",
        "print(1) p50 ms",
        "p99 ms",
        "start s",
    )
    print("\n| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in report["rows"]:
        print(
            "| "
            + " | ".join(
                [
                    row["executor"],
                    str(row["workers"]),
                    fmt(row.get("plain_per_s")),
                    fmt(row.get("full_wall_s")),
                    fmt(row.get("calls_per_s")),
                    fmt(row["print1"]["p50_ms"]),
                    fmt(row["print1"]["p99_ms"]),
                    fmt(row.get("start_s"), ".2f"),
                ]
            )
            + " |"
        )
    print(
        f"\nstep form ({report['workload']['step_form_programs']} programs of "
        f"{report['workload']['step_form_steps']} steps in tree order; snapshots on):"
    )
    print(
        "\n| executor | workers | plain prog/s | machine CPU ms per program (plain) | calls of 12 prog/s "
        "| steps from a snapshot (plain / calls) | processes forked per program (plain / calls) "
        "| live snapshots at the end (plain / calls) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in report["step_rows"]:
        snap = ""
        if "plain_snapshots" in row:
            p, c = row["plain_snapshots"], row["calls_snapshots"]
            snap = (
                f"{row['plain_from_snapshot']:.0%} / {row['calls_from_snapshot']:.0%} | "
                f"{row['plain_forks_per_program']:.2f} / {row['calls_forks_per_program']:.2f} | "
                f"{p['live']} ({p['memory_mb']:.0f} MiB) / {c['live']} ({c['memory_mb']:.0f} MiB)"
            )
        elif "plain_forks_per_program" in row:
            snap = f"— | {row['plain_forks_per_program']:.2f} / — | —"
        else:
            snap = "— | — | —"
        print(
            f"| {row['executor']} | {row['workers']} | {row['plain_per_s']:.1f} | {row['plain_cpu_ms']:.2f} "
            f"| {fmt(row.get('calls_per_s'))} | {snap} |"
        )
    print("\nsnapshots that cannot pay (no shared prefix) and trailing-newline variants of the tree:")
    print("\n| workers | case | prog/s | steps from a snapshot | forks per program | live snapshots at the end |")
    print("|---|---|---|---|---|---|")
    for workers, waste in report["snapshot_waste"].items():
        for case, row in waste.items():
            if isinstance(row, dict):
                print(
                    f"| {workers} | {case} | {row['per_s']:.1f} | {row['from_snapshot']:.0%} | "
                    f"{row['forks_per_program']:.2f} | {row['live_snapshots']} |"
                )
        print(
            f"  {workers} workers, nothing shared: snapshots on / off {waste['unique_ratio']:.2f}x plain, "
            f"{waste['unique_calls_ratio']:.2f}x calls of {CALL_SIZE} (>= 0.95)"
        )
    for workers, by_peer in report["ratios"].items():
        print(f"\n{workers} workers: print(1) / raw floor {by_peer['print1_vs_floor']:.2f}x (<= 1.5)")
        print(f"  step form, plain: sandbox / bare forks {by_peer['steps_vs_floor']:.2f}x")
        for peer, r in by_peer.items():
            if not isinstance(r, dict):
                continue
            print(
                f"  sandbox / {peer}: plain {r['plain']:.2f}x, calls of 12 {r['calls']:.2f}x, "
                f"full wall {r['full_wall']:.2f}x (<= 0.33), print(1) {r['print1']:.3f}x (<= 0.1); "
                f"step form: plain {r['steps_plain']:.2f}x (>= 1.5; bare forks reach {r['step_floor_plain']:.2f}x), "
                f"calls of 12 {r['steps_calls']:.2f}x (>= 5); machine CPU per program, {peer} / sandbox "
                f"{r['steps_cpu']:.2f}x, {peer} / bare forks {r['step_floor_cpu']:.2f}x"
            )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller workload, fewer repetitions")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "sandbox.json"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--tora", metavar="PATH", help="a microsoft/ToRA checkout: measure its own PythonExecutor in the same run"
    )
    args = parser.parse_args(argv)

    n_problems = 16 if args.quick else 52
    workload = make_workload(n_problems)
    full = [p.source for p in workload]
    plain = [p.source for p in workload if p.kind != "endless"]
    calls = plain[:120]
    tree = tree_order([p for p in workload if p.kind != "endless"])
    n_steps = sum(len(p.steps) for p in tree)
    n_lat = 30 if args.quick else 100
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}",
        "workload": {
            "programs": len(full),
            "endless": len(full) - len(plain),
            "errors": sum(p.kind == "error" for p in workload),
            "step_form_programs": len(tree),
            "step_form_steps": n_steps,
        },
        "floor": measure_floor(),
        "rows": [],
        "step_rows": [],
        "snapshot_waste": {},
        "ratios": {},
    }
    for workers in args.workers:
        ours = bench_sandbox(workers, plain, full, calls, n_lat)
        pools = {"pebble pool per call": PebbleExecutor(workers, TIMEOUT_S)}
        if args.tora:
            from tora import ToraExecutor

            pools["ToRA PythonExecutor"] = ToraExecutor(args.tora, workers, TIMEOUT_S)
        rows = {"sandbox (ours)": ours}
        step_rows = {"sandbox, steps (ours)": bench_steps(workers, tree, n_steps)}
        settle()
        floor_row = measure_step_floor(n_problems, workers)
        for name, ex in pools.items():
            rows[name] = bench_pool(ex, plain, full, calls, max(10, n_lat // 5))
            step_rows[name] = bench_pool_steps(ex, tree)
            ex.close()
        rows["subprocess per program"] = bench_subprocess(
            workers, plain[: 24 if args.quick else 48], max(10, n_lat // 5)
        )
        report["rows"] += [{"executor": name, "workers": workers, **row} for name, row in rows.items()]
        report["step_rows"] += [{"executor": name, "workers": workers, **row} for name, row in step_rows.items()]
        steps = step_rows["sandbox, steps (ours)"]
        report["ratios"][workers] = {
            name: {
                "steps_plain": steps["plain_per_s"] / step_rows[name]["plain_per_s"],
                # The throughput ratio at equally busy CPUs.
                "steps_cpu": step_rows[name]["plain_cpu_ms"] / steps["plain_cpu_ms"],
                "steps_calls": steps["calls_per_s"] / step_rows[name]["calls_per_s"],
                "plain": ours["plain_per_s"] / rows[name]["plain_per_s"],
                "calls": ours["calls_per_s"] / rows[name]["calls_per_s"],
                "full_wall": ours["full_wall_s"] / rows[name]["full_wall_s"],
                "print1": ours["print1"]["p50_ms"] / rows[name]["print1"]["p50_ms"],
            }
            for name in pools
        }
        report["step_rows"].append({"executor": STEP_FLOOR, "workers": workers, **floor_row})
        for name in pools:
            pool_steps = step_rows[name]
            ratios = report["ratios"][workers][name]
            ratios["step_floor_plain"] = floor_row["plain_per_s"] / pool_steps["plain_per_s"]
            ratios["step_floor_cpu"] = pool_steps["plain_cpu_ms"] / floor_row["plain_cpu_ms"]
        report["ratios"][workers]["steps_vs_floor"] = steps["plain_per_s"] / floor_row["plain_per_s"]
        report["snapshot_waste"][workers] = bench_snapshot_waste(workers, tree)
        report["ratios"][workers]["print1_vs_floor"] = ours["print1"]["p50_ms"] / (report["floor"]["fork_print"] * 1e3)
    print_table(report)
    save_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
