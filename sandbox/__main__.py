"""`python -m sandbox check | run FILE | policy | bench | serve`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

from sandbox import Limits, Sandbox, Status, _core, _isolation

SELF_TEST = [
    ("arithmetic", "print(2 ** 100)", Status.OK),
    ("sympy", "import sympy as sp; x = sp.Symbol('x'); print(sp.solve(x**2 - 4, x))", Status.OK),
    ("exception", "1 / 0", Status.ERROR),
    ("write a file", "open('/tmp/sandbox-check', 'w')", Status.ERROR),
    ("open a socket", "import socket; socket.socket()", Status.ERROR),
    ("fork", "import os; os.fork()", Status.ERROR),
    ("execve", "import os; os.execv('/bin/true', ['true'])", Status.KILLED),
    ("signal init", "import os; os.kill(1, 9)", Status.ERROR),
    ("crash itself", "import faulthandler; faulthandler._sigsegv()", Status.KILLED),
    ("read a secret", "import os; assert 'SANDBOX_CHECK_SECRET' not in os.environ", Status.OK),
    ("endless loop", "while True: pass", Status.TIMEOUT),
    ("output flood", "print('x' * 10**6)", Status.OUTPUT_LIMIT),
    ("memory", "b = bytearray(8 * 2**30)", Status.MEMORY),
]


def check() -> int:
    iso = _isolation.decide()
    print("protections of each child on this kernel and user:")
    print(
        f"  seccomp filter      : {'on' if iso.seccomp else 'off'} "
        f"({len(_core.policy_table())} syscall rules, default EPERM)"
    )
    if iso.landlock_abi:
        print(
            f"  Landlock            : on, ABI {iso.landlock_abi} (read-only access to "
            f"{len(iso.landlock_paths)} paths, no writes"
            f"{', signals scoped' if iso.landlock_abi >= 6 else ''})"
        )
    else:
        print("  Landlock            : not available: file reads are NOT limited (writes still fail through seccomp)")
    if iso.drop_uid >= 0:
        extra = (
            " keeping CAP_DAC_READ_SEARCH because the interpreter is not readable by "
            "that user; Landlock confines those reads"
            if iso.keep_dac_read
            else ""
        )
        print(f"  privilege drop      : uid/gid {iso.drop_uid}/{iso.drop_gid}{extra}")
    else:
        print(f"  privilege drop      : not needed (running as uid {os.geteuid()})")
    print("  rlimits             : CPU, address space, file size 0, 64 open files, no core dumps")
    print("  no_new_privs, own process group, killed with the zygote (PDEATHSIG)")
    print("  signals             : to itself only (as plain Python); any other process: EPERM")
    print("  environment         : minimal (PATH, locale, one thread per numeric library); none of the caller's")
    unsupported = _core.snapshot_support() if iso.seccomp else "seccomp is off"
    if unsupported:
        print(
            f"  prefix snapshots    : NOT available ({unsupported}): programs of steps run from scratch in fresh forks"
        )
    else:
        print(
            "  prefix snapshots    : on (seccomp user notification: process creation goes "
            "to the zygote, which forks only what it asked for)"
        )
    print("\nself-test:")
    failures = 0
    os.environ["SANDBOX_CHECK_SECRET"] = "set in the caller"  # must not reach programs
    with Sandbox(workers=1, limits=Limits(wall_s=2.0, cpu_s=2.0, memory_mb=512)) as sb:
        results = sb.run_batch([code for _, code, _ in SELF_TEST])
        prefix = ["n = 6\nprint(n)"]
        # A child forked from the snapshot, then the last program of the batch
        # for that prefix, which runs in the snapshot's own process.
        fork = "import os\nos.fork()"
        from_snapshot = [] if unsupported else sb.run_batch([prefix, prefix + [fork], prefix + [fork]])[1:]
    for (name, _, expected), r in zip(SELF_TEST, results):
        ok = r.status is expected
        failures += not ok
        detail = "" if ok else f"  (expected {expected.value}; {r.error})"
        print(f"  {'ok  ' if ok else 'FAIL'} {name:<14} -> {r.status.value}{detail}")
    for name, r in zip(("fork, forked", "fork, in place"), from_snapshot):
        ok = r.snapshot_steps == 1 and r.status is Status.ERROR
        failures += not ok
        print(
            f"  {'ok  ' if ok else 'FAIL'} {name:<14} -> {r.status.value}, {r.snapshot_steps} step(s) from a snapshot"
        )
    print("\nall protections behave as expected" if not failures else f"\n{failures} check(s) failed")
    return 1 if failures else 0


def run(path: str, limits: Limits) -> int:
    try:
        with open(path, encoding="utf-8") as f:
            code = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"sandbox: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    with Sandbox(workers=1, limits=limits) as sb:
        result = sb.run(code)
    print(json.dumps(asdict(result), indent=2, default=str))
    return 0 if result.ok else 1


def bench(argv: list[str]) -> int:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(here, "bench", "sandbox_bench.py")
    if not os.path.exists(script):
        print("sandbox: the benchmark ships with the source tree (bench/sandbox_bench.py)", file=sys.stderr)
        return 2
    sys.path.insert(0, os.path.dirname(script))
    import sandbox_bench

    sandbox_bench.main(argv)
    return 0


def serve_command(args: argparse.Namespace) -> int:
    from sandbox.serve import ServeConfig, read_token, serve

    try:
        limits = Limits(wall_s=args.max_wall_s, cpu_s=args.max_wall_s, memory_mb=args.memory_mb)
        config = ServeConfig(
            workers=args.workers,
            limits=limits,
            token=read_token(args.token_file),
            max_in_flight=args.max_in_flight,
            cut_strings=not args.whole_strings,
        )
        serve(args.host, args.port, config)
    except (OSError, ValueError) as exc:
        print(f"sandbox serve: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="show the active protections and run a self-test")
    run_p = sub.add_parser("run", help="run one file and print its result as JSON")
    run_p.add_argument("file")
    run_p.add_argument("--wall-s", type=float, default=Limits().wall_s)
    run_p.add_argument("--cpu-s", type=float, default=Limits().cpu_s)
    run_p.add_argument("--memory-mb", type=int, default=Limits().memory_mb)
    run_p.add_argument("--output-bytes", type=int, default=Limits().output_bytes)
    policy_p = sub.add_parser("policy", help="print the seccomp policy for review")
    policy_p.add_argument(
        "--variant",
        choices=("plain", "threads", "notify"),
        default="plain",
        help="threads: threads allowed; notify: process creation goes "
        "to the zygote (programs of steps, prefix snapshots)",
    )
    sub.add_parser("bench", help="run the benchmark (bench/sandbox_bench.py)", add_help=False)
    serve_p = sub.add_parser("serve", help="serve SandboxFusion's run_code API (and a batch API) over HTTP")
    serve_p.add_argument("--host", default="127.0.0.1", help="loopback unless told otherwise")
    serve_p.add_argument("--port", type=int, default=8080)
    serve_p.add_argument("--workers", type=int, default=2, help="zygotes")
    serve_p.add_argument("--token-file", help="a file holding the bearer token (required off loopback)")
    serve_p.add_argument("--max-wall-s", type=float, default=10.0, help="the most a request may ask for")
    serve_p.add_argument("--memory-mb", type=int, default=Limits().memory_mb)
    serve_p.add_argument("--max-in-flight", type=int, default=4096, help="programs; past it: 429")
    serve_p.add_argument(
        "--whole-strings",
        action="store_true",
        help="run every run_code string whole (by default a string that extends a program run before is cut "
        "along it and runs from its snapshot; results are the same either way)",
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "serve":
        return serve_command(args)
    if args.command == "check":
        return check()
    if args.command == "run":
        return run(args.file, Limits(args.wall_s, args.cpu_s, args.memory_mb, args.output_bytes))
    if args.command == "policy":
        print(_core.policy_dump(args.variant))
        return 0
    return bench(rest)


if __name__ == "__main__":
    sys.exit(main())
