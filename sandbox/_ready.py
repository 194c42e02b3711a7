"""The programs ready to be sent, and which zygote takes the next one."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class ReadyQueue(Generic[T]):
    """Items ready to send, oldest first. An item bound to a zygote (the
    snapshot of its prefix lives there) waits for room in that zygote; any
    other goes to the least loaded one. `holder(item)` says where an item is
    bound; it is asked when the item arrives and again when it would go, since
    a snapshot may have appeared meanwhile. One queue per zygote and one for
    the rest: choosing the next item costs O(zygotes · log n), so a batch is
    dispatched in time close to linear in its size."""

    def __init__(self, n_workers: int, holder: Callable[[T], int | None]):
        self._holder = holder
        self._order = itertools.count()
        self._queues: list[list[tuple[int, T]]] = [[] for _ in range(n_workers + 1)]  # the last: unbound

    def __len__(self) -> int:
        return sum(map(len, self._queues))

    def add(self, item: T) -> None:
        self._push(next(self._order), item, self._holder(item))

    def take(self, loads: Sequence[int], max_load: int) -> tuple[T, int] | None:
        """The oldest item that may be sent now and its zygote's index, or
        None; a zygote takes one while its load is at most `max_load`."""
        unbound = len(self._queues) - 1
        while (pick := self._oldest_sendable(loads, max_load)) is not None:
            queue, worker = pick
            order, item = heapq.heappop(self._queues[queue])
            holder = self._holder(item)
            if holder == (None if queue == unbound else queue):
                return item, worker
            self._push(order, item, holder)  # its snapshot is elsewhere now: wait there
        return None

    def _push(self, order: int, item: T, worker: int | None) -> None:
        heapq.heappush(self._queues[-1 if worker is None else worker], (order, item))

    def _oldest_sendable(self, loads: Sequence[int], max_load: int) -> tuple[int, int] | None:
        """(queue, zygote) of the oldest head that may go now, or None."""
        pick, oldest = None, -1
        for w, queue in enumerate(self._queues[:-1]):
            if queue and loads[w] <= max_load and (pick is None or queue[0][0] < oldest):
                pick, oldest = (w, w), queue[0][0]
        free = self._queues[-1]
        if free and (pick is None or free[0][0] < oldest):
            least = min(range(len(loads)), key=loads.__getitem__)
            if loads[least] <= max_load:  # else no zygote has room, and pick is None
                pick = (len(self._queues) - 1, least)
        return pick
