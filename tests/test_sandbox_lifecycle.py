"""Nothing outlives its batch, its Sandbox or its caller."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from sandbox import Limits, Sandbox, Status
from tests.helpers import SLOWDOWN, descendants, wait_gone

SLOTS = 2  # the Sandbox default


def test_five_thousand_programs_leave_nothing_behind(sb):
    sb.run_batch(["pass"] * 8)
    fds_before = len(os.listdir("/proc/self/fd"))
    zygotes = [info["pid"] for info in sb.info]
    programs = [f"print({i} * {i})" if i % 50 else "1/0" for i in range(5000)]
    results = sb.run_batch(programs)
    assert sum(r.status is Status.OK for r in results) == 4900
    assert results[7].stdout == "49\n" and results[0].status is Status.ERROR
    assert len(os.listdir("/proc/self/fd")) <= fds_before
    time.sleep(0.2)  # answered children are reaped while the kernel tears them down
    # What remains is the spares (one pre-forked, idle child per slot) and the
    # prefix snapshots earlier tests' step programs left (two pipes and at most
    # one seccomp listener each).
    live = sb.snapshot_stats()["live"]
    assert sum(len(descendants(z)) for z in zygotes) <= SLOTS * len(zygotes) + live
    fds = sum(len(os.listdir(f"/proc/{z}/fd")) for z in zygotes)
    assert fds < (16 + 5 * SLOTS) * len(zygotes) + 3 * live


def test_close_leaves_no_process():
    box = Sandbox(workers=2, limits=Limits(wall_s=30))
    zygotes = [info["pid"] for info in box.info]
    box.close()
    assert wait_gone(zygotes)
    box.close()  # idempotent


def test_garbage_collected_sandbox_stops_its_zygotes():
    box = Sandbox(workers=1)
    zygotes = [info["pid"] for info in box.info]
    del box
    assert wait_gone(zygotes)


def test_crashed_zygote_gives_sandbox_error_and_restarts():
    with Sandbox(workers=1, limits=Limits(wall_s=20)) as box:
        zygote = box.info[0]["pid"]
        killer = subprocess.Popen([sys.executable, "-c", f"import os, time; time.sleep(1.0); os.kill({zygote}, 9)"])
        results = box.run_batch(["import time; time.sleep(15)", "import time; time.sleep(15)"])
        killer.wait()
        assert [r.status for r in results] == [Status.SANDBOX_ERROR] * 2
        assert "zygote exited" in results[0].error
        assert box.restarts == 1 and box.info[0]["pid"] != zygote
        assert box.run("print('back')").stdout == "back\n"
        assert wait_gone([zygote])


CALLER = textwrap.dedent("""
    import sys, time
    from sandbox import Sandbox, Limits
    box = Sandbox(workers=2, limits=Limits(wall_s=60, cpu_s=60))
    print(" ".join(str(i["pid"]) for i in box.info), flush=True)
    box.run_batch(["while True: pass"] * 4)
""")


def test_terminated_caller_leaves_no_process():
    for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
        caller = subprocess.Popen(
            [sys.executable, "-c", CALLER],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
            # SIGINT as a terminal sends it, even where the tests run with it
            # ignored (a background job of a non-interactive shell inherits that)
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        zygotes = [int(p) for p in caller.stdout.readline().split()]
        time.sleep(0.5)  # the endless programs are running now
        tree = set(zygotes)
        for z in zygotes:
            tree |= descendants(z)
        assert len(tree) >= 4
        caller.send_signal(sig)
        caller.wait(timeout=10 * SLOWDOWN)
        assert wait_gone(tree, timeout=5 * SLOWDOWN), f"left behind after {sig.name}"
