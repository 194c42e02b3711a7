"""`Sandbox.submit`: batches from any thread join the running dispatch as
they arrive, each answered as soon as its own programs have ended."""

import threading

import pytest

from sandbox import Limits, Sandbox, Status

LIMITS = Limits(wall_s=10.0, cpu_s=10.0)


class Answer:
    def __init__(self):
        self.event = threading.Event()
        self.results = None

    def __call__(self, results):
        self.results = results
        self.event.set()

    def get(self, timeout=30.0):
        assert self.event.wait(timeout), "no answer"
        return self.results


@pytest.fixture(scope="module")
def box():
    with Sandbox(workers=2, limits=LIMITS) as sb:
        yield sb


def test_a_slow_batch_holds_back_no_other(box):
    slow, fast = Answer(), Answer()
    box.submit(["import time\ntime.sleep(3)\nprint('slow')"], slow)
    box.submit([f"print({i} * 2)" for i in range(20)], fast)
    assert [r.stdout for r in fast.get()] == [f"{i * 2}\n" for i in range(20)]
    assert not slow.event.is_set()  # answered while the slow one still runs
    assert slow.get()[0].stdout == "slow\n"


def test_batches_from_many_threads_answered_in_their_own_order(box):
    answers = [Answer() for _ in range(8)]

    def client(k):
        box.submit([f"print({k}, {i})" for i in range(10)] + ["1/0", b"not a program"], answers[k])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, answer in enumerate(answers):
        results = answer.get()
        assert [r.stdout for r in results[:10]] == [f"{k} {i}\n" for i in range(10)]
        assert results[10].status is Status.ERROR and results[11].status is Status.SANDBOX_ERROR


def test_run_batch_and_snapshots_go_through_the_dispatch_thread(box):
    steps = [f"v{k} = {k}\nprint('step', {k})" for k in range(4)]
    got = box.run_batch([steps[:k] for k in range(1, 5)], release_prefixes=False)  # the thread runs it
    assert [r.snapshot_steps for r in got] == [0, 1, 2, 3]
    later = Answer()
    box.submit([steps + ["print(v3 + 1)"]], later, release_prefixes=False)
    (r,) = later.get()
    assert r.snapshot_steps == 4 and r.stdout.endswith("step 3\n4\n")
    empty = Answer()
    box.submit([], empty)
    assert empty.get() == []


def test_a_failing_callback_stops_nothing(box, capfd):
    called = threading.Event()

    def bad(results):
        called.set()
        raise ValueError("caller bug")

    box.submit(["print(1)"], bad)
    assert called.wait(30)
    after = Answer()  # answered on the same thread, after the report of the raise
    box.submit(["print(2)"], after)
    assert after.get()[0].stdout == "2\n"
    assert "caller bug" in capfd.readouterr().err


def test_close_answers_what_was_submitted_first():
    sb = Sandbox(workers=1, limits=LIMITS)
    answers = [Answer() for _ in range(3)]
    for i, answer in enumerate(answers):
        sb.submit([f"import time\ntime.sleep(0.3)\nprint({i})"], answer)
    sb.close()
    assert [a.get(0)[0].stdout for a in answers] == ["0\n", "1\n", "2\n"]
    with pytest.raises(RuntimeError, match="closed"):
        sb.submit(["print(1)"], Answer())
    with pytest.raises(RuntimeError, match="closed"):
        sb.run("print(1)")
    sb.close()  # again: nothing to do
