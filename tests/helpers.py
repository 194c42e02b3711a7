"""What several test modules share: process-tree probes, the self-signal
cases, a prompt for the real models. Test modules import from here, never
from each other."""

import os
import time

from sandbox import Status

# How much longer process start-up and teardown may take than in a plain
# build: scripts/sanitize.sh sets it for its ASan/UBSan runs.
SLOWDOWN = float(os.environ.get("SBX_TEST_SLOWDOWN", "1"))


def descendants(pid: int) -> set[int]:
    """Every live descendant of pid, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids, timeout=5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


# A process signalling itself behaves as in plain Python; signals to anyone
# else stay refused (test_cannot_signal_the_caller_or_others).
SELF_SIGNALS = {
    "raise(SIGSEGV)": ("import faulthandler; faulthandler._sigsegv()", Status.KILLED, "SIGSEGV"),
    "abort": ("import os; os.abort()", Status.KILLED, "SIGABRT"),
    "kill(getpid, SIGTERM)": ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", Status.KILLED, "SIGTERM"),
    "handled raise": (
        "import signal\nsignal.signal(signal.SIGUSR1, lambda s, f: print('handled', s))\n"
        "signal.raise_signal(signal.SIGUSR1)\nprint('after')",
        Status.OK,
        "handled 10\nafter\n",
    ),
    "pause + alarm": (
        "import signal\nsignal.signal(signal.SIGALRM, lambda s, f: print('alarm'))\n"
        "signal.alarm(1)\nsignal.pause()\nprint('back')",
        Status.OK,
        "alarm\nback\n",
    ),
    "sigwait": (
        "import signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])\n"
        "signal.raise_signal(signal.SIGUSR2)\nprint(signal.sigwait([signal.SIGUSR2]))",
        Status.OK,
        "12\n",
    ),
    "pthread_kill(self)": (
        "import signal, threading\nsignal.signal(signal.SIGUSR1, lambda s, f: print('got'))\n"
        "signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)\nprint('after')",
        Status.OK,
        "got\nafter\n",
    ),
}


def check_self_signal(r, status, expected):
    assert r.status is status, r
    assert (expected in r.error) if status is Status.KILLED else (r.stdout == expected), r


STEP_PROMPT = (
    "<|im_start|>user\nSolve with Python code, one step at a time.\n"
    "Question: A box holds 12 pencils. How many pencils are in 5 boxes?<|im_end|>\n"
    "<|im_start|>assistant\n<code>\n# Step 1: pencils per box\npencils_per_box = 12\n<end_of_step>\n\n"
    "# Step 2:"
)
