"""The least a fork-isolated executor can pay for the step workload.

    python bench/step_floor.py N_PROBLEMS WORKERS    # prints JSON

A parent laid out and warmed as our zygotes are forks one process per problem
path; that process runs the path's steps one after another in place, and each
dead branch (a failing step) in a process forked from the current state, as
snapshots do. Nothing else: no seccomp, Landlock or rlimits, no protocol, no
result sent anywhere, output captured and dropped. Any executor that runs each
program isolated from the others forks at least this often and executes at
least these steps, so its throughput bounds what ours can reach on this
machine; sandbox_bench.py runs it in the same run as ToRA's executor.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from machine import busy_cpu_s, cpu_ms_per_program  # noqa: E402
from workload import Program, make_workload, tree_order  # noqa: E402

from sandbox import _core  # noqa: E402
from sandbox._sandbox import DEFAULT_PRELOAD, DEFAULT_WARMUP  # noqa: E402

REPEATS = 3


def warm_like_a_zygote(preload: tuple[str, ...] | list[str], warmup: str) -> None:
    """What a zygote does before it serves (sandbox/_zygote.py: main): its
    memory laid out for huge pages, the imports and warm-up, the heap frozen
    and collapsed. Also the raw floor's setup (sandbox_bench.FLOOR_SCRIPT)."""
    _core.lay_out_heap()
    for name in preload:
        importlib.import_module(name)
    exec(warmup, {"__name__": "__warmup__"})
    gc.collect()
    gc.freeze()
    _core.collapse_heap()


def run_step(namespace: dict, source: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            exec(compile(source, "<program>", "exec"), namespace)
        except Exception:
            pass  # a dead branch; its process ends next


def run_path(programs: list[Program]) -> None:
    namespace = {"__name__": "__main__"}
    done = 0
    for program in programs:  # by depth: the path's steps and its dead branches
        if program.kind == "ok" and len(program.steps) == done + 1:
            run_step(namespace, program.steps[-1])
            done += 1
            continue
        pid = os.fork()
        if pid == 0:
            run_step(namespace, program.steps[-1])
            os._exit(0)
        os.waitpid(pid, 0)


def run_worker(paths: list[list[Program]]) -> None:
    for path in paths:
        pid = os.fork()
        if pid == 0:
            run_path(path)
            os._exit(0)
        os.waitpid(pid, 0)


def run_all(paths: list[list[Program]], workers: int) -> None:
    """The paths split over `workers` processes, as the zygotes split them."""
    pids = []
    for w in range(workers):
        pid = os.fork()
        if pid == 0:
            run_worker(paths[w::workers])
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)


def main() -> None:
    n_problems, workers = int(sys.argv[1]), int(sys.argv[2])
    tree = tree_order([p for p in make_workload(n_problems) if p.kind != "endless"])
    paths: dict[int, list[Program]] = {}
    for program in tree:
        paths.setdefault(program.problem, []).append(program)
    warm_like_a_zygote(DEFAULT_PRELOAD, DEFAULT_WARMUP)
    rates, cpu_s = [], []
    for _ in range(REPEATS):
        t, cpu = time.perf_counter(), busy_cpu_s()
        run_all(list(paths.values()), workers)
        rates.append(len(tree) / (time.perf_counter() - t))
        cpu_s.append(busy_cpu_s() - cpu)
    forks = len(paths) + sum(p.kind != "ok" for p in tree)
    print(
        json.dumps(
            {
                "plain_per_s": sorted(rates)[len(rates) // 2],
                "plain_cpu_ms": cpu_ms_per_program(cpu_s, len(tree)),
                "plain_forks_per_program": forks / len(tree),
            }
        )
    )


if __name__ == "__main__":
    main()
