"""The zygote's outcome classifier (csrc/outcome.c) on its own: every rule
that turns what was observed of a child into a status and an error line,
without running a program."""

import signal

import pytest

from sandbox import Status, _core


def exited(code: int) -> int:
    return (code & 0xFF) << 8


def killed_by(sig: int) -> int:
    return int(sig)


def classify(**facts) -> tuple[Status, str, int]:
    status, error, wstatus = _core.classify(**facts)
    return Status.from_code(status), error, wstatus


@pytest.mark.parametrize(
    ("facts", "status", "error"),
    [
        (dict(wstatus=exited(0)), Status.OK, ""),
        (
            dict(wstatus=exited(1), report=b"EZeroDivisionError: division by zero\n"),
            Status.ERROR,
            "ZeroDivisionError: division by zero",
        ),
        (dict(wstatus=exited(3)), Status.ERROR, "exit status 3"),
        (dict(wstatus=exited(1), report=b"MMemoryError"), Status.MEMORY, "MemoryError"),
        (
            dict(wstatus=exited(_core.EXIT_SETUP), report=b"S4:Operation not permitted"),
            Status.SANDBOX_ERROR,
            "4:Operation not permitted",
        ),
        (dict(wstatus=killed_by(signal.SIGSEGV)), Status.KILLED, "killed by signal 11 (SIGSEGV)"),
        (dict(wstatus=killed_by(signal.SIGSYS)), Status.KILLED, "killed by signal 31 (SIGSYS): forbidden system call"),
        (dict(wstatus=killed_by(signal.SIGXCPU)), Status.TIMEOUT, "CPU-time limit exceeded"),
        (
            dict(wstatus=killed_by(signal.SIGKILL), cpu_s=2.0, cpu_limit_s=2.0),
            Status.TIMEOUT,
            "CPU-time limit exceeded",
        ),
        (
            dict(wstatus=killed_by(signal.SIGKILL), cpu_s=0.5, cpu_limit_s=2.0),
            Status.KILLED,
            "killed by signal 9 (SIGKILL)",
        ),
        (dict(wstatus=killed_by(signal.SIGKILL), cpu_s=5.0), Status.KILLED, "killed by signal 9 (SIGKILL)"),
        (dict(wstatus=killed_by(signal.SIGKILL), killed="timeout"), Status.TIMEOUT, "wall-clock limit exceeded"),
        (dict(wstatus=killed_by(signal.SIGKILL), killed="output"), Status.OUTPUT_LIMIT, "output limit exceeded"),
        # The zygote's own kill outranks what the report says...
        (
            dict(wstatus=killed_by(signal.SIGKILL), killed="timeout", report=b"Eboom"),
            Status.TIMEOUT,
            "wall-clock limit exceeded",
        ),
        # ...but not a setup failure, which happened before the program.
        (dict(wstatus=exited(_core.EXIT_SETUP), killed="timeout", report=b"S1:x"), Status.SANDBOX_ERROR, "1:x"),
        # A setup report from a program that exits otherwise is its own error.
        (dict(wstatus=exited(2), report=b"Sfake"), Status.ERROR, "fake"),
    ],
)
def test_a_reaped_child(facts, status, error):
    got, line, wstatus = classify(waited=True, ended=False, **facts)
    assert (got, line) == (status, error)
    assert wstatus == facts["wstatus"]


def test_a_child_answered_on_its_end_mark_is_judged_as_if_it_exited():
    ok = classify(waited=False, ended=True, end_exit=0, wstatus=killed_by(signal.SIGKILL))
    assert ok == (Status.OK, "", exited(0))
    failed = classify(waited=False, ended=True, end_exit=1, report=b"ENameError: x\r\n")
    assert failed == (Status.ERROR, "NameError: x", exited(1))


def test_a_forked_child_that_never_started():
    assert classify(waited=False, ended=False) == (
        Status.SANDBOX_ERROR,
        "sandbox: a forked child did not start",
        exited(0),
    )
    # Killed for its deadline before it said who it is: a timeout.
    assert classify(waited=False, ended=False, killed="timeout")[:2] == (Status.TIMEOUT, "wall-clock limit exceeded")


def test_a_long_report_is_passed_whole():
    # The zygote caps the report pipe (64 KiB); the classifier itself cuts nothing.
    status, line, _ = classify(waited=True, ended=False, wstatus=exited(1), report=b"E" + b"x" * 5000 + b"\n")
    assert status is Status.ERROR and line == "x" * 5000
