"""The zygote: a fresh interpreter that pre-imports the math stack once and
then forks one isolated child per program (see csrc/supervise.c).

Started by sandbox._worker as ``python -I -c ... CONFIG_JSON`` with the
protocol on its stdin/stdout. Never imported by the caller's process.
"""
from __future__ import annotations

import builtins
import gc
import importlib
import io
import json
import os
import resource
import struct
import sys
import time
import traceback
import types

from sandbox import _core
from sandbox._protocol import encode_ready

REPORT_FD = 3  # csrc/child.h SBX_CHILD_REPORT_FD
# csrc/protocol.h struct sbx_trailer: magic, exit code, CPU seconds, peak RSS (KiB)
TRAILER = struct.Struct("<Iidq")
TRAILER_MAGIC = 0x44584253


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
    main = types.ModuleType("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    sys.argv = ["<program>"]
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False),
                                  encoding="utf-8", errors="backslashreplace")
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False),
                                  encoding="utf-8", errors="backslashreplace")
    return main


def run_program(main: types.ModuleType, code: bytes) -> None:
    """In a child: run the program in its fresh __main__ and exit without finalizers."""
    status, report = 0, b""
    try:
        exec(compile(code, "<program>", "exec"), main.__dict__)
    except SystemExit as exc:
        status, report = _exit_status(exc)
    except MemoryError as exc:
        main.__dict__.clear()  # free what the program held before reporting
        status, report = 1, b"M" + _error_line(exc).encode()
        _print_traceback(exc)
    except BaseException as exc:  # noqa: BLE001 - every failure is the program's result
        status, report = 1, b"E" + _error_line(exc).encode("utf-8", "backslashreplace")
        _print_traceback(exc)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # the program closed or broke its own stream
    usage = resource.getrusage(resource.RUSAGE_SELF)
    trailer = TRAILER.pack(TRAILER_MAGIC, status, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
    # Closing the pipes before exiting lets the zygote answer while the kernel
    # still tears this process down (~3 ms here).
    try:
        os.write(REPORT_FD, report[:4000] + trailer)
    except OSError:
        pass
    os.closerange(0, REPORT_FD + 1)
    os._exit(status)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    in_fd, out_fd = os.dup(0), os.dup(1)
    # Keep stray prints of preloaded modules off the protocol pipe.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    started = time.perf_counter()
    failures = []
    for name in cfg["preload"]:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            failures.append(f"import {name}: {_error_line(exc)}")
    if cfg["warmup"]:
        try:
            exec(compile(cfg["warmup"], "<warmup>", "exec"), {"__name__": "__warmup__"})
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            failures.append(f"warm-up: {_error_line(exc)}")
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
    }
    is_spare = _core.serve(
        in_fd,
        out_fd,
        seccomp=cfg["seccomp"],
        landlock_paths=cfg["landlock_paths"],
        drop_uid=cfg["drop_uid"],
        drop_gid=cfg["drop_gid"],
        keep_dac_read=cfg["keep_dac_read"],
        base_address_space=_address_space_bytes(),
        max_running=cfg["slots"],
        demote_after_s=cfg["demote_after_s"],
        nofile=cfg["nofile"],
        on_ready=lambda: os.write(out_fd, encode_ready(info)),
    )
    if not is_spare:
        os._exit(0)
    main_module = make_ready()
    run_program(main_module, _core.receive())


if __name__ == "__main__":
    main()
