"""Which ready program goes next, and to which zygote (sandbox/_ready.py)."""

from sandbox._ready import ReadyQueue


def drain(queue: ReadyQueue, loads: list[int], max_load: int) -> list[tuple[str, int]]:
    """Take until nothing may go, counting each taken item as load."""
    taken = []
    while (pick := queue.take(loads, max_load)) is not None:
        item, worker = pick
        loads[worker] += 1
        taken.append((item, worker))
    return taken


def test_free_items_go_oldest_first_to_the_least_loaded_zygote():
    queue: ReadyQueue[str] = ReadyQueue(2)
    for name in "abcd":
        queue.add(name, None)
    # a zygote takes one more while its load is at most max_load
    assert drain(queue, [1, 0], max_load=1) == [("a", 1), ("b", 0), ("c", 1)]
    assert len(queue) == 1


def test_a_bound_item_waits_for_its_zygote_while_younger_ones_pass():
    queue: ReadyQueue[str] = ReadyQueue(2)
    queue.add("old, bound to 0", 0)
    queue.add("young, free", None)
    queue.add("younger, bound to 1", 1)
    assert drain(queue, [2, 0], max_load=0) == [("young, free", 1)]
    assert drain(queue, [0, 1], max_load=1) == [("old, bound to 0", 0), ("younger, bound to 1", 1)]
    assert len(queue) == 0


def test_the_oldest_item_that_may_go_goes_first_across_zygotes():
    queue: ReadyQueue[str] = ReadyQueue(3)
    queue.add("1 for z2", 2)
    queue.add("2 free", None)
    queue.add("3 for z0", 0)
    queue.add("4 for z2", 2)
    queue.add("5 free", None)
    loads = [0, 5, 0]
    assert drain(queue, loads, max_load=5) == [
        ("1 for z2", 2),
        ("2 free", 0),
        ("3 for z0", 0),
        ("4 for z2", 2),
        ("5 free", 0),
    ]


def test_nothing_goes_when_no_zygote_has_room():
    queue: ReadyQueue[str] = ReadyQueue(2)
    queue.add("free", None)
    queue.add("bound", 1)
    assert queue.take([3, 3], max_load=2) is None
    assert len(queue) == 2
