"""What the whole machine did meanwhile, from /proc/stat: the CPU it kept
busy, the processes it created, and waiting until it is quiet."""

from __future__ import annotations

import os
import time

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _cpu_ticks() -> tuple[int, int]:
    """All ticks of all CPUs since boot, and the idle ones (idle, iowait)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values), values[3] + values[4]


def busy_cpu_s() -> float:
    """CPU seconds the machine has spent busy since boot, all CPUs and all
    processes together (kernel threads too). Its resolution is a clock tick
    (10 ms): difference it over batches that keep the CPUs busy a while."""
    total, idle = _cpu_ticks()
    return (total - idle) / TICKS_PER_S


def cpu_ms_per_program(cpu_s: list[float], n_programs: int) -> float:
    """Machine CPU per program over repeated runs of the same batch (all of
    them together: a tick is 10 ms, a plain batch about a second of CPU)."""
    return 1e3 * sum(cpu_s) / (n_programs * len(cpu_s))


def processes_created() -> int:
    """Processes the kernel has created since boot (all of the machine's)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("processes "):
                return int(line.split()[1])
    return 0


def settle(max_s: float = 10.0) -> None:
    """Wait until the CPUs are mostly idle: a closed executor's processes are
    torn down by the kernel after close() returns, and that must not be
    billed to the next executor measured."""
    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline:
        total, idle = _cpu_ticks()
        time.sleep(0.2)
        total2, idle2 = _cpu_ticks()
        if (idle2 - idle) >= 0.8 * (total2 - total):
            return
