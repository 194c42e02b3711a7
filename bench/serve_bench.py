"""`python -m sandbox serve` under load, in one run:

    python bench/serve_bench.py [--programs 300] [--clients 1 8 64] [--latency-requests 400]

1. the library: `Sandbox.run_batch` over the step workload's programs as
   strings, in one call (the "x library" column);
2. the service: C client threads, each sending its share of the same programs
   one by one through the real `sandbox-fusion` client: throughput, p50/p99
   latency, errors (transport errors and SandboxError answers; must be 0).
   The service cuts each string along the programs it ran before
   (sandbox/_lineage.py), so a node runs from its parent's snapshot;
3. the same server with `--whole-strings` (strings never cut), and two
   baselines behind the same HTTP stack: SandboxFusion-style, a persistent
   Python process pool (pebble) that execs each program, no isolation; and
   the fork floor (bench/fork_runner.py), a bare process forked per program
   from a parent warmed as a zygote, no isolation: what any executor that
   gives each program its own process pays at least;
4. `print(1)` latency at 8 clients on every server.

Bounded: every configuration runs the same fixed count of programs. Prints
the table and writes bench/results/serve.json (or --out).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)
from fork_runner import ForkRunner, Gather, joined  # noqa: E402
from report import save_report  # noqa: E402
from workload import make_workload, tree_order  # noqa: E402

from sandbox import Limits, Result, Sandbox, Status  # noqa: E402

# -- the baseline: a process pool that execs, behind our HTTP stack ------------------


def _exec(code: str) -> tuple[str, str, str | None]:
    import io
    import traceback
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            exec(code, {"__name__": "__main__"})
        return out.getvalue(), err.getvalue(), None
    except BaseException as exc:  # noqa: B036 - a program's exit is its result
        return out.getvalue(), err.getvalue() + traceback.format_exc(), f"{type(exc).__name__}: {exc}"


class PoolRunner:
    """SandboxFusion's Python path without its isolation: warm workers exec
    each program (state leaks between programs), a per-task timeout; each
    request's programs answered as soon as they end, as ours are."""

    def __init__(self, workers: int):
        from pebble import ProcessPool

        self.pool = ProcessPool(max_workers=workers)

    def submit(self, programs, done, limits: Limits | None = None, release_prefixes: bool = True) -> None:
        """As Sandbox.submit: `done(results)` once every program has ended."""
        from concurrent.futures import TimeoutError as FutureTimeout

        timeout = (limits or Limits()).wall_s
        gather = Gather(len(programs), done)

        def finished(i: int, future) -> None:
            try:
                out, err, error = future.result()
                result = Result(Status.ERROR if error else Status.OK, out, err, error, exit_code=1 if error else 0)
            except FutureTimeout:
                result = Result(Status.TIMEOUT, error="timeout")
            except Exception as exc:
                result = Result.sandbox_error(f"pool: {exc}")
            gather.put(i, result)

        for i, program in enumerate(programs):
            future = self.pool.schedule(_exec, args=(joined(program),), timeout=timeout)
            future.add_done_callback(lambda f, i=i: finished(i, f))

    def snapshot_stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        self.pool.stop()
        self.pool.join()


def serve_baseline(kind: str, port: int, workers: int) -> None:
    import uvicorn

    from sandbox.serve import ServeConfig, build_app

    # The fork floor gets as many processes at once as the sandbox runs (two slots per zygote).
    factory = (lambda: PoolRunner(workers)) if kind == POOL else (lambda: ForkRunner(2 * workers))
    app = build_app(ServeConfig(workers=workers), runner_factory=factory)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


WHOLE = "sandbox, whole strings"  # `serve --whole-strings`: run_code strings not cut
POOL = "pool baseline"
FORKS = "fork floor"

# -- load ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind: str, workers: int) -> tuple[subprocess.Popen, str]:
    import requests

    port = free_port()
    if kind.startswith("sandbox"):
        cmd = [sys.executable, "-m", "sandbox", "serve", "--port", str(port), "--workers", str(workers)]
        cmd += ["--whole-strings"] if kind == WHOLE else []
    else:
        cmd = [sys.executable, __file__, "--serve-baseline", kind, str(port), "--workers", str(workers)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health", timeout=1).json()["status"] == "ok":
                return proc, url
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the {kind} server did not come up")


def requests_health(url: str) -> dict:
    import requests

    return requests.get(url + "/health", timeout=10).json()


def run_clients(items: list, clients: int, send, size=lambda item: 1) -> dict:
    """Each client thread sends its share of `items` one request at a time;
    `send(item)` says whether the answer was right (an exception counts as
    an error, never hidden). Throughput in programs (`size` per item), p50
    and p99 latency per request, errors."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client(share: list) -> None:
        for item in share:
            t0 = time.perf_counter()
            try:
                ok = send(item)
            except Exception:
                ok = False
            with lock:
                errors[0] += not ok
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(items[i::clients],)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    n = sum(size(item) for item in items)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {
        "clients": clients,
        "programs": n,
        "per_s": n / wall,
        "p50_ms": q[49] * 1e3,
        "p99_ms": q[98] * 1e3,
        "errors": errors[0],
    }


def load(url: str, programs: list[str], clients: int) -> dict:
    """The real `sandbox-fusion` client, one program per request; a transport
    error or a SandboxError answer raises, so it counts as an error."""
    from sandbox_fusion import RunCodeRequest, run_code

    def send(code: str) -> bool:
        run_code(RunCodeRequest(code=code, language="python", run_timeout=5), endpoint=url, max_attempts=1)
        return True

    return run_clients(programs, clients, send)


def load_batches(url: str, calls: list[list], clients: int) -> dict:
    """Our own `/run_batch`, one call (the programs of one search expansion)
    per request, a kept-alive session per client thread."""
    import requests

    sessions = threading.local()

    def send(call: list) -> bool:
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
        body = {"programs": call, "limits": {"wall_s": 5, "cpu_s": 5}}
        reply = sessions.session.post(url + "/run_batch", json=body)
        return reply.status_code == 200 and len(reply.json()["results"]) == len(call)

    return run_clients(calls, clients, send, size=len)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=300)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--latency-requests", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--serve-baseline", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "serve.json"))
    args = parser.parse_args(argv)
    if args.serve_baseline:
        kind, port = args.serve_baseline
        serve_baseline(kind, int(port), args.workers)
        return {}
    # The programs that end: a never-ending one would make every column read its timeout.
    workload = [p for p in tree_order(make_workload(n_problems=60, seed=5)) if p.kind != "endless"]
    programs = [p.source for p in workload][: args.programs]

    with Sandbox(workers=args.workers) as sb:
        sb.run_batch(programs[:20])  # warm
        t0 = time.perf_counter()
        sb.run_batch(programs, Limits(wall_s=5.0, cpu_s=5.0))
        library = len(programs) / (time.perf_counter() - t0)
    print(f"library: {library:.0f} programs/s")

    rows = []
    snapshots: dict = {}
    for kind in ("sandbox", WHOLE, POOL, FORKS):
        proc, url = start(kind, args.workers)
        try:
            load(url, ["# warm-up\n" + p for p in programs[:20]], 4)
            for clients in args.clients:
                # Each row's programs are new to the server (a search runs a node once).
                row = {"server": kind, **load(url, [f"# {clients} clients\n{p}" for p in programs], clients)}
                rows.append(row)
                print(
                    f"{kind:>13} {clients:>3} clients: {row['per_s']:.0f} programs/s, p50 {row['p50_ms']:.1f} ms, "
                    f"p99 {row['p99_ms']:.1f} ms, errors {row['errors']}",
                    flush=True,
                )
            if kind == "sandbox":  # run_code strings are cut along the programs before them (sandbox/_lineage.py)
                snapshots = requests_health(url)["snapshots"]
                print(f"{kind:>13} live snapshots after the string rows: {snapshots['live']:.0f}", flush=True)
            if kind == WHOLE:
                continue  # the rows below are the same server's
            # The step form through /run_batch: calls of 12 in tree order, the
            # sandbox given steps, the pool their joined source.
            steps = [list(p.steps) if kind.startswith("sandbox") else p.source for p in workload[: args.programs]]
            calls = [steps[i : i + 12] for i in range(0, len(steps), 12)]
            batch = {"server": kind, "workload": "/run_batch, calls of 12", **load_batches(url, calls, 8)}
            rows.append(batch)
            print(f"{kind:>13} /run_batch calls of 12, 8 clients: {batch['per_s']:.0f} programs/s", flush=True)
            tiny = {"server": kind, "workload": "print(1)", **load(url, ["print(1)"] * args.latency_requests, 8)}
            rows.append(tiny)
            print(f"{kind:>13} print(1), 8 clients: p50 {tiny['p50_ms']:.1f} ms, p99 {tiny['p99_ms']:.1f} ms")
        finally:
            proc.terminate()
            proc.wait(timeout=60)

    print("\n| server | clients | programs/s | x library | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|")
    for r in rows:
        label = f"{r['clients']}" + (f" ({r['workload']})" if r.get("workload") else "")
        print(
            f"| {r['server']} | {label} | {r['per_s']:.0f} | {r['per_s'] / library:.2f} | {r['p50_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['errors']} |"
        )
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "args": {**vars(args), "out": None},
        "library_per_s": library,
        "snapshots_after_strings": snapshots,
        "rows": rows,
    }
    save_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
