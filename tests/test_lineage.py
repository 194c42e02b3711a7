"""Strings cut into the steps of the programs seen before them (what the
HTTP service does with SandboxFusion's `run_code`): the pieces always join to
the string, and a chain of strings runs from snapshots with the results of
running each string from scratch."""

import os
import sys

import pytest

from sandbox import Limits, Sandbox
from sandbox._lineage import MAX_CHARS, Lineage

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "bench"))
from workload import make_workload, tree_order

STEPS = ["# Step 1: a\na = 3\nb = 4", "# Step 2: sum\nc = a + b\nprint(c)", "# Step 3\nprint(c * 2)"]


def test_a_chain_of_strings_is_cut_along_its_parents():
    lineage = Lineage()
    got = [lineage.split("\n".join(STEPS[:k])) for k in range(1, 4)]
    assert got == ["\n".join(STEPS[:1]), STEPS[:2], STEPS]
    # A sibling of step 3 and a grandchild of step 2's sibling: cut at their own parents.
    assert lineage.split("\n".join([*STEPS[:2], "print(a)"])) == [*STEPS[:2], "print(a)"]
    assert lineage.split("\n".join([*STEPS, "d = 1", "print(d)"])) == [*STEPS, "d = 1\nprint(d)"]


def test_every_cut_joins_to_the_string():
    lineage = Lineage()
    for program in tree_order(make_workload(n_problems=20, seed=2)):
        cut = lineage.split(program.source)
        assert (cut if isinstance(cut, str) else "\n".join(cut)) == program.source
        assert isinstance(cut, str) or len(cut) == len(program.steps)


def test_trailing_whitespace_of_the_parent_does_not_matter():
    lineage = Lineage()
    lineage.split("x = 1  \n\n")
    assert lineage.split("x = 1\nprint(x)") == ["x = 1", "print(x)"]
    lineage.split("y = 2")
    assert lineage.split("y = 2\n\n\nprint(y)") == ["y = 2", "\n\nprint(y)"]  # cut where the parent ends


def test_strings_that_extend_nothing_stay_strings():
    lineage = Lineage()
    assert lineage.split("x = 1") == "x = 1"
    assert lineage.split("x = 10\nprint(x)") == "x = 10\nprint(x)"  # "x = 1" is a prefix, not a line
    assert lineage.split("x = 1") == "x = 1"  # itself is no parent
    assert lineage.split("") == "" and lineage.split("\n  \n") == "\n  \n" and len(lineage) == 2


def test_remembers_a_bounded_number_of_programs():
    lineage = Lineage(max_programs=3)
    for i in range(5):
        lineage.split(f"v = {i}")
    assert len(lineage) == 3
    assert lineage.split("v = 0\nprint(v)") == "v = 0\nprint(v)"  # forgotten
    assert lineage.split("v = 4\nprint(v)") == ["v = 4", "print(v)"]


def test_long_strings_are_neither_cut_nor_remembered():
    lineage = Lineage()
    long = "x = 1\n" + "# " + "y" * MAX_CHARS
    assert lineage.split(long) == long and len(lineage) == 0


@pytest.fixture(scope="module")
def boxes():
    limits = Limits(wall_s=3.0, cpu_s=3.0, memory_mb=512)
    with Sandbox(workers=2, limits=limits) as snap, Sandbox(workers=2, limits=limits, snapshots=False) as fresh:
        yield snap, fresh


def outcome(r):
    return (r.status, r.stdout, r.stderr, r.error, r.exit_code)


def test_a_chain_of_strings_runs_from_snapshots_as_from_scratch(boxes):
    snap, fresh = boxes
    programs = [p.source for p in tree_order(make_workload(n_problems=8, seed=4)) if p.kind != "endless"]
    lineage = Lineage()
    got = [snap.run(lineage.split(code), release_prefixes=False) for code in programs]
    want = fresh.run_batch(programs)
    for code, a, b in zip(programs, got, want):
        assert outcome(a) == outcome(b), code
    assert any("Traceback" in r.stderr for r in want)  # tracebacks, line numbers included, are the same
    assert sum(r.snapshot_steps for r in got) > len(programs)


@pytest.mark.parametrize(
    "chain",
    [
        ["for i in range(2):\n    print(i)", "for i in range(2):\n    print(i)\n    print(-i)"],  # the block goes on
        ["x = (", "x = (\n  1)\nprint(x)"],  # the parent does not parse; the child does
        ['"doc"', '"doc"\nprint(__doc__)'],  # alone, a leading string would be the docstring
        ["import sys", "import sys\nprint(sys.argv)\nraise SystemExit(3)"],
    ],
)
def test_cuts_that_do_not_parse_alone_run_as_from_scratch(boxes, chain):
    snap, fresh = boxes
    lineage = Lineage()
    got = [snap.run(lineage.split(code), release_prefixes=False) for code in chain]
    assert isinstance(lineage.split(chain[-1] + "\npass"), list)
    for a, b in zip(got, fresh.run_batch(chain)):
        assert outcome(a) == outcome(b)
