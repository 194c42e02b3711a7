"""ToRA's own `PythonExecutor` (microsoft/ToRA, `src/utils/python_executor.py`),
imported from a checkout the user names, never vendored.

    git clone https://github.com/microsoft/ToRA    # then: --tora ToRA

Run as a harness runs it: in a process that has imported sympy and numpy
(ToRA's grader imports sympy, so its pebble workers fork with them loaded),
`get_answer_from_stdout=True`, one `batch_apply` per call. ToRA sizes its pool
with `os.cpu_count()`; to measure 1 worker the module's `os` is given a view
whose `cpu_count` says so. Its dependencies: pebble, regex, multiprocess,
timeout-decorator, python-dateutil, tqdm (the `bench` extra).
"""

from __future__ import annotations

import importlib.util
import io
import os
import sys
import types
from contextlib import redirect_stderr
from pathlib import Path

import numpy  # noqa: F401  # the harness's process has them loaded (see above)
import sympy  # noqa: F401
from baselines import BLAS_ONE_THREAD


def load_module(path: str) -> types.ModuleType:
    """`python_executor` from a ToRA checkout (its root or the file itself)."""
    candidate = Path(path)
    if candidate.is_dir():
        candidate = candidate / "src" / "utils" / "python_executor.py"
    if not candidate.is_file():
        raise SystemExit(f"--tora: no ToRA python_executor.py at {path} (pass the checkout or the file)")
    spec = importlib.util.spec_from_file_location("tora_python_executor", candidate)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pebble pickles its task function by module name
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise SystemExit(f"--tora: ToRA's executor needs {exc.name}: pip install -e '.[bench]'") from exc
    return module


class _OsView(types.ModuleType):
    """`os` as ToRA's module sees it, with the worker count we measure."""

    def __init__(self, workers: int):
        super().__init__("os")
        self._workers = workers

    def __getattr__(self, name: str):
        return getattr(os, name)

    def cpu_count(self) -> int:
        return self._workers


class ToraExecutor:
    name = "ToRA PythonExecutor"

    def __init__(self, path: str, workers: int, timeout_s: float = 5.0):
        os.environ.update(BLAS_ONE_THREAD)
        self.module = load_module(path)
        self.module.os = _OsView(workers)
        # Its constructor also starts a multiprocess Pool it never uses; a
        # harness pays for it once, and so do we.
        self.executor = self.module.PythonExecutor(get_answer_from_stdout=True, timeout_length=int(timeout_s))

    def run_batch(self, programs: list[str]) -> list[str]:
        with redirect_stderr(io.StringIO()):  # its tqdm bar past 100 programs
            results = self.executor.batch_apply(programs)
        return [_status(report) for _, report in results]

    def close(self) -> None:
        self.executor.pool.terminate()
        self.executor.pool.join()


def _status(report: str) -> str:
    if report == "Done":
        return "ok"
    return "timeout" if "Timeout" in report else "error"


if __name__ == "__main__":  # a quick look: python bench/tora.py PATH
    ex = ToraExecutor(sys.argv[1], workers=2)
    print(ex.run_batch(["print(1)", "1/0", "import sympy; print(sympy.solve('x**2-4'))"]))
    ex.close()
