"""Prefix snapshots: programs of steps run from the live state their longest
prefix left behind, with the same results as from scratch, and without giving
user code in a snapshot-bearing process any power to fork or reach out."""

import contextlib
import os
import random
import signal
import sys
import time

import pytest

from sandbox import Limits, Sandbox, Status, _core
from tests.helpers import SELF_SIGNALS, alive, check_self_signal, descendants, wait_gone

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench"))
from workload import make_workload, tree_order

LIMITS = Limits(wall_s=2.0, cpu_s=2.0, memory_mb=512)


@pytest.fixture(scope="module")
def snap():
    with Sandbox(workers=2, limits=LIMITS) as box:
        assert box.snapshots_active
        yield box


@pytest.fixture(scope="module")
def fresh():
    with Sandbox(workers=2, limits=LIMITS, snapshots=False) as box:
        yield box


def same(a, b) -> bool:
    return (a.status, a.stdout, a.stderr, a.error) == (b.status, b.stdout, b.stderr, b.error)


def test_each_step_runs_once(snap):
    steps = [f"# Step {i}\nv{i} = {i} * 2\nprint('step', {i}, v{i})" for i in range(4)]
    results = snap.run_batch([steps[:k] for k in range(1, 5)], release_prefixes=False)
    assert [r.snapshot_steps for r in results] == [0, 1, 2, 3]
    assert results[-1].stdout == "".join(f"step {i} {i * 2}\n" for i in range(4))
    later = snap.run(steps + ["print(v0 + v3)"])
    assert later.snapshot_steps == 4 and later.stdout.endswith("step 3 6\n6\n")


def test_the_runner_warm_up_reaches_no_program(snap):
    """The zygote takes a job's path before it forks (zygote.warm_runner):
    none of its names, output or line count reach a program."""
    names = "names = sorted(k for k in globals() if not k.startswith('__'))"
    steps = snap.run([names, "print(names)\nundefined_after + 1"])
    assert steps.stdout == "[]\n"
    assert 'File "<program>", line 3' in steps.stderr
    joined = snap.run(names + "\nprint(names)\n1 / 0")
    assert joined.stdout == "[]\n" and "line 3" in joined.stderr


def test_benchmark_workload_same_as_from_scratch(snap, fresh):
    programs = tree_order(make_workload(n_problems=10, seed=3))
    # Every program but the never-ending ones takes milliseconds: a limit far
    # above that keeps a loaded machine from timing out a finite one.
    limits = Limits(wall_s=3.0, cpu_s=3.0, memory_mb=512)
    got = snap.run_batch([list(p.steps) for p in programs], limits)
    want = fresh.run_batch([list(p.steps) for p in programs], limits)
    assert sum(r.snapshot_steps for r in got) > sum(len(p.steps) for p in programs) // 2
    endless = 0
    for p, a, b in zip(programs, got, want):
        if p.kind == "endless":
            endless += 1
            assert a.status is b.status is Status.TIMEOUT, (a, b)
        else:
            assert same(a, b), (p.steps, a, b)
    assert endless  # the workload has some


def unique_paths(n: int, depth: int = 4) -> list[list[str]]:
    """Programs of steps that share no prefix with each other."""
    return [[f"# path {i} step {k}\nv{k} = {i} + {k}\nprint(v{k})" for k in range(depth)] for i in range(n)]


def test_programs_that_share_nothing_leave_no_snapshot():
    with Sandbox(workers=2, limits=LIMITS) as box:
        paths = unique_paths(48)
        results = box.run_batch(paths[:24])
        for i in range(24, 48, 6):  # and as calls, as a search would send them
            results += box.run_batch(paths[i : i + 6])
        assert all(r.ok and r.snapshot_steps == 0 for r in results)
        assert box.snapshot_stats()["live"] == 0
        # Once calls extend programs of earlier calls, ends are kept again.
        chain = [f"c{k} = {k}\nprint('chain', {k})" for k in range(12)]
        got = [box.run(chain[:k]) for k in range(1, 13)]
        assert got[1].snapshot_steps == 0 and [r.snapshot_steps for r in got[-3:]] == [9, 10, 11]


def test_shared_prefix_kept_once_for_the_batch():
    """Siblings whose parent ran in no call: the first keeps their prefix
    (every step of it, in case the last fails) for the others."""
    with Sandbox(workers=1, limits=LIMITS, slots=1) as box:
        base = ["p = 1\nprint('p')", "q = p + 1\nprint('q')"]
        results = box.run_batch([base + [f"print(q * {i})"] for i in range(4)])
        assert [r.stdout for r in results] == [f"p\nq\n{2 * i}\n" for i in range(4)]
        # (a sibling may start before the second step's snapshot reported in)
        assert results[0].snapshot_steps == 0 and results[-1].snapshot_steps == 2
        failing = ["r = 3\nprint('r')", "1 / 0"]
        results = box.run_batch([failing + [f"print({i})"] for i in range(3)])
        assert all(r.status is Status.ERROR for r in results)
        assert results[0].snapshot_steps == 0 and results[-1].snapshot_steps == 1


@pytest.mark.parametrize(
    "kept, extended",
    [
        # the end of a path without the newline the same step has inside a longer one
        (["a = 1\n", "b = 2"], ["a = 1\n", "b = 2\n", "print(a + b)\n1 / 0"]),
        # trailing spaces and blank lines after a step, lines unchanged before the next
        (
            ["x = 1", "def f():\n    return 1 / x_missing"],
            ["x = 1   ", "def f():\n    return 1 / x_missing\n\n", "y = 2\t", "f()"],
        ),
    ],
    ids=["last-step-newline", "trailing-blank-lines"],
)
def test_trailing_whitespace_variants_share_a_snapshot(snap, fresh, kept, extended):
    snap.run(kept, release_prefixes=False)
    got, want = snap.run(extended, release_prefixes=False), fresh.run(extended)
    assert got.snapshot_steps == len(kept)
    assert same(got, want) and got.status is Status.ERROR, (got, want)
    assert 'File "<program>", line' in got.stderr


def test_steps_that_start_on_other_lines_do_not_share_a_snapshot(snap, fresh):
    """A function defined after a blank line reports other line numbers: its
    prefix's snapshot is not the same state."""
    snap.run(["z = 0", "def g():\n    return 1 / z"], release_prefixes=False)
    program = ["z = 0\n", "def g():\n    return 1 / z", "g()"]
    got, want = snap.run(program), fresh.run(program)
    assert got.snapshot_steps <= 1 and same(got, want), (got, want)
    assert "line 4, in g" in got.stderr


def random_step(rng: random.Random, depth: int) -> str:
    """One step of a reasoning path: state, output on both streams, failures."""
    n = rng.randint(2, 9)
    return rng.choice(
        [
            f"v{depth} = {n} * {rng.randint(1, 9)}\nprint('v{depth} =', v{depth})",
            f"from fractions import Fraction\nf{depth} = Fraction({n}, {n + 1}) + Fraction(1, {n})\nprint(f{depth})",
            f"import sympy as sp\nx = sp.Symbol('x')\nprint(sp.solve(x**2 - {n * n}, x))",
            f"total = 0\nfor i in range({n * 100}):\n    total += i % {n}\nprint(total)",
            f"import sys\nprint('note {depth}', file=sys.stderr)\nseen = {{'a{depth}', 'b', 'c{n}'}}\nprint(seen)",
            f"import random\nrandom.seed({n})\nprint(random.random())",
            f"def helper{depth}(k):\n    return 10 // (k - {n})\nprint(helper{depth}({n + 1}))",
            f"print(helper{depth - 1}({n}) if 'helper{depth - 1}' in dir() else 'no helper')",
            '"""A docstring-like string."""\nprint(__doc__)',
            f"import warnings\nwarnings.warn('careful {n}')\nprint('warned')",
            f"items = [1, 2, 3]\nprint(items[{n}])",  # IndexError
            "raise SystemExit(3)" if n == 2 else "import sys; sys.exit(0)" if n == 3 else "print('plain')",
            f"for i in range({n}):" if n % 4 == 0 else f"print({n})",  # may not parse alone
            "    print('in the loop', i)" if n % 3 == 0 else f"print('top', {n})",
            f"y{depth} = (" if n == 9 else f"print({depth})",  # a syntax error
        ]
    )


def random_tree(rng: random.Random, depth: int = 5, width: int = 3) -> list[list[list[str]]]:
    """Programs of a search tree, level by level: every node's children together."""
    levels, frontier = [], [[]]
    for d in range(depth):
        level = [path + [random_step(rng, d)] for path in frontier for _ in range(width)]
        levels.append(level)
        frontier = rng.sample(level, min(3, len(level)))
    return levels


def test_random_step_paths_same_as_from_scratch(snap, fresh):
    rng = random.Random(11)
    resumed = total = 0
    for _ in range(4):
        for level in random_tree(rng):
            got, want = snap.run_batch(level), fresh.run_batch(level)
            for program, a, b in zip(level, got, want):
                assert same(a, b), (program, a, b)
                resumed += a.snapshot_steps
                total += len(program)
    assert resumed > total // 3


@pytest.mark.slow
def test_random_trees_under_pressure_same_as_from_scratch(fresh):
    """A longer random run: whole trees or levels per batch, prefixes released
    or kept at random, and a snapshot cap small enough to evict all the time."""
    rng = random.Random(1)
    with Sandbox(workers=2, limits=LIMITS, max_snapshots=4) as box:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tree = random_tree(rng, depth=6, width=3)
            batches = tree if rng.random() < 0.5 else [[p for level in tree for p in level]]
            for batch in batches:
                got = box.run_batch(batch, release_prefixes=rng.random() < 0.8)
                for program, a, b in zip(batch, got, fresh.run_batch(batch)):
                    assert same(a, b), (program, a, b)
        assert box.snapshot_stats()["live"] <= 4


def test_steps_that_only_parse_together(snap):
    assert snap.run(["for i in range(2):", "    print(i)"]).stdout == "0\n1\n"
    snap.run(["x = 1"], release_prefixes=False)
    r = snap.run(["x = 1", "if x:", "    print('yes')"])  # rerun from scratch, whole
    assert (r.status, r.stdout, r.snapshot_steps) == (Status.OK, "yes\n", 0)
    snap.run(["print('a')"], release_prefixes=False)
    r = snap.run(["print('a')", "y = ("])  # from scratch, nothing runs
    assert (r.status, r.stdout) == (Status.ERROR, "") and "SyntaxError" in r.error


# Steps whose meaning alone differs from theirs in the joined program, with
# what shows the case happened: a leading string (alone it would become the
# __doc__), __future__ imports (only first in a program), and compile-time
# warnings (the joined program prints them before anything runs, under the
# warning filters it started with, and none if a later step does not parse).
ALONE_DIFFERS = [
    (["x = 1", '"""a string first"""', "print(__doc__)"], "None"),
    (['"""the docstring"""\nx = 1', "print(__doc__)"], "the docstring"),
    (["x = 1", "from __future__ import annotations\nprint('no')"], "SyntaxError"),
    (["from __future__ import annotations\ndef f(a: undefined): pass", "print(f.__annotations__)"], "'undefined'"),
    (["x = 0 if True else 1(2)", "for i in range(2):"], "IndentationError"),
    (["import sys\nprint('a', file=sys.stderr)", "y = 0 if True else 1(2)\nprint('b')"], "SyntaxWarning"),
    (["import warnings\nwarnings.simplefilter('error')", "y = 0 if True else 1(2)\nprint('b')"], "SyntaxWarning"),
]


@pytest.mark.parametrize("path, shows", ALONE_DIFFERS)
def test_steps_run_as_in_the_joined_program(snap, fresh, path, shows):
    snap.run(path[:1], release_prefixes=False)
    a, b = snap.run(path), fresh.run(path)
    assert same(a, b), (a, b)
    assert shows in a.stdout + a.stderr + (a.error or ""), a


def test_time_limits_count_the_prefix(snap):
    limits = Limits(wall_s=1.0, cpu_s=5.0)
    first = ["import time\ntime.sleep(0.6)"]
    assert snap.run(first, limits, release_prefixes=False).ok
    r = snap.run(first + ["time.sleep(0.6)"], limits)
    assert r.snapshot_steps == 1 and r.status is Status.TIMEOUT


BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {}:\n    pass"


def test_cpu_limit_counts_the_prefix(snap):
    """The prefix's CPU time counts toward the whole program's limit, both in
    a child forked from the snapshot and in the snapshot itself (the last
    program of a batch to need it). RLIMIT_CPU rounds up to whole seconds, so
    a program may get up to a second more, never the whole limit again."""
    limits = Limits(wall_s=30.0, cpu_s=2.0)
    prefix = ["import os\npid = os.getpid()\n" + BURN.format(1.3)]
    light = "print(os.getpid() == pid)"
    heavy = "print(os.getpid() == pid, flush=True)\n" + BURN.format(1.9)
    for order in ((heavy, light), (light, heavy)):
        assert snap.run(prefix, limits, release_prefixes=False).ok
        forked, in_place = snap.run_batch([prefix + [order[0]], prefix + [order[1]]], limits)
        assert forked.snapshot_steps == in_place.snapshot_steps == 1
        assert forked.stdout == "False\n" and in_place.stdout == "True\n"
        for r, step in ((forked, order[0]), (in_place, order[1])):
            if step is heavy:
                assert (r.status, r.error) == (Status.TIMEOUT, "CPU-time limit exceeded"), r
            else:
                assert r.ok and r.cpu_s < 0.5, r  # the prefix's CPU is not the step's


def test_the_last_program_of_a_prefix_runs_in_its_process(snap):
    base = ["import os\npid = os.getpid()"]
    children = [base + [f"print({i}, os.getpid() == pid)"] for i in range(3)]
    snap.run(base, release_prefixes=False)
    results = snap.run_batch(children)
    assert [r.stdout for r in results] == ["0 False\n", "1 False\n", "2 True\n"]
    assert snap.run(base + ["print(3)"]).snapshot_steps == 0  # the prefix is gone
    snap.run(base, release_prefixes=False)
    results = snap.run_batch(children, release_prefixes=False)
    assert [r.stdout for r in results] == ["0 False\n", "1 False\n", "2 False\n"]
    assert snap.run(base + ["print(3)"], release_prefixes=False).snapshot_steps == 1


def test_a_program_continues_in_a_snapshot_left_mid_program(snap, fresh):
    """Two programs share a prefix that neither is: one of them leaves a
    snapshot after it. A later program, the last to need it, continues in
    that snapshot's process and on its pipes, its output after the prefix's."""
    prefix = ["import sys\nprint('p')", "print('q', file=sys.stderr)"]
    snap.run_batch([prefix + ["x = 1"], prefix + ["x = 2"]])
    program = prefix + ["print('b', file=sys.stderr)\nprint('c')\n1 / 0"]
    got = snap.run(program)
    assert got.snapshot_steps == 2
    assert (got.stdout, got.stderr.splitlines()[:2]) == ("p\nc\n", ["q", "b"])
    assert same(got, fresh.run(program)), got
    # That process ran `program`: only the snapshot after the first step is left.
    assert snap.run(prefix + ["print(1)"]).snapshot_steps == 1


def test_a_program_waits_for_a_snapshot_still_being_forked(snap):
    """The program that leaves a snapshot mid-program may answer before the
    snapshot's process has said it lives; a program sent right after waits
    for it rather than redoing steps from a shorter prefix. (Before, this
    fell back in about 2% of rounds, more under load or a sanitizer.)"""
    for i in range(300):
        prefix = [f"print('p{i}')", "print('q')"]
        snap.run_batch([prefix + ["x = 1"], prefix + ["x = 2"]])
        got = snap.run(prefix + ["print('c')"])
        assert (got.snapshot_steps, got.stdout) == (2, f"p{i}\nq\nc\n"), (i, got)


def test_a_snapshot_inside_a_clone_is_not_evicted():
    """With room for one snapshot, another going live evicts the least
    recently used. A snapshot that has just let a fork through may still be
    inside that clone: evicting it then aborted the fork and its program ran
    again from scratch (and killing its process group killed a process it
    had forked). Here about 70% of the siblings ran without their snapshot
    before; 8-30% now (those sent after an eviction between two clones)."""
    with Sandbox(workers=1, max_snapshots=1, limits=LIMITS) as box:
        siblings = without = 0
        for i in range(100):
            box.run([f"a = {i}"], release_prefixes=False)
            batch = [[f"a = {i}", f"x = {k}"] for k in range(4)] + [[f"q = {i}", f"r = {k}"] for k in range(3)]
            got = box.run_batch(batch)
            assert all(r.status == Status.OK for r in got), got
            siblings += 4
            without += sum(r.snapshot_steps == 0 for r in got[:4])
        assert without < 0.5 * siblings, (without, siblings)


def test_siblings_share_nothing(snap):
    base = ["state = [1]\nprint('base')"]
    snap.run(base, release_prefixes=False)
    results = snap.run_batch([base + ["state.append(2)\nprint(state)"], base + ["print(state)"]] * 3)
    assert all(r.snapshot_steps == 1 for r in results)
    assert [r.stdout for r in results[:2]] == ["base\n[1, 2]\n", "base\n[1]\n"]
    assert [r.stdout for r in results] == [results[0].stdout, results[1].stdout] * 3


def snapshot_pids(box) -> set[int]:
    """Live processes of the box that are not spares: snapshots (and programs)."""
    found = set()
    for info in box.info:
        found |= {p for p in descendants(info["pid"]) if alive(p)}
    return found


# Each attack prints in every process it manages to create, and must end in
# the error that says the kernel refused.
ATTACKS = {
    "fork": ("import os\nos.fork()\nprint('forked')", "PermissionError"),
    "spawn": ("import subprocess\nsubprocess.run(['echo', 'spawned'])", "PermissionError"),
    "thread": (
        "import threading\nthreading.Thread(target=print, args=('thread',)).start()",
        "RuntimeError: can't start new thread",
    ),
    # The very clone the zygote lets a snapshot make when it asks for one.
    "raw clone": (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"pid = libc.syscall({_core.syscall_number('clone')}, 0x8000 | 17, 0, 0, 0, 0)\nprint('clone', pid)\n"
        "raise OSError(ctypes.get_errno(), 'clone')",
        "[Errno 1] clone",
    ),
}
if _core.syscall_number("vfork") >= 0:  # aarch64 has none
    ATTACKS["vfork"] = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"pid = libc.syscall({_core.syscall_number('vfork')})\nprint('vfork', pid)\n"
        "raise OSError(ctypes.get_errno(), 'vfork')",
        "[Errno 1] vfork",
    )


@pytest.mark.parametrize("release", [False, True], ids=["forked", "in place"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_no_process_creation_from_a_snapshot(snap, attack, release):
    code, refused = ATTACKS[attack]
    base = [f"# prefix for {attack}\nready = True"]
    snap.run(base, release_prefixes=False)
    r = snap.run(base + [code], release_prefixes=release)
    assert r.snapshot_steps == 1
    assert r.status is Status.ERROR and refused in r.error, r
    assert r.stdout in ("", "clone -1\n", "vfork -1\n")  # printed once, by the program itself


@pytest.mark.parametrize("release", [False, True], ids=["forked", "in place"])
def test_cannot_signal_or_read_the_zygote_or_other_snapshots(snap, release):
    steps = [f"p{i} = {i}" for i in range(3)]
    snap.run_batch([steps[:k] for k in range(1, 4)], release_prefixes=False)
    others = sorted(snapshot_pids(snap))
    zygotes = [info["pid"] for info in snap.info]
    code = (
        "import os, signal\nout = []\n"
        f"for pid in set({others + zygotes}) - {{os.getpid()}}:  # in place, it is one of them\n"
        "    try:\n        os.kill(pid, signal.SIGKILL); out.append('killed')\n"
        "    except PermissionError:\n        out.append('denied')\n"
        "    for name in ('mem', 'environ', 'maps'):\n"
        "        try:\n            open(f'/proc/{pid}/{name}', 'rb').read(1); out.append('read')\n"
        "        except OSError:\n            out.append('denied')\n"
        "print(set(out))"
    )
    r = snap.run(steps + [code], release_prefixes=release)
    assert r.snapshot_steps == 3
    assert r.stdout == "{'denied'}\n", r
    others = [p for p in others if alive(p)]  # in place, one of them ran the program
    assert len(others) >= 2 and all(alive(p) for p in zygotes)
    r = snap.run(
        steps[:2]
        + [
            f"import ctypes\nctypes.CDLL(None).syscall({_core.syscall_number('process_vm_readv')}, "
            f"{others[0]}, 0, 0, 0, 0, 0)"
        ],
        release_prefixes=release,
    )
    assert r.status is Status.KILLED  # process_vm_readv


@pytest.mark.parametrize("release", [False, True], ids=["forked", "in place"])
def test_signals_to_itself_from_a_snapshot(snap, release):
    """A process forked from a snapshot has another pid than the snapshot whose
    filter it inherits: the zygote checks its signals against its own pid."""
    base = [f"# prefix for signals, release={release}\nready = True"]
    snap.run(base, release_prefixes=False)
    for name in sorted(SELF_SIGNALS):
        code, status, expected = SELF_SIGNALS[name]
        r = snap.run(base + [code], release_prefixes=release)
        assert r.snapshot_steps == 1, (name, r)
        check_self_signal(r, status, expected)
        snap.run(base, release_prefixes=False)  # in place, the snapshot was used up


def test_limits_stay_put_in_a_process_from_a_snapshot(snap):
    """A process from a snapshot may set its own CPU limit (it does, to what
    its program has left), but never raise a hard limit, touch another
    limit, or another process's."""
    zygote = snap.info[0]["pid"]
    snap.run(["import resource"], release_prefixes=False)
    code = (
        "out = []\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_CPU)\n"
        "for what, args in (('cpu hard up', (resource.RLIMIT_CPU, (hard + 5, hard + 5))),\n"
        "                   ('memory', (resource.RLIMIT_AS, (2**40, 2**40))),\n"
        "                   ('files', (resource.RLIMIT_NOFILE, (8, 8)))):\n"
        "    try:\n        resource.setrlimit(*args); out.append(what)\n"
        "    except (ValueError, OSError):\n        pass\n"
        "try:\n"
        f"    resource.prlimit({zygote}, resource.RLIMIT_CPU, (1, 1)); out.append('zygote')\n"
        "except OSError:\n    pass\n"
        "resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))  # allowed: its own, within hard\n"
        "print(out)"
    )
    for release in (False, True):
        r = snap.run(["import resource", code], release_prefixes=release)
        assert (r.status, r.stdout, r.snapshot_steps) == (Status.OK, "[]\n", 1), r


def test_a_snapshot_that_dies_is_replaced():
    with Sandbox(workers=1, limits=LIMITS) as box:
        steps = ["a = 1\nprint(a)", "b = a + 1\nprint(b)", "print(a + b)"]
        box.run_batch([steps[:1], steps[:2]])
        for pid in snapshot_pids(box):
            with contextlib.suppress(ProcessLookupError):  # a program's process may end meanwhile
                os.kill(pid, signal.SIGKILL)  # snapshots and spares alike
        time.sleep(0.2)
        r = box.run(steps)
        assert (r.status, r.stdout) == (Status.OK, "1\n2\n3\n")


def test_eviction_under_small_caps_leaves_nothing_behind():
    paths = [[f"x{j} = {j}\nprint({i})" for j in range(6)] for i in range(4)]
    with Sandbox(workers=1, limits=LIMITS, max_snapshots=3) as box:
        zygote = box.info[0]["pid"]
        for path in paths:
            results = box.run_batch([path[:k] for k in range(1, 7)])
            assert all(r.ok for r in results)
            assert box.snapshot_stats()["live"] <= 3
        time.sleep(0.3)
        assert len([p for p in descendants(zygote) if alive(p)]) <= 2 + 3  # spares + snapshots
    with Sandbox(workers=1, limits=LIMITS, snapshot_memory_mb=1) as box:
        zygote = box.info[0]["pid"]
        for path in paths:
            box.run_batch([path[:k] for k in range(1, 7)])
            assert box.snapshot_stats()["live"] <= 1  # the newest stays, alone over the cap
        left = descendants(zygote)
    assert wait_gone(left | {zygote})


def test_snapshots_can_be_turned_off(fresh):
    assert not fresh.snapshots_active
    r = fresh.run(["x = 2", "print(x * 3)"])
    assert (r.stdout, r.snapshot_steps) == ("6\n", 0)
    assert fresh.snapshot_stats()["live"] == 0
