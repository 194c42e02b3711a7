"""Answer extraction and equivalence, with math-verify.

math-verify enforces its own timeouts with `signal.alarm`, which only works in
the main thread; elsewhere we pass `None` and bound the call ourselves. A
grading call never hangs and never raises.
"""

from __future__ import annotations

import concurrent.futures
import threading

GRADE_TIMEOUT_S = 5.0
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="grade")
_pool_lock = threading.Lock()


def _off_main_thread(answer: str, truth: str, timeout_s: float) -> bool:
    """Run the comparison in the grading thread, bounded by our own timeout.
    A call that overruns keeps its thread busy, so later grades get a fresh
    pool instead of queueing behind it (the stuck thread is abandoned)."""
    global _pool
    with _pool_lock:
        pool = _pool
    future = pool.submit(_verify, answer, truth, None)
    try:
        return future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        with _pool_lock:
            if _pool is pool:
                _pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="grade")
        pool.shutdown(wait=False, cancel_futures=True)
        return False


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`), braces balanced.

    >>> last_boxed(r"so \\boxed{\\frac{1}{2}} and \\boxed{3}")
    '3'
    """
    for marker in ("\\boxed{", "\\fbox{"):
        start = text.rfind(marker)
        if start < 0:
            continue
        i, depth = start + len(marker), 1
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start + len(marker) : i - 1].strip()
    return None


def _verify(answer: str, truth: str, timeout: int | None) -> bool:
    from math_verify import parse, verify

    gold = parse(f"${truth}$", parsing_timeout=timeout)
    pred = parse(f"${answer}$", parsing_timeout=timeout)
    if not gold or not pred:
        return answer.strip() == truth.strip()
    return bool(verify(gold, pred, timeout_seconds=timeout))


def is_equivalent(answer: str | None, truth: str, timeout_s: float = GRADE_TIMEOUT_S) -> bool:
    """Whether `answer` (an extracted answer, e.g. from `last_boxed`) equals the
    ground truth `truth` (LaTeX as in the problem sets). False on any failure."""
    if answer is None or not answer.strip():
        return False
    if answer.strip() == truth.strip():
        return True
    if threading.current_thread() is threading.main_thread():
        try:
            return _verify(answer, truth, int(max(1, timeout_s)))
        except Exception:
            return False
    try:
        return _off_main_thread(answer, truth, timeout_s)
    except Exception:
        return False


def grade(solution_text: str, truth: str) -> tuple[str | None, bool]:
    """The last boxed answer of a solution and whether it is correct."""
    answer = last_boxed(solution_text)
    return answer, is_equivalent(answer, truth)
