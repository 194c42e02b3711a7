"""Which ready program goes next, and to which zygote (sandbox/_ready.py)."""

from sandbox._ready import ReadyQueue


def queue_of(n_workers: int, holders: dict[str, int]) -> ReadyQueue[str]:
    """A queue whose items are bound as `holders` says at the time asked
    (absent: unbound); tests change it as snapshots come and go."""
    return ReadyQueue(n_workers, holders.get)


def drain(queue: ReadyQueue, loads: list[int], max_load: int) -> list[tuple[str, int]]:
    """Take until nothing may go, counting each taken item as load."""
    taken = []
    while (pick := queue.take(loads, max_load)) is not None:
        item, worker = pick
        loads[worker] += 1
        taken.append((item, worker))
    return taken


def test_unbound_items_go_oldest_first_to_the_least_loaded_zygote():
    queue = queue_of(2, {})
    for name in "abcd":
        queue.add(name)
    # a zygote takes one more while its load is at most max_load
    assert drain(queue, [1, 0], max_load=1) == [("a", 1), ("b", 0), ("c", 1)]
    assert len(queue) == 1


def test_a_bound_item_waits_for_its_zygote_while_younger_ones_pass():
    queue = queue_of(2, {"old, bound to 0": 0, "younger, bound to 1": 1})
    for name in ("old, bound to 0", "young, unbound", "younger, bound to 1"):
        queue.add(name)
    assert drain(queue, [2, 0], max_load=0) == [("young, unbound", 1)]
    assert drain(queue, [0, 1], max_load=1) == [("old, bound to 0", 0), ("younger, bound to 1", 1)]
    assert len(queue) == 0


def test_the_oldest_item_that_may_go_goes_first_across_zygotes():
    queue = queue_of(3, {"1 for z2": 2, "3 for z0": 0, "4 for z2": 2})
    for name in ("1 for z2", "2 unbound", "3 for z0", "4 for z2", "5 unbound"):
        queue.add(name)
    assert drain(queue, [0, 5, 0], max_load=5) == [
        ("1 for z2", 2),
        ("2 unbound", 0),
        ("3 for z0", 0),
        ("4 for z2", 2),
        ("5 unbound", 0),
    ]


def test_an_item_goes_where_its_snapshot_is_when_it_leaves():
    holders: dict[str, int] = {"child": 1}  # bound to its grandparent's snapshot when it came
    queue = queue_of(2, holders)
    queue.add("child")
    queue.add("other")
    holders["child"] = 0  # its parent ended meanwhile, kept in zygote 0, which is full
    assert drain(queue, [3, 0], max_load=2) == [("other", 1)]
    assert drain(queue, [2, 1], max_load=2) == [("child", 0)]


def test_nothing_goes_when_no_zygote_has_room():
    queue = queue_of(2, {"bound": 1})
    queue.add("unbound")
    queue.add("bound")
    assert queue.take([3, 3], max_load=2) is None
    assert len(queue) == 2
