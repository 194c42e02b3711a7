"""The HTTP service's way into a sandbox: each request's programs are
submitted at once (`Sandbox.submit`), so requests that arrive together run
together and a slow program holds back only its own request; a cap on the
programs in flight answers past it at once instead of queueing without bound."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from sandbox._sandbox import Program
from sandbox._stream import Done
from sandbox._types import Limits, Result


class Runner(Protocol):
    """What the service runs programs with: a `Sandbox` (or, in the
    benchmark, a baseline behind the same HTTP stack)."""

    def submit(
        self, programs: Sequence[Program], done: Done, limits: Limits | None = None, release_prefixes: bool = True
    ) -> None: ...

    def snapshot_stats(self) -> dict[str, float]: ...

    def close(self) -> None: ...


class Busy(Exception):
    """More programs in flight than the server accepts; retry later."""


class AsyncRunner:
    """A runner awaited from an asyncio loop, with a cap on programs in flight.

    Args:
        runner: where the programs run.
        max_in_flight: programs accepted and not yet answered; past it,
            `run` raises Busy at once.
    """

    def __init__(self, runner: Runner, max_in_flight: int):
        self.runner = runner
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def run(self, programs: list[Program], limits: Limits, release_prefixes: bool = True) -> list[Result]:
        """The programs' results, in order (`release_prefixes` as in
        `Sandbox.run_batch`). A caller that goes away (its task is cancelled)
        loses its answer and disturbs no one else's."""
        if self.in_flight + len(programs) > self.max_in_flight:
            raise Busy(f"{self.in_flight} programs in flight; the server takes {self.max_in_flight}")
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[Result]] = loop.create_future()

        def done(results: list[Result]) -> None:  # on the runner's thread
            loop.call_soon_threadsafe(_resolve, answer, results)

        self.in_flight += len(programs)
        try:
            self.runner.submit(programs, done, limits, release_prefixes)
            return await answer
        finally:
            self.in_flight -= len(programs)


def _resolve(answer: asyncio.Future[list[Result]], results: list[Result]) -> None:
    if not answer.done():  # its caller may be gone
        answer.set_result(results)
