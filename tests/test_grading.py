"""Answer extraction and equivalence."""

import threading

import pytest

from rstar.grading import grade, is_equivalent, last_boxed


@pytest.mark.parametrize(
    "text,expected",
    [
        (r"The answer is \boxed{16}.", "16"),
        (r"\boxed{\frac{1}{2}} then \boxed{\sqrt{2}}", r"\sqrt{2}"),
        (r"nested \boxed{\left\{1, 2\right\}}", r"\left\{1, 2\right\}"),
        (r"\fbox{7}", "7"),
        ("no box here", None),
        (r"unbalanced \boxed{12", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    "answer,truth,ok",
    [
        ("16", "16", True),
        ("16.0", "16", True),
        ("0.5", r"\frac{1}{2}", True),
        (r"\frac{2}{4}", r"\frac{1}{2}", True),
        ("2\\sqrt{2}", r"\sqrt{8}", True),
        ("17", "16", False),
        ("", "16", False),
        (None, "16", False),
        ("x^2+1", "1+x^2", True),
    ],
)
def test_is_equivalent(answer, truth, ok):
    assert is_equivalent(answer, truth) is ok


def test_grading_off_the_main_thread_never_raises():
    results = {}

    def work():
        results["a"] = is_equivalent("0.5", r"\frac{1}{2}")
        results["b"] = is_equivalent(r"\frac{", "1")

    t = threading.Thread(target=work)
    t.start()
    t.join(timeout=30)
    assert results == {"a": True, "b": False}


def test_grade_a_solution():
    assert grade(r"<answer>So \boxed{42}<end_of_answer>", "42") == ("42", True)
    assert grade("no answer", "42") == (None, False)


def test_a_stuck_grade_does_not_block_the_next(monkeypatch):
    """After one comparison overruns its timeout, the next one still runs."""
    import time

    import rstar.grading as grading

    real = grading._verify
    calls = []

    def slow_once(answer, truth, timeout):
        calls.append(answer)
        if answer == "stuck":
            time.sleep(3)
            return True
        return real(answer, truth, timeout)

    monkeypatch.setattr(grading, "_verify", slow_once)
    results = {}

    def work():
        results["stuck"] = grading.is_equivalent("stuck", "1", timeout_s=0.5)
        t = time.perf_counter()
        results["next"] = grading.is_equivalent("0.5", r"\frac{1}{2}", timeout_s=2.0)
        results["next_s"] = time.perf_counter() - t

    t = threading.Thread(target=work)
    t.start()
    t.join(timeout=30)
    assert results["stuck"] is False  # timed out: a wrong answer, not a hang
    assert results["next"] is True and results["next_s"] < 2.0  # not queued behind it
