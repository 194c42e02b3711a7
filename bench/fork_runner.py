"""The least a server that runs each program in its own process pays: a
process forked per program from a parent warmed as our zygotes are, nothing
else (no seccomp, Landlock, rlimits or snapshots; whole strings; a wall-clock
alarm as the only limit). serve_bench.py puts it behind the same HTTP stack
as the sandbox: whatever it cannot reach on this machine, no executor that
isolates programs in processes can.

    python bench/fork_runner.py    # one fork server, spoken to on stdin/stdout
"""

from __future__ import annotations

import io
import math
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from baselines import BLAS_ONE_THREAD  # noqa: E402

from sandbox import Limits, Result, Status  # noqa: E402

HEADER = struct.Struct("<Id")  # payload bytes, wall-clock limit (s)


def _read_exact(f, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError
    return data


def _child(code: str, wall_s: float, out_fd: int) -> None:
    """In the forked process: run the program, send (stdout, stderr, error)."""
    signal.setitimer(signal.ITIMER_REAL, wall_s)
    out, err = io.StringIO(), io.StringIO()
    sys.stdout, sys.stderr = out, err
    error = None
    try:
        exec(compile(code, "<program>", "exec"), {"__name__": "__main__"})
    except BaseException as exc:  # noqa: B036 - a program's exit is its result
        traceback.print_exc(file=err)
        error = f"{type(exc).__name__}: {exc}"
    with os.fdopen(out_fd, "wb") as f:
        f.write(pickle.dumps(("error" if error else "ok", out.getvalue(), err.getvalue(), error)))
    os._exit(0)


def serve_forks() -> None:
    """A fork server: warmed like a zygote, then one child per program."""
    from step_floor import warm_like_a_zygote

    from sandbox._sandbox import DEFAULT_PRELOAD, DEFAULT_WARMUP

    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    warm_like_a_zygote(DEFAULT_PRELOAD, DEFAULT_WARMUP)
    answers.write(b"R")
    answers.flush()
    while True:
        try:
            size, wall_s = HEADER.unpack(_read_exact(requests, HEADER.size))
            code = _read_exact(requests, size).decode()
        except EOFError:
            return
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            _child(code, wall_s, w)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            reply = f.read()
        _, status = os.waitpid(pid, 0)
        if not reply:  # killed before it answered: the alarm, or a crash
            timed_out = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM
            reply = pickle.dumps(("timeout" if timed_out else "killed", "", "", "killed"))
        answers.write(struct.pack("<I", len(reply)) + reply)
        answers.flush()


def joined(program: str | list[str]) -> str:
    """A program as source: the baselines run steps as their joined text."""
    return program if isinstance(program, str) else "\n".join(program)


class Gather:
    """The results of one call's programs by index; `done(results)` once the
    last is in (at once if there are none), as Sandbox.submit answers."""

    def __init__(self, n: int, done: Callable[[list], None]):
        self.results: list[Result | None] = [None] * n
        self._left = n
        self._lock = threading.Lock()
        self._done = done
        if not n:
            done([])

    def put(self, i: int, result: Result) -> None:
        self.results[i] = result
        with self._lock:
            self._left -= 1
            if self._left:
                return
        self._done(self.results)


class ForkRunner:
    """`processes` fork servers; as Sandbox.submit, `done(results)` once every
    program of a call has ended."""

    def __init__(self, processes: int):
        self._todo: queue.Queue = queue.Queue()
        self._servers = []
        # One thread per numeric library, as a zygote has: the fork copies one thread.
        env = {**os.environ, **BLAS_ONE_THREAD}
        for _ in range(processes):
            proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
            self._servers.append(proc)
        for proc in self._servers:
            assert proc.stdout is not None
            if proc.stdout.read(1) != b"R":
                raise RuntimeError("a fork server did not start")
            threading.Thread(target=self._feed, args=(proc,), daemon=True).start()

    def _feed(self, proc: subprocess.Popen) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        while True:
            item = self._todo.get()
            if item is None:
                return
            code, wall_s, answer = item
            data = code.encode()
            proc.stdin.write(HEADER.pack(len(data), wall_s) + data)
            proc.stdin.flush()
            (size,) = struct.unpack("<I", _read_exact(proc.stdout, 4))
            kind, out, err, error = pickle.loads(_read_exact(proc.stdout, size))
            status = {"ok": Status.OK, "error": Status.ERROR, "timeout": Status.TIMEOUT}.get(kind, Status.KILLED)
            answer(Result(status, out, err, error, exit_code=0 if kind == "ok" else 1))

    def submit(self, programs, done: Callable, limits: Limits | None = None, release_prefixes: bool = True) -> None:
        wall_s = (limits or Limits()).wall_s
        wall_s = wall_s if wall_s and math.isfinite(wall_s) else 3600.0
        gather = Gather(len(programs), done)
        for i, program in enumerate(programs):
            self._todo.put((joined(program), wall_s, lambda result, i=i: gather.put(i, result)))

    def snapshot_stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        for _ in self._servers:
            self._todo.put(None)
        for proc in self._servers:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=30)


if __name__ == "__main__":
    serve_forks()
