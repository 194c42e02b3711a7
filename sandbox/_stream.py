"""Batches submitted from any thread and run by one dispatch thread, which
takes new ones in as they arrive: a slow program holds back only its own
batch's answer (see Sandbox.submit)."""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox._types import Limits, Result

Done = Callable[[list[Result]], Any]


@dataclass
class Submission:
    programs: Sequence[Any]
    limits: Limits
    release_prefixes: bool
    done: Done
    first_index: int = 0
    results: list[Result | None] = field(default_factory=list)
    left: int = 0


class Inbox:
    """Submissions waiting for the dispatch thread, with a pipe that wakes its
    selector when one arrives."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._items: deque[Submission] = deque()
        self._lock = threading.Lock()
        self.closed = False
        self._released = False

    @property
    def open(self) -> bool:
        """Not closed, or submissions are still waiting to be taken."""
        with self._lock:
            return not self.closed or bool(self._items)

    def fileno(self) -> int:
        return self._read

    def put(self, item: Submission) -> None:
        with self._lock:
            if self.closed:
                raise RuntimeError("Sandbox is closed")
            self._items.append(item)
        self._wake()

    def take(self) -> list[Submission]:
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            items = list(self._items)
            self._items.clear()
        return items

    def close(self) -> None:
        with self._lock:
            self.closed = True
        self._wake()

    def release(self) -> None:
        """Close the pipe (once the dispatch thread is gone)."""
        with self._lock:
            if self._released:
                return
            self._released = self.closed = True
        os.close(self._read)
        os.close(self._write)

    def _wake(self) -> None:
        with self._lock:
            if self._released:  # its descriptor number may be another file's by now
                return
            try:
                os.write(self._write, b"!")
            except BlockingIOError:
                pass  # the pipe is full of wake-ups already


class Answers:
    """Results by the dispatcher's global program index; a submission's `done`
    is called once all of its programs have a result."""

    def __init__(self) -> None:
        self._slots: dict[int, tuple[Submission, int]] = {}

    def add(self, sub: Submission) -> None:
        sub.results = [None] * len(sub.programs)
        sub.left = len(sub.programs)
        for pos in range(len(sub.programs)):
            self._slots[sub.first_index + pos] = (sub, pos)
        if not sub.left:
            _call(sub)

    def __getitem__(self, index: int) -> Result | None:
        slot = self._slots.get(index)
        return slot[0].results[slot[1]] if slot else None

    def __setitem__(self, index: int, result: Result) -> None:
        slot = self._slots.get(index)
        if slot is None:
            return
        sub, pos = slot
        if sub.results[pos] is None:
            sub.left -= 1
        sub.results[pos] = result
        if not sub.left:
            for i in range(sub.first_index, sub.first_index + len(sub.programs)):
                self._slots.pop(i, None)
            _call(sub)

    def fail_all(self, message: str) -> None:
        for index in list(self._slots):
            if self[index] is None:
                self[index] = Result.sandbox_error(message)


def _call(sub: Submission) -> None:
    try:
        sub.done(sub.results)  # type: ignore[arg-type]  # complete: no None left
    except Exception as exc:  # the caller's callback must not stop the dispatcher
        print(f"sandbox: a submit() callback raised {exc!r}", file=sys.stderr)
