"""Sandbox: run many untrusted programs at once, each in a fresh isolated child."""

from __future__ import annotations

import itertools
import math
import os
import selectors
import sys
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox import _core, _isolation
from sandbox._protocol import encode_request, encode_steps
from sandbox._ready import ReadyQueue
from sandbox._stream import Answers, Done, Inbox, Submission
from sandbox._types import Limits, Result
from sandbox._worker import STARTUP_ONLY_ENV, Worker, WorkerStartError
from sandbox._zygote_config import ZygoteConfig

Program = str | Sequence[str]
Results = list[Result | None] | Answers  # where the dispatcher writes results, by index

DEFAULT_PRELOAD = (
    "math",
    "cmath",
    "fractions",
    "decimal",
    "itertools",
    "functools",
    "collections",
    "random",
    "re",
    "sympy",
    "numpy",
)

# Touch what the preloaded libraries load lazily on first use, so that no child
# pays for it: sympy imports many submodules and fills caches on the first
# solve/simplify/integrate; numpy's linalg and printing do the same.
DEFAULT_WARMUP = """
import sympy, numpy
x, y = sympy.symbols('x y')
sympy.solve([x + y - 3, x - y - 1], [x, y]); sympy.solve(x**2 - 2, x)
sympy.solve(x**2 - 3*x - 5, x); sympy.solve(x**2 - 7*x - 8, x); sympy.simplify((x**2 - 16) / (x - 4))
sympy.simplify(sympy.sin(x)**2 + sympy.cos(x)**2); sympy.factor(x**2 - 1)
sympy.expand((x + 1)**3); sympy.integrate(x**2, (x, 0, 1)); sympy.diff(sympy.exp(x), x)
sympy.Rational(3, 4) + sympy.sqrt(8); sympy.nsimplify(0.5); sympy.N(sympy.pi, 20)
sympy.limit(sympy.sin(x) / x, x, 0); sympy.series(sympy.exp(x), x, 0, 3)
sympy.Matrix([[1, 2], [3, 4]]).det(); sympy.isprime(97); sympy.factorint(360)
sympy.binomial(10, 3); sympy.latex(x**2 / 3); str(sympy.Eq(x, 1))
a = numpy.array([[2.0, 1.0], [1.0, 3.0]]); numpy.linalg.solve(a, [1.0, 2.0])
numpy.linalg.inv(a); numpy.linalg.eigvals(a); str(a); repr(numpy.arange(3))
from fractions import Fraction; str(Fraction(1, 3) + 1)
"""

SLACK_S = 10.0  # a zygote silent this long past every deadline is considered hung
AFFINITY_ENTRIES = 100_000  # prefixes remembered with the zygote that ran them
# Ends of programs kept as snapshots without being asked: only while at least
# this share of the last REUSE_WINDOW programs of steps extended a program of
# an earlier call (a tree search: nearly all; independent programs: none).
REUSE_WINDOW = 64
REUSE_SHARE = 0.125
TRAILING_SPACE = " \t\r\n"

StepKey = tuple[tuple[int, str], ...]


def step_key(steps: Sequence[str]) -> StepKey:
    """Steps as prefix snapshots are keyed (csrc/wire.c: key_steps): each
    step's first line in the joined program and its text without trailing
    whitespace, so that steps differing only in trailing blank lines or spaces
    share a snapshot when line numbers stay the same."""
    key, line = [], 0
    for step in steps:
        key.append((line, step.rstrip(TRAILING_SPACE)))
        line += step.count("\n") + 1
    return tuple(key)


@dataclass
class _Job:
    """One program of a batch, and how it will run."""

    index: int
    limits: Limits
    texts: tuple[str, ...]  # the program's steps as given (a source: one)
    steps: StepKey | None  # how snapshots know its steps; None: it runs as one source
    as_steps: bool = True  # False: no snapshot can serve it, so it runs as its joined source
    parent: int | None = None  # the batch's program whose steps are the longest prefix of ours
    release: bool = False  # the last of the batch to run from its prefix's snapshot
    keep_end: bool = False  # keep its end state: a later program is likely to extend it
    snap_at: int = 0  # keep the state after this many steps: other programs share that prefix
    shares_prefix: bool = False  # with another program of the batch, which may leave a snapshot of it


class Sandbox:
    """A pool of pre-warmed zygotes that run programs in isolated children.

    Args:
        workers: zygote processes (each forks its own children).
        limits: default limits of every program.
        preload: modules every zygote imports before forking.
        warmup: code every zygote runs once after the imports.
        slots: programs a zygote runs at once at normal priority; programs that
            run longer than `demote_after_s` drop to low priority and free
            their slot, so a few never-ending programs never stall a batch.
        demote_after_s: see `slots`.
        snapshots: run programs given as steps from prefix snapshots: the
            process that ran a prefix stays alive, and a program that extends
            it forks from it (through the zygote) and runs only its new steps.
            Needs seccomp user notification; without it, fresh forks.
        max_snapshots, snapshot_memory_mb: caps on the live snapshots (count,
            private memory), over all workers; least recently used go first.
        seccomp, landlock, drop_privileges: switch a protection off (for
            diagnosis only; `python -m sandbox check` shows what is active).
        start_timeout_s: how long a zygote may take to import and warm up.
        env: environment variables for programs, on top of the minimal one the
            sandbox builds (PATH, LANG, LC_ALL, PYTHONHASHSEED, one thread per
            numeric library). Programs never see the caller's environment.
    """

    def __init__(
        self,
        workers: int = 2,
        limits: Limits | None = None,
        preload: Iterable[str] = DEFAULT_PRELOAD,
        warmup: str = DEFAULT_WARMUP,
        slots: int = 2,
        demote_after_s: float = 1.0,
        snapshots: bool = True,
        max_snapshots: int = 256,
        snapshot_memory_mb: int = 2048,
        seccomp: bool = True,
        landlock: bool = True,
        drop_privileges: bool = True,
        start_timeout_s: float = 120.0,
        env: Mapping[str, str] | None = None,
    ):
        if workers < 1 or slots < 1:
            raise ValueError(f"workers and slots must be >= 1, got {workers} and {slots}")
        if max_snapshots < 0 or snapshot_memory_mb < 0:
            raise ValueError("max_snapshots and snapshot_memory_mb must be >= 0")
        self.limits = limits or Limits()
        self.isolation = _isolation.decide(seccomp, landlock, drop_privileges)
        self._config = ZygoteConfig(
            sys_path=[p for p in sys.path if p and os.path.isabs(p)],
            preload=list(preload),
            warmup=warmup,
            slots=slots,
            demote_after_s=demote_after_s,
            nofile=_core.MIN_NOFILE,
            env=_checked_env(env),
            startup_only_env=list(STARTUP_ONLY_ENV),
            max_snapshots=math.ceil(max_snapshots / workers) if snapshots else 0,
            snapshot_memory_mb=math.ceil(snapshot_memory_mb / workers),
            seccomp=self.isolation.seccomp,
            landlock_paths=list(self.isolation.landlock_paths) if self.isolation.landlock_abi else None,
            drop_uid=self.isolation.drop_uid,
            drop_gid=self.isolation.drop_gid,
            keep_dac_read=self.isolation.keep_dac_read,
        )
        self._affinity: OrderedDict[tuple[Limits, StepKey], int] = OrderedDict()
        self._ended: OrderedDict[tuple[Limits, StepKey], None] = OrderedDict()  # programs of earlier calls
        self._extended: deque[bool] = deque(maxlen=REUSE_WINDOW)  # did they extend one?
        self._start_timeout_s = start_timeout_s
        self._slots = slots
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._inbox: Inbox | None = None  # submit(): the dispatch thread's
        self._stream_thread: threading.Thread | None = None
        self._stream_start = threading.Lock()
        self._workers = [Worker(self._config, start_timeout_s) for _ in range(workers)]
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)
        self.restarts = 0
        try:
            for w in self._workers:  # start all, then wait: imports run in parallel
                w.start()
            for w in self._workers:
                w.wait_ready()
        except BaseException:
            self.close()
            raise

    # -- public API ------------------------------------------------------
    def run(self, program: Program, limits: Limits | None = None, release_prefixes: bool = True) -> Result:
        """Run one program; see `run_batch`."""
        return self.run_batch([program], limits, release_prefixes)[0]

    def run_batch(
        self, programs: Sequence[Program], limits: Limits | None = None, release_prefixes: bool = True
    ) -> list[Result]:
        """Run every program, each in an isolated child; results in input order.

        A program is source text or the sequence of its steps' source texts.
        Steps give the same result as their joined source (newline-separated),
        and with snapshots on, a program runs from the live state its longest
        prefix left behind: within a batch, a program waits for the one whose
        steps are its longest prefix. Bad input gives a `sandbox_error`
        result, never an exception.

        A program's end state is kept for later calls while recent calls
        extended programs of earlier ones (as a tree search does), and the
        state after a prefix that several programs of the batch share is kept
        for them; a batch whose prefixes are never reused pays for no
        snapshot. Steps that differ only in trailing whitespace match when
        they start on the same line of the joined program.

        With `release_prefixes`, the last program of the batch that extends a
        prefix by one step runs in that prefix's snapshot itself rather than a
        fork of it, and the prefix is not kept: a tree search does not come
        back to a node once its children ran. Pass False to keep every
        program's end state for later calls.
        """
        limits = limits or self.limits
        if self._stream_thread is not None:  # the dispatch thread owns the zygotes
            answered: list[list[Result]] = []
            event = threading.Event()

            def done(results: list[Result]) -> None:
                answered.append(results)
                event.set()

            self.submit(programs, done, limits, release_prefixes)
            event.wait()
            return answered[0]
        results: list[Result | None] = [None] * len(programs)
        with self._lock:
            if not self._finalizer.alive:
                raise RuntimeError("Sandbox is closed")
            jobs, early = self._plan(programs, limits, release_prefixes, 0)
            for i, result in early.items():
                results[i] = result
            try:
                self._dispatch(jobs, results)
            except BaseException:
                # Interrupted mid-batch: programs still in flight must not
                # leak into the next batch, so their zygotes start afresh.
                for w in self._workers:
                    if w.in_flight:
                        self._restart(w, results, "interrupted")
                raise
        return results  # type: ignore[return-value]

    def submit(
        self, programs: Sequence[Program], done: Done, limits: Limits | None = None, release_prefixes: bool = True
    ) -> None:
        """Run the programs as `run_batch` does, without waiting: `done` is
        called with their results, in input order, once all have ended. It
        runs on the sandbox's dispatch thread (started by the first call),
        so it must be quick (hand the results over, as
        `loop.call_soon_threadsafe` does). Batches submitted while others run
        join them at once: a slow program holds back no other batch's
        answer. While that thread runs, `run_batch` goes through it too, and
        the thread keeps the sandbox alive: `close()` it when done."""
        with self._stream_start:
            if not self._finalizer.alive:
                raise RuntimeError("Sandbox is closed")
            if self._inbox is None:
                self._inbox = Inbox()
                self._stream_thread = threading.Thread(
                    target=self._serve_inbox, args=(self._inbox,), name="sandbox-dispatch", daemon=True
                )
                self._stream_thread.start()
        self._inbox.put(Submission(list(programs), limits or self.limits, release_prefixes, done))

    def _serve_inbox(self, inbox: Inbox) -> None:
        answers = Answers()
        with self._lock:
            try:
                self._dispatch([], answers, inbox)
            except BaseException as exc:
                inbox.close()
                for sub in inbox.take():  # submitted but never taken in
                    answers.add(sub)
                answers.fail_all(f"sandbox: the dispatch thread stopped: {exc}")
                raise

    def _plan(
        self, programs: Sequence[Program], limits: Limits, release_prefixes: bool, first_index: int
    ) -> tuple[list[_Job], dict[int, Result]]:
        """The batch's jobs, linked and marked for snapshots, and the results
        of programs that are bad input. Indices start at `first_index`."""
        jobs, early = [], {}
        for i, program in enumerate(programs, first_index):
            job = self._encode(i, program, limits)
            if isinstance(job, Result):
                early[i] = job
            else:
                jobs.append(job)
        keep_ends = not release_prefixes or self._reusing(jobs)
        _link_prefixes(jobs, release_prefixes, keep_ends)
        for job in jobs:
            if job.steps and not (job.keep_end or job.shares_prefix or job.parent is not None):
                # Steps one by one cost a round trip each: only worth it from a snapshot.
                job.as_steps = self._may_hold_a_prefix(job)
        return jobs, early

    @property
    def snapshots_active(self) -> bool:
        """Whether programs given as steps run from prefix snapshots here."""
        return all(w.info.get("snapshots") for w in self._workers)

    def snapshot_stats(self) -> dict[str, float]:
        """Live snapshots and their private memory, as the zygotes last reported."""
        return {
            "live": sum(w.snapshots[0] for w in self._workers),
            "memory_mb": sum(w.snapshots[1] for w in self._workers),
        }

    def close(self) -> None:
        """Stop every zygote; no process of this sandbox survives it. Batches
        submitted before are answered first."""
        with self._stream_start:
            inbox, thread = self._inbox, self._stream_thread
        if inbox is not None and thread is not None:
            inbox.close()
            if thread is not threading.current_thread():
                thread.join()
                inbox.release()
        self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def info(self) -> list[dict[str, Any]]:
        """What each zygote reported at start-up (pid, warm-up seconds, RSS)."""
        return [w.info for w in self._workers]

    # -- dispatch --------------------------------------------------------
    def _encode(self, index: int, program: object, limits: Limits) -> _Job | Result:
        if isinstance(program, str):
            return _Job(index, limits, (program,), None)
        if not (isinstance(program, Sequence) and all(isinstance(s, str) for s in program)):
            return Result.sandbox_error(f"a program must be a str or a sequence of str, not {type(program).__name__}")
        steps = tuple(program)
        if not steps or limits.allow_threads or not self.snapshots_active:
            return _Job(index, limits, steps, None)
        return _Job(index, limits, steps, step_key(steps))

    def _may_hold_a_prefix(self, job: _Job) -> bool:
        assert job.steps
        return any((job.limits, job.steps[:k]) in self._affinity for k in range(1, len(job.steps)))

    def _reusing(self, jobs: list[_Job]) -> bool:
        """Whether recent programs extended programs of earlier calls, this
        batch's included (then its programs' ends are worth keeping)."""
        for job in jobs:
            if job.steps and len(job.steps) > 1:
                self._extended.append(
                    any((job.limits, job.steps[:k]) in self._ended for k in range(len(job.steps) - 1, 0, -1))
                )
        return sum(self._extended) >= REUSE_SHARE * max(len(self._extended), 1) > 0

    def _holder(self, job: _Job) -> int | None:
        """The zygote that holds the longest prefix of the job's steps, if
        one may: the job waits for room there."""
        if job.steps:
            for k in range(len(job.steps) - 1, 0, -1):
                at = self._affinity.get((job.limits, job.steps[:k]))
                if at is not None:
                    return at
        return None

    def _remember(self, job: _Job, result: Result, worker: int) -> None:
        """Which zygote may hold snapshots of this job's prefixes, and that a
        later call's program may extend it."""
        if not job.steps:
            return
        limits = job.limits
        if result.ok:
            self._ended[(limits, job.steps)] = None
            self._ended.move_to_end((limits, job.steps))
            if len(self._ended) > AFFINITY_ENTRIES:
                self._ended.popitem(last=False)
        kept = [job.steps[:k] for k in range(1, job.snap_at + 1)]
        if job.keep_end and result.ok:
            kept.append(job.steps)
        for steps in kept:
            key = (limits, steps)
            self._affinity[key] = worker
            self._affinity.move_to_end(key)
        while len(self._affinity) > AFFINITY_ENTRIES:
            self._affinity.popitem(last=False)

    def _dispatch(self, jobs: list[_Job], results: Results, inbox: Inbox | None = None) -> None:
        """Run the jobs, writing each result into `results` by index. With an
        inbox, also take in the batches submitted to it as they arrive, until
        it is closed and nothing is left."""
        patience = max((job.limits.wall_s for job in jobs), default=0.0) + SLACK_S
        by_index: dict[int, _Job] = {}
        waiting: dict[int, list[_Job]] = {}
        ready: ReadyQueue[_Job] = ReadyQueue(len(self._workers), self._holder)
        next_index = 0

        def admit(batch: list[_Job]) -> None:
            for job in batch:
                by_index[job.index] = job
                if job.parent is None:
                    ready.add(job)
                else:
                    waiting.setdefault(job.parent, []).append(job)

        def take_in(box: Inbox) -> None:
            nonlocal next_index, patience
            assert isinstance(results, Answers)
            for sub in box.take():
                sub.first_index = next_index
                next_index += len(sub.programs)
                patience = max(patience, sub.limits.wall_s + SLACK_S)
                batch, early = self._plan(sub.programs, sub.limits, sub.release_prefixes, sub.first_index)
                admit(batch)
                results.add(sub)
                for i, result in early.items():
                    results[i] = result

        admit(jobs)
        with selectors.DefaultSelector() as sel:
            for w in self._workers:
                if not w.alive:
                    self._restart(w, results, "zygote exited")
                sel.register(w.fileno(), selectors.EVENT_READ, w)
            if inbox is not None:
                sel.register(inbox.fileno(), selectors.EVENT_READ, inbox)
                take_in(inbox)
            last_progress = time.monotonic()
            restarts = self.restarts
            while ready or any(w.in_flight for w in self._workers) or (inbox is not None and inbox.open):
                # One request beyond the slots hides the round trip.
                while (taken := ready.take([w.load for w in self._workers], self._slots)) is not None:
                    job, at = taken
                    w = self._workers[at]
                    request_id = next(self._ids)
                    try:
                        w.send(request_id, job.index, _frame(request_id, job))
                    except (BrokenPipeError, OSError):
                        self._replace(sel, w, results, "zygote exited")
                for key, _ in sel.select(timeout=1.0):
                    if key.data is inbox:
                        take_in(inbox)
                        continue
                    w = key.data
                    if w.read():
                        for index, result in w.frames():
                            results[index] = result
                            self._remember(by_index.pop(index), result, self._workers.index(w))
                            for child in waiting.pop(index, ()):
                                ready.add(child)
                        last_progress = time.monotonic()
                    else:
                        self._replace(sel, w, results, "zygote exited")
                if not any(w.in_flight for w in self._workers):
                    last_progress = time.monotonic()  # idle, waiting for submissions
                elif time.monotonic() - last_progress > patience:
                    for w in self._workers:
                        if w.in_flight:
                            self._replace(sel, w, results, "zygote stopped answering")
                    last_progress = time.monotonic()
                if self.restarts != restarts:
                    # Programs whose prefix program got no answer (its zygote
                    # was replaced) run without waiting for it.
                    restarts = self.restarts
                    for index in [i for i in waiting if results[i] is not None]:
                        for child in waiting.pop(index):
                            ready.add(child)
                        by_index.pop(index, None)

    def _replace(self, sel: selectors.BaseSelector, w: Worker, results: Results, why: str) -> None:
        sel.unregister(w.fileno())
        self._restart(w, results, why)
        sel.register(w.fileno(), selectors.EVENT_READ, w)

    def _restart(self, w: Worker, results: Results, why: str) -> None:
        log = w.stop()
        message = f"sandbox: {why}" + (f": {log.splitlines()[-1]}" if log else "")
        for index in w.in_flight.values():
            results[index] = Result.sandbox_error(message)
        w.in_flight.clear()
        w.demoted.clear()
        w.buf.clear()
        self.restarts += 1
        try:
            w.start()
            w.wait_ready()
        except WorkerStartError as exc:
            raise RuntimeError(f"sandbox: could not restart a zygote: {exc}") from exc


def _frame(request_id: int, job: _Job) -> bytes:
    if job.steps and job.as_steps:
        code = encode_steps([s.encode("utf-8", "surrogatepass") for s in job.texts])
        return encode_request(request_id, code, job.limits, len(job.texts), job.release, job.keep_end, job.snap_at)
    return encode_request(request_id, "\n".join(job.texts).encode("utf-8", "surrogatepass"), job.limits)


def _link_prefixes(jobs: list[_Job], release: bool, keep_ends: bool) -> None:
    """Point each program of steps at the batch's program whose steps are its
    longest proper prefix: it runs after that one, from its snapshot, so that
    one keeps its end. With `release`, mark the last program (in the order
    they are sent) to run from each prefix, when it extends that prefix by one
    step. A prefix that several programs share but none is gets a snapshot
    from the first of them; with `keep_ends`, every program keeps its end."""
    by_steps: dict[StepKey, _Job] = {}
    sharing: dict[StepKey, int] = {}
    for job in jobs:
        if job.steps:
            by_steps.setdefault(job.steps, job)
            job.keep_end = keep_ends
            for k in range(1, len(job.steps)):
                sharing[job.steps[:k]] = sharing.get(job.steps[:k], 0) + 1
    last_from: dict[StepKey, _Job] = {}
    first_sharer: set[StepKey] = set()
    for job in jobs:
        if not job.steps or len(job.steps) < 2:
            continue
        source = job.steps[:-1]  # a prefix from an earlier batch, as a tree search has
        shared_seen = False
        for k in range(len(job.steps) - 1, 0, -1):
            prefix = job.steps[:k]
            parent = by_steps.get(prefix)
            if parent is not None:
                job.parent = parent.index
                parent.keep_end = True
                source = prefix
                break
            if sharing[prefix] > 1 and not shared_seen:
                shared_seen = job.shares_prefix = True  # the longest shared prefix; one program keeps it
                if prefix not in first_sharer:
                    first_sharer.add(prefix)
                    job.snap_at = k
        last_from[source] = job
    if release:
        for source, job in last_from.items():
            job.release = job.steps is not None and len(job.steps) == len(source) + 1


def _stop_all(workers: list[Worker]) -> None:
    for w in workers:
        w.stop()


def _checked_env(env: Mapping[str, str] | None) -> dict[str, str]:
    """`env` as a plain dict of non-empty names and string values."""
    checked = {}
    for key, value in (env or {}).items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ValueError(f"env: {key!r} is not a variable name")
        if not isinstance(value, str) or "\0" in value:
            raise ValueError(f"env: the value of {key} must be a string without NUL")
        checked[key] = value
    return checked
