"""The zygote's memory stays laid out for cheap forks while it serves."""

import pytest

from sandbox import Sandbox


def heap_huge_kb(pid: int) -> int:
    """AnonHugePages of the zygote's brk heap, where glibc's malloc allocates."""
    total, in_heap = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and ":" not in fields[0]:
                in_heap = fields[-1] == "[heap]"
            elif in_heap and fields[0] == "AnonHugePages:":
                total += int(fields[1])
    return total


def test_zygote_keeps_its_huge_pages_while_serving():
    # The supervisor allocates per request; an allocation inside the collapsed
    # heap, in a page the children share, would split that huge page for good.
    with Sandbox(workers=1) as box:
        pid = box.info[0]["pid"]
        before = heap_huge_kb(pid)
        if not before:
            pytest.skip("no huge pages in the heap: none from this kernel, or malloc is not glibc's (a sanitizer's)")
        steps = [[f"x = {i}", "print('y' * 5000)", f"z = x * {i}"] for i in range(60)]
        programs: list = [f"print('{i}' * {i * 300})" for i in range(60)] + steps + ["1/0"] * 20
        results = box.run_batch(programs)
        assert all(r.status.value in ("ok", "error") for r in results)
        assert heap_huge_kb(pid) >= before
