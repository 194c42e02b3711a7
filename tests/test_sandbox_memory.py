"""The zygote's memory stays laid out for cheap forks while it serves."""

import pytest

from sandbox import Sandbox


def huge_kb(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return sum(int(line.split()[1]) for line in f if line.startswith("AnonHugePages:"))


def test_zygote_keeps_its_huge_pages_while_serving():
    # The supervisor allocates per request; an allocation inside the collapsed
    # heap, in a page the children share, would split that huge page for good.
    with Sandbox(workers=1) as box:
        pid = box.info[0]["pid"]
        before = huge_kb(pid)
        if not before:
            pytest.skip("this kernel gave the zygote no huge pages")
        steps = [[f"x = {i}", "print('y' * 5000)", f"z = x * {i}"] for i in range(60)]
        programs: list = [f"print('{i}' * {i * 300})" for i in range(60)] + steps + ["1/0"] * 20
        results = box.run_batch(programs)
        assert all(r.status.value in ("ok", "error") for r in results)
        assert huge_kb(pid) >= before
