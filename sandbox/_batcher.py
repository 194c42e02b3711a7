"""Micro-batching for the HTTP service: requests that arrive while a batch runs
wait together and run as the next `Sandbox.run_batch`, so a server keeps the
library's throughput however its clients split the work."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sandbox._sandbox import Program
from sandbox._types import Limits, Result


class Runner(Protocol):
    """What the service runs programs with: a `Sandbox` (or, in the
    benchmark, a baseline behind the same HTTP stack)."""

    def run_batch(self, programs: Sequence[Program], limits: Limits | None = None) -> list[Result]: ...

    def close(self) -> None: ...


class Busy(Exception):
    """More programs in flight than the server accepts; retry later."""


@dataclass
class _Request:
    programs: list[Program]
    limits: Limits
    answer: asyncio.Future[list[Result]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Batcher:
    """One sandbox, fed one batch at a time from an asyncio loop.

    Args:
        sandbox: where the programs run (its `run_batch` runs in a thread).
        max_in_flight: programs accepted and not yet answered; past it,
            `run` raises Busy at once instead of queueing without bound.
    """

    def __init__(self, sandbox: Runner, max_in_flight: int):
        self.sandbox = sandbox
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._pending: list[_Request] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def run(self, programs: list[Program], limits: Limits) -> list[Result]:
        """The programs' results, in order. A caller that goes away (its task
        is cancelled) loses its answer and disturbs no one else's."""
        if self.in_flight + len(programs) > self.max_in_flight:
            raise Busy(f"{self.in_flight} programs in flight; the server takes {self.max_in_flight}")
        request = _Request(programs, limits)
        self.in_flight += len(programs)
        self._pending.append(request)
        self._wake.set()
        try:
            return await request.answer
        finally:
            self.in_flight -= len(programs)

    async def _serve(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            taken, self._pending = self._pending, []
            by_limits: dict[Limits, list[_Request]] = {}
            for r in taken:
                if not r.answer.done():  # its caller may be gone already
                    by_limits.setdefault(r.limits, []).append(r)
            for limits, group in by_limits.items():
                programs = [p for r in group for p in r.programs]
                try:
                    results = await asyncio.to_thread(self.sandbox.run_batch, programs, limits)
                except Exception as exc:  # every caller of the batch hears of it
                    results = [Result.sandbox_error(f"sandbox: {exc}")] * len(programs)
                start = 0
                for r in group:
                    if not r.answer.done():
                        r.answer.set_result(results[start : start + len(r.programs)])
                    start += len(r.programs)
