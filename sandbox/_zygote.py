"""The zygote: a fresh interpreter that pre-imports the math stack once and
then forks one isolated child per program (see csrc/supervise.c).

Started by sandbox._worker as ``python -s -c ... CONFIG_JSON`` with the
protocol on its stdin/stdout. Never imported by the caller's process.
"""

from __future__ import annotations

import ast
import builtins
import gc
import importlib
import io
import os
import resource
import struct
import sys
import time
import traceback
import types
import warnings
from typing import Any, NoReturn

from sandbox import _core
from sandbox._protocol import encode_ready
from sandbox._zygote_config import ZygoteConfig

FILENAME = "<program>"


def _address_space_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _error_line(exc: BaseException) -> str:
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def _print_traceback(exc: BaseException) -> None:
    """The traceback as `python program.py` prints it: without this module's frame."""
    tb = exc.__traceback__.tb_next if exc.__traceback__ else None
    traceback.print_exception(type(exc), exc, tb)


def _exit_status(exc: SystemExit) -> tuple[int, bytes]:
    code = exc.code
    if code is None or code == 0:
        return 0, b""
    if isinstance(code, int):
        return code & 0xFF or 1, b"E" + f"SystemExit: {code}".encode()
    print(code, file=sys.stderr)
    return 1, b"E" + f"SystemExit: {code}".encode("utf-8", "backslashreplace")


def make_ready() -> types.ModuleType:
    """In a spare, before its program exists: a fresh __main__ and output
    streams, and one throwaway compile/exec/print, so that the copy-on-write
    faults they cause are paid while the spare waits, not while a caller does."""
    exec(compile("print(end='', file=_sink)", "<ready>", "exec"), {"_sink": io.StringIO()})
    Steps.start_filters = tuple(warnings.filters)
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = main
    sys.argv = ["<program>"]
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="backslashreplace")
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace")
    return main


PAGE_KB = resource.getpagesize() // 1024


def _usage() -> tuple[float, int, int]:
    """CPU seconds, peak RSS (KiB), and the KiB this process made its own since
    it was forked (one minor fault per page it wrote or first touched)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss, usage.ru_minflt * PAGE_KB


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # the program closed or broke its own stream


def _exec(main: types.ModuleType, code: types.CodeType | bytes) -> tuple[int, bytes] | None:
    """Run compiled code (or compile source first) in __main__; None if it
    ended normally, else the program's exit status and report."""
    try:
        if not isinstance(code, types.CodeType):
            code = compile(code, FILENAME, "exec", dont_inherit=True)
        exec(code, main.__dict__)
    except SystemExit as exc:
        return _exit_status(exc)
    except MemoryError as exc:
        main.__dict__.clear()  # free what the program held before reporting
        _print_traceback(exc)
        return 1, b"M" + _error_line(exc).encode()
    except BaseException as exc:
        _print_traceback(exc)
        return 1, b"E" + _error_line(exc).encode("utf-8", "backslashreplace")
    return None


def _finish(status: int, report: bytes, flags: int = 0) -> _core.Job | None:
    """Tell the zygote the program ended; returns only in a child forked from
    this process once it is a snapshot, with that child's job."""
    _flush()
    return _core.finish(status, flags, *_usage(), report[:4000])


class Steps:
    """The steps of one path, run one by one so that the zygote can keep the
    state after each as a snapshot. Lines are numbered as in the whole
    program, so tracebacks read the same as from scratch."""

    lines_done = 0  # lines of the program before the next step to run
    # The warning filters before the program ran: the joined program is
    # compiled under them, before any step could change them.
    start_filters: tuple[Any, ...] = ()

    @staticmethod
    def split(payload: bytes, n_steps: int) -> list[bytes]:
        steps, pos = [], 0
        for _ in range(n_steps):
            (size,) = struct.unpack_from("<I", payload, pos)
            steps.append(payload[pos + 4 : pos + 4 + size])
            pos += 4 + size
        return steps

    @classmethod
    def compile(cls, steps: list[bytes], first_step: int) -> list[types.CodeType] | None:
        """Each step compiled alone, or None if running them one by one could
        differ from running the joined program: a step that does not parse
        alone, a __future__ import, or a warning at compile time (the joined
        program prints it before anything runs, or not at all if a later step
        does not parse)."""
        codes, line = [], cls.lines_done
        with warnings.catch_warnings(record=True) as caught:
            warnings.filters[:] = cls.start_filters  # type: ignore[index]  # a list at run time
            for i, src in enumerate(steps):
                try:
                    code = _compile_step(b"\n" * line + src, later=first_step + i > 0)
                except (SyntaxError, ValueError):  # also a warning the filters made an error
                    return None
                if code is None:
                    return None
                codes.append(code)
                line += src.count(b"\n") + 1
        return None if caught else codes


def _compile_step(src: bytes, later: bool) -> types.CodeType | None:
    """One step as it runs inside the joined program; None if it cannot (a
    __future__ import). Straight from source when the text shows nothing to
    look at (the AST round trip costs as much as the compile again)."""
    if b"__future__" not in src:
        code = compile(src, FILENAME, "exec", dont_inherit=True)
        if not (later and "__doc__" in code.co_names):
            return code
    tree = ast.parse(src, FILENAME)
    body = tree.body
    if any(isinstance(s, ast.ImportFrom) and s.module == "__future__" for s in body):
        return None
    if (
        later
        and body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        # Alone, a leading string would become the module's __doc__.
        body.insert(0, ast.copy_location(ast.Pass(), body[0]))
    return compile(tree, FILENAME, "exec", dont_inherit=True)


WARM_RUNS = 32  # well past the executions after which 3.11 specialises a code object
WARM_STEPS = (b"# a step\nx = [i * 2 for i in range(3)]\nprint(x, end='')", b"y = x[0] + 1", b"undefined_name + 1")


def warm_runner() -> None:
    """In the zygote: take the path of a child's job (steps split, compiled,
    run, an error reported) until the interpreter has specialised its code,
    so that each child inherits that instead of specialising (and so copying)
    the runner's code objects again."""
    payload = b"".join(struct.pack("<I", len(step)) + step for step in WARM_STEPS)
    main = types.ModuleType("__warm__")
    sink = io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = sink
    try:
        for _ in range(WARM_RUNS):
            steps = Steps.split(payload, len(WARM_STEPS))
            codes = Steps.compile(steps, 0) or []
            for code in codes:
                _exec(main, code)
            _usage()
            _flush()
            sink.seek(0)
            sink.truncate()
    finally:
        sys.stdout, sys.stderr = saved


def run_job(main: types.ModuleType, job: _core.Job | None) -> NoReturn:
    """In a child: run its job, and the jobs of the children forked from it
    when it is kept as a snapshot. Never returns: the core ends the process
    when no job is left."""
    while job is not None:
        payload, n_steps, first_step, Steps.lines_done = job
        if not n_steps:  # one program
            status, report = _exec(main, payload) or (0, b"")
            job = _finish(status, report)
            continue
        steps = Steps.split(payload, n_steps)
        codes = Steps.compile(steps, first_step)
        if codes is None:
            if first_step:  # a snapshot ran part of it: the zygote reruns it whole
                job = _finish(1, b"", _core.END_UNSPLIT)
                continue
            status, report = _exec(main, b"\n".join(steps)) or (0, b"")
            job = _finish(status, report)
            continue
        job = _run_steps(main, steps, codes)
    os._exit(0)


def _run_steps(main: types.ModuleType, steps: list[bytes], codes: list[types.CodeType]) -> _core.Job | None:
    """Run the steps; returns the next job when this process continues as a
    child forked from a snapshot of them."""
    for i, code in enumerate(codes):
        ended = _exec(main, code)
        if ended:
            return _finish(*ended)
        Steps.lines_done += steps[i].count(b"\n") + 1
        if i + 1 < len(codes):
            _flush()
            job = _core.step_done(*_usage())
            if job is not None:
                return job
    return _finish(0, b"", _core.END_CLEAN)


def main() -> None:
    cfg = ZygoteConfig.from_json(sys.argv[1])
    for key in cfg.startup_only_env:  # the loader has read it; programs must not
        if key not in cfg.env:
            os.environ.pop(key, None)
    # Each live snapshot holds three descriptors here.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536) if hard > 0 else 65536, hard))
    in_fd, out_fd = os.dup(0), os.dup(1)
    # Keep stray prints of preloaded modules off the protocol pipe.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    started = time.perf_counter()
    _core.lay_out_heap()
    failures = []
    for name in cfg.preload:
        try:
            importlib.import_module(name)
        except Exception as exc:
            failures.append(f"import {name}: {_error_line(exc)}")
    if cfg.warmup:
        try:
            exec(compile(cfg.warmup, "<warmup>", "exec"), {"__name__": "__warmup__"})
        except Exception as exc:
            failures.append(f"warm-up: {_error_line(exc)}")
    warm_runner()
    # Children must not touch (and so copy) the pre-warmed heap when they collect.
    gc.collect()
    gc.freeze()
    huge_bytes = _core.collapse_heap()
    info = {
        "pid": os.getpid(),
        "warmup_s": time.perf_counter() - started,
        "rss_mb": _rss_mb(),
        "huge_pages_mb": huge_bytes / 2**20,
        "failures": failures,
        "snapshots": cfg.seccomp and cfg.max_snapshots > 0 and _core.snapshot_support() is None,
    }
    is_spare = _core.serve(
        in_fd,
        out_fd,
        seccomp=cfg.seccomp,
        landlock_paths=cfg.landlock_paths,
        drop_uid=cfg.drop_uid,
        drop_gid=cfg.drop_gid,
        keep_dac_read=cfg.keep_dac_read,
        base_address_space=_address_space_bytes(),
        max_running=cfg.slots,
        demote_after_s=cfg.demote_after_s,
        nofile=cfg.nofile,
        max_snapshots=cfg.max_snapshots,
        max_snapshot_bytes=cfg.snapshot_memory_mb * 2**20,
        on_ready=lambda: os.write(out_fd, encode_ready(info)),
    )
    if not is_spare:
        os._exit(0)
    main_module = make_ready()
    run_job(main_module, _core.receive())


if __name__ == "__main__":
    main()
