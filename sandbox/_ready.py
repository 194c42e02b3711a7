"""The programs ready to be sent, and which zygote takes the next one."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class ReadyQueue(Generic[T]):
    """Items ready to send, oldest first. An item bound to a zygote (its
    prefix's snapshot lives there) waits for room in that zygote; any other
    goes to the least loaded one. Choosing the next item costs O(zygotes)
    however many wait, so a batch is dispatched in time linear in its size."""

    def __init__(self, n_workers: int):
        self._order = itertools.count()
        self._bound: list[deque[tuple[int, T]]] = [deque() for _ in range(n_workers)]
        self._free: deque[tuple[int, T]] = deque()
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def add(self, item: T, worker: int | None) -> None:
        queue = self._free if worker is None else self._bound[worker]
        queue.append((next(self._order), item))
        self._len += 1

    def take(self, loads: Sequence[int], max_load: int) -> tuple[T, int] | None:
        """The oldest item that may be sent now and its zygote's index, or
        None; a zygote takes one while its load is at most `max_load`."""
        pick, oldest = None, -1
        for w, queue in enumerate(self._bound):
            if queue and loads[w] <= max_load and (pick is None or queue[0][0] < oldest):
                pick, oldest = w, queue[0][0]
        if self._free and (pick is None or self._free[0][0] < oldest):
            least = min(range(len(loads)), key=loads.__getitem__)
            if loads[least] <= max_load:  # else no zygote has room, and pick is None
                self._len -= 1
                return self._free.popleft()[1], least
        if pick is None:
            return None
        self._len -= 1
        return self._bound[pick].popleft()[1], pick
