"""The executors we compare against, implemented here for the benchmark.

- `SubprocessExecutor`: one `python -c CODE` per program.
- `PebbleExecutor`: the ToRA / Qwen2.5-Math `PythonExecutor` design, a pebble
  ProcessPool created per call whose workers exec each program with a
  per-task timeout. Its workers keep state (sympy caches, globals of modules)
  across programs: fast, and a leak. It differs from ToRA's own class
  (bench/tora.py, measured with --tora) in: programs exec'd in a fresh
  `__main__` dict rather than a copy of a runtime's globals, no SIGALRM timer
  around each exec (pebble's per-task timeout alone), no result pickling check
  and no idle `multiprocess.Pool` started with it.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import redirect_stdout

from pebble import ProcessPool

BLAS_ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _exec_in_pool(code: str) -> tuple[str, str | None]:
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            exec(code, {"__name__": "__main__"})
        return out.getvalue(), None
    except Exception as exc:
        return out.getvalue(), f"{type(exc).__name__}: {exc}"


class PebbleExecutor:
    name = "pebble pool per call"

    def __init__(self, workers: int, timeout_s: float = 5.0):
        self.workers = workers
        self.timeout_s = timeout_s
        os.environ.update(BLAS_ONE_THREAD)

    def run_batch(self, programs: list[str]) -> list[str]:
        statuses = []
        with ProcessPool(max_workers=self.workers) as pool:
            future = pool.map(_exec_in_pool, programs, timeout=self.timeout_s)
            iterator = future.result()
            while True:
                try:
                    _, error = next(iterator)
                    statuses.append("error" if error else "ok")
                except StopIteration:
                    break
                except FutureTimeout:
                    statuses.append("timeout")
                except Exception:
                    statuses.append("error")
        return statuses

    def close(self) -> None:
        pass


class SubprocessExecutor:
    name = "subprocess per program"

    def __init__(self, workers: int, timeout_s: float = 5.0):
        self.timeout_s = timeout_s
        self.pool = ThreadPoolExecutor(workers)
        self.env = {**os.environ, **BLAS_ONE_THREAD}

    def _run(self, code: str) -> str:
        try:
            proc = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, timeout=self.timeout_s, env=self.env
            )
        except subprocess.TimeoutExpired:
            return "timeout"
        return "ok" if proc.returncode == 0 else "error"

    def run_batch(self, programs: list[str]) -> list[str]:
        return list(self.pool.map(self._run, programs))

    def close(self) -> None:
        self.pool.shutdown()
