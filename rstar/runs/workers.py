"""Where searches and evaluations run. A run cuts its problems into batches
and hands them to workers: `KeptEngine` runs them in this process on an engine
and sandbox kept open from one stage to the next; `rstar.cluster.RayWorkers`
runs them on Ray actors. Either way the run alone writes the results."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Protocol

from rstar.config import RunConfig
from rstar.search.expand import Context


@contextmanager
def search_context(config: RunConfig, scorer=None):
    """The policy engine and the sandbox of a run, closed afterwards."""
    from rstar.llm import engine_config_class, load_engine
    from sandbox import Limits, Sandbox

    # The run's engine settings that the chosen engine has (the rest are the other's).
    kind = config.engine.kind
    wanted = {f.name for f in dataclasses.fields(engine_config_class(kind))}
    engine = load_engine(kind, **{k: v for k, v in dataclasses.asdict(config.engine).items() if k in wanted})
    limits = Limits(wall_s=config.sandbox.wall_s, cpu_s=config.sandbox.wall_s, memory_mb=config.sandbox.memory_mb)
    try:
        with Sandbox(workers=config.sandbox.workers, limits=limits) as sb:
            yield Context(engine, sb, config.expand, scorer)
    finally:
        engine.close()


class Workers(Protocol):
    """Where searches and evaluations run: this process (`KeptEngine`) or Ray
    workers (`rstar.cluster.RayWorkers`)."""

    def prepare(self, config: RunConfig, ppm: str | None) -> float: ...
    def map(
        self, task: Callable[[Context, Any], Any], config: RunConfig, ppm: str | None, payloads: list
    ) -> Iterator[tuple[int, Any, dict]]: ...
    def close(self) -> None: ...


class KeptEngine:
    """The engine, sandbox and PPM scorer of this process, kept open from one
    stage to the next while the policy and its settings stay the same (in
    `rstar evolve`: greedy and sampled evaluation of a round, then the next
    round's search), so they start once; `close()` frees them before training
    needs the memory. A Ray worker holds one (`rstar.cluster`)."""

    def __init__(self):
        self._key: str | None = None
        self._stack: ExitStack | None = None
        self._ctx: Context | None = None
        self._scorers: dict[str, object] = {}

    def context(self, config: RunConfig, scorer=None) -> Context:
        """A context on the kept engine (started now if the settings changed)."""
        key = json.dumps([dataclasses.asdict(config.engine), dataclasses.asdict(config.sandbox)])
        if key != self._key:
            self.close()
            stack = ExitStack()
            self._ctx = stack.enter_context(search_context(config))
            self._stack, self._key = stack, key
        assert self._ctx is not None
        return Context(self._ctx.engine, self._ctx.sandbox, config.expand, scorer)

    def scorer(self, ppm: str | None, config: RunConfig):
        """The scorer of the PPM folder `ppm` (loaded once), or None."""
        if ppm is None:
            return None
        key = json.dumps([str(Path(ppm).resolve()), dataclasses.asdict(config.ppm)])
        if key not in self._scorers:
            self._scorers[key] = load_scorer(ppm, config)
        return self._scorers[key]

    def prepare(self, config: RunConfig, ppm: str | None) -> float:
        """Start what a stage needs (a bad PPM fails here); returns the seconds it took."""
        t0 = time.perf_counter()
        self.context(config, self.scorer(ppm, config))
        return time.perf_counter() - t0

    def map(self, task, config: RunConfig, ppm: str | None, payloads: list):
        """`task(ctx, payload)` for every payload, in order; yields (index,
        result, seconds per phase)."""
        for i, payload in enumerate(payloads):
            yield i, *self.run(task, config, ppm, payload)

    def run(self, task, config: RunConfig, ppm: str | None, payload) -> tuple[Any, dict]:
        """`task(ctx, payload)` on the kept engine: its result and seconds per phase."""
        ctx = self.context(config, self.scorer(ppm, config))
        return task(ctx, payload), dict(ctx.seconds)

    def __enter__(self) -> KeptEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._scorers.clear()
        if self._stack is not None:
            stack, self._stack, self._ctx, self._key = self._stack, None, None, None
            stack.close()


def load_scorer(ppm: str | None, config: RunConfig):
    if ppm is None:
        return None
    from rstar.ppm.model import PPMScorer

    s = config.ppm
    return PPMScorer(ppm, batch_size=s.batch_size, max_length=s.max_length, scale=s.scale)
