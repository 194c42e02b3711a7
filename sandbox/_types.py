"""The sandbox's public value types: Limits, Status, Result."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Status(str, enum.Enum):
    """How a program ended. The order mirrors `enum sbx_status` in csrc/protocol.h."""

    OK = "ok"
    ERROR = "error"  # a Python exception or a non-zero exit
    TIMEOUT = "timeout"  # wall-clock or CPU-time limit
    MEMORY = "memory"  # MemoryError under the address-space limit
    OUTPUT_LIMIT = "output_limit"  # stdout or stderr past the cap
    KILLED = "killed"  # any other signal, a seccomp violation included
    SANDBOX_ERROR = "sandbox_error"  # the sandbox failed, never the program's fault

    @classmethod
    def from_code(cls, code: int) -> Status:
        return _BY_CODE[code]


_BY_CODE = dict(enumerate(Status))


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-program resource limits. The defaults suit math reasoning steps.

    Args:
        wall_s: wall-clock seconds before the program is killed (`timeout`).
        cpu_s: CPU seconds (rounded up to whole seconds by the kernel's RLIMIT_CPU).
        memory_mb: address space the program may add to the pre-warmed interpreter.
        output_bytes: cap on stdout and on stderr each; past it the program is
            killed and the output truncated (`output_limit`).
        allow_threads: let the program start threads (never processes).
    """

    wall_s: float = 5.0
    cpu_s: float = 5.0
    memory_mb: int = 1024
    output_bytes: int = 65536
    allow_threads: bool = False

    def __post_init__(self) -> None:
        for name in ("wall_s", "cpu_s", "memory_mb", "output_bytes"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive number, got {value!r}")


@dataclass(frozen=True, slots=True)
class Result:
    """What one program did.

    `error` is the exception's last line (``ZeroDivisionError: division by
    zero``) or a sentence from the sandbox (``wall-clock limit exceeded``);
    None when the program ended normally. `snapshot_steps` is how many of a
    program's leading steps were not run again because a live snapshot held
    their end state; `wall_s`, `cpu_s` are what this run cost, without them.
    """

    status: Status
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    truncated: bool = False
    exit_code: int | None = None
    signal: int | None = field(default=None, repr=False)
    snapshot_steps: int = 0

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @classmethod
    def sandbox_error(cls, message: str) -> Result:
        return cls(status=Status.SANDBOX_ERROR, error=message)
