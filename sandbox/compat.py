"""A drop-in for the `PythonExecutor` of ToRA's evaluation harness (and the
harnesses that copy it, Qwen2.5-Math's among them), backed by the sandbox:

    # from python_executor import PythonExecutor
    from sandbox.compat import PythonExecutor

    executor = PythonExecutor(get_answer_from_stdout=True)
    result, report = executor.apply("print(6 * 7)")        # ("42", "Done")
    PythonExecutor().batch_apply(["x = 1\\nx + 1", "1 / 0"])  # the last line is the answer
    # [("2", "Done"), ("", "ZeroDivisionError: division by zero")]

Same constructor, same `(result, report)` pairs: the answer read from stdout,
from a variable (`get_answer_symbol`), from an expression
(`get_answer_expr`) or, by default, from the program's last line evaluated
as an expression; `"Done"`, the exception's last traceback line, or
`"Timeout Error"`; both stripped and cut to 400 characters in the middle.

Where results differ from the original, on purpose: every program runs in its
own isolated process (the original `exec`s in pool workers), so a program
that writes files, opens sockets or starts processes gets the sandbox's
refusal (`PermissionError: ...`) where the original would let it; a program
whose output passes the sandbox's cap (64 KiB by default) reports
`"Output Limit Exceeded"`; a crash reports `"Killed: ..."`; `sys.exit(0)`
reports `"SystemExit"` (the original: `"SystemExit: 0"`). Custom runtimes
are supported when they only add header code (`HEADERS`); objects in a
runtime's `GLOBAL_DICT` cannot cross into the sandbox and are refused.
"""

from __future__ import annotations

import re
from typing import Any

from sandbox._sandbox import Sandbox
from sandbox._types import Limits, Result, Status

MARK = "\x1e@answer@\x1e"  # separates the program's own stdout from the answer we print
# The original refuses code it is about to exec that matches these (as written there).
REFUSED = (re.compile(r"(\s|^)?input\("), re.compile(r"(\s|^)?os.system\("))


class PythonExecutor:
    """See the module's docstring. `sandbox` lets several executors share one
    `Sandbox`; by default each makes its own (2 workers) on first use."""

    def __init__(
        self,
        runtime: Any | None = None,
        get_answer_symbol: str | None = None,
        get_answer_expr: str | None = None,
        get_answer_from_stdout: bool = False,
        timeout_length: int = 5,
        sandbox: Sandbox | None = None,
    ) -> None:
        if runtime is not None and getattr(runtime, "GLOBAL_DICT", None):
            raise ValueError("runtimes with GLOBAL_DICT objects cannot run in the sandbox; use HEADERS code")
        self.headers = list(getattr(runtime, "HEADERS", None) or [])
        self.answer_symbol = get_answer_symbol
        self.answer_expr = get_answer_expr
        self.get_answer_from_stdout = get_answer_from_stdout
        self.timeout_length = timeout_length
        self._sandbox = sandbox
        self._own = sandbox is None

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox(workers=2)
        return self._sandbox

    def close(self) -> None:
        if self._own and self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None

    def apply(self, code: str) -> tuple[str, str]:
        return self.batch_apply([code])[0]

    @staticmethod
    def truncate(s: str, max_length: int = 400) -> str:
        half = max_length // 2
        return s[:half] + "..." + s[-half:] if len(s) > max_length else s

    def batch_apply(self, batch_code: list[str]) -> list[tuple[str, str]]:
        limits = Limits(wall_s=float(self.timeout_length), cpu_s=float(self.timeout_length))
        runnable = [i for i, code in enumerate(batch_code) if not self._refused(code)]
        results = self.sandbox.run_batch([self.program(batch_code[i]) for i in runnable], limits)
        out = [("", "RuntimeError")] * len(batch_code)  # what the original raises for input( / os.system(
        for i, r in zip(runnable, results):
            out[i] = self._answer(r)
        return [(self.truncate(str(res).strip()), self.truncate(str(rep).strip())) for res, rep in out]

    def _refused(self, code: str) -> bool:
        """The original's check, on what it execs: all of the code, or all but
        the last line when that line is evaluated as the answer."""
        default = not (self.get_answer_from_stdout or self.answer_symbol or self.answer_expr)
        executed = "\n".join(code.split("\n")[:-1]) if default else code
        return any(p.search(executed) for p in REFUSED)

    def program(self, code: str) -> str:
        """The program the sandbox runs for `code`: the headers, the code, then
        the answer as the original reads it, printed after a mark."""
        lines = code.split("\n")
        body = "\n".join([*self.headers, code])
        if self.get_answer_from_stdout:
            return f"{body}\nprint({MARK!r}, end='')"
        if self.answer_symbol:
            answer = f"globals()[{self.answer_symbol!r}]"
        elif self.answer_expr:
            answer = f"eval({self.answer_expr!r})"
        else:  # the last line is the answer's expression
            body = "\n".join([*self.headers, *lines[:-1]])
            answer = f"eval({lines[-1]!r})"
        return (
            f"{body}\n"
            f"__answer = {answer}\n"
            "str(__answer)\n"
            "import pickle as __pickle\n"
            "__pickle.dumps(__answer)  # the original's serialisation check\n"
            f"print({MARK!r} + str(__answer), end='')"
        )

    def _answer(self, r: Result) -> tuple[str, str]:
        if r.status is Status.OK:
            own, mark, answer = r.stdout.rpartition(MARK)
            if not mark:  # it left early with exit status 0
                return "", "SystemExit"
            return (own if self.get_answer_from_stdout else answer), "Done"
        if r.status is Status.TIMEOUT:
            return "", "Timeout Error"
        if r.status is Status.OUTPUT_LIMIT:
            return "", "Output Limit Exceeded"
        if r.status is Status.KILLED:
            return "", f"Killed: {r.error}"
        if r.status is Status.MEMORY:
            return "", r.error or "MemoryError"
        return "", r.error or ""
