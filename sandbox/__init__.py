"""Run untrusted Python programs fast, each in a fresh fork of a pre-warmed,
kernel-isolated interpreter.

    from sandbox import Sandbox, Limits
    with Sandbox(workers=2) as sb:
        results = sb.run_batch(["print(1 + 1)", ["x = 2", "print(x ** 10)"]])
"""

from sandbox._sandbox import DEFAULT_PRELOAD, DEFAULT_WARMUP, Program, Sandbox
from sandbox._types import Limits, Result, Status

__all__ = ["Sandbox", "Limits", "Result", "Status", "Program", "DEFAULT_PRELOAD", "DEFAULT_WARMUP"]
__version__ = "0.1.0"
