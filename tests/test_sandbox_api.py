"""The public API: results, order, step form, limits, bad input."""

import pytest

from sandbox import Limits, Result, Status


def test_run_returns_output_and_timing(sb):
    r = sb.run("print(6 * 7)")
    assert r.status is Status.OK and r.ok
    assert r.stdout == "42\n" and r.stderr == "" and r.error is None
    assert 0 < r.wall_s < 3 and r.cpu_s >= 0 and r.peak_rss_mb > 0
    assert r.exit_code == 0 and not r.truncated


def test_batch_keeps_input_order(sb):
    programs = [f"import time; time.sleep({(9 - i) * 0.01}); print({i})" for i in range(10)]
    results = sb.run_batch(programs)
    assert [r.stdout.strip() for r in results] == [str(i) for i in range(10)]


def test_batch_larger_than_the_slots_completes(sb):
    # Regression: a request queued behind full slots must start when the last
    # child finishes, not wait for the next input.
    results = sb.run_batch([f"print({i})" for i in range(13)])
    assert [r.status for r in results] == [Status.OK] * 13
    assert sb.restarts == 0


def test_step_form_equals_string_form(sb):
    steps = ["x = 3", "y = x * 4\nprint(y)", "print(x + y)"]
    as_steps, as_text = sb.run_batch([steps, "\n".join(steps)])
    assert (as_steps.status, as_steps.stdout) == (as_text.status, as_text.stdout) == (Status.OK, "12\n15\n")


def test_error_line_and_traceback(sb):
    r = sb.run("x = 1\ny = x / 0")
    assert r.status is Status.ERROR
    assert r.error == "ZeroDivisionError: division by zero"
    assert r.stderr.startswith("Traceback") and 'File "<program>", line 2' in r.stderr
    assert "_zygote" not in r.stderr


@pytest.mark.parametrize(
    "code,status,error",
    [
        ("raise SystemExit(0)", Status.OK, None),
        ("import sys; sys.exit()", Status.OK, None),
        ("import sys; sys.exit(3)", Status.ERROR, "SystemExit: 3"),
        ("def f(:\n  pass", Status.ERROR, "SyntaxError: invalid syntax"),
        ("print('a\\x00b')", Status.OK, None),
    ],
)
def test_exits_and_syntax(sb, code, status, error):
    r = sb.run(code)
    assert r.status is status
    assert r.error == error


def test_per_call_limits_override(sb):
    r = sb.run("import time; time.sleep(2); print('done')", limits=Limits(wall_s=0.5))
    assert r.status is Status.TIMEOUT
    assert sb.run("import time; time.sleep(0.6); print('done')").stdout == "done\n"


@pytest.mark.parametrize("program", [None, 42, b"print(1)", ["x = 1", 2]])
def test_bad_programs_are_results_not_exceptions(sb, program):
    r = sb.run(program)
    assert r.status is Status.SANDBOX_ERROR
    assert "must be a str" in r.error


def test_bad_limits_raise_early():
    with pytest.raises(ValueError, match="wall_s"):
        Limits(wall_s=0)
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=-1)


def test_invalid_utf8_output_is_replaced(sb):
    r = sb.run("import sys; sys.stdout.buffer.write(b'ok \\xff\\xfe end'); sys.stdout.flush()")
    assert r.status is Status.OK
    assert r.stdout == "ok \ufffd\ufffd end"


def test_unicode_and_big_ints(sb):
    r = sb.run("print('π ≈ 3.14159, ∑ 😀'); print(2 ** 10000 % 1000, len(str(3 ** 5000)))")
    assert r.stdout == "π ≈ 3.14159, ∑ 😀\n376 2386\n"


def test_lone_surrogates_in_source_are_an_error(sb):
    assert sb.run("print('\ud800')").status is Status.ERROR


def test_one_megabyte_program(sb):
    body = "\n".join(f"v{i} = {i}" for i in range(80000))
    code = body + "\nprint(v79999)"
    assert len(code) > 1_000_000
    r = sb.run(code)
    assert (r.status, r.stdout) == (Status.OK, "79999\n")


def test_fifty_kilobytes_of_output(sb):
    r = sb.run("print('y' * 50_000)")
    assert r.status is Status.OK and len(r.stdout) == 50_001 and not r.truncated


def test_math_stack_works(sb):
    programs = [
        "import sympy as sp\nx = sp.symbols('x')\nprint(sp.solve(x**2 - 5*x + 6, x))",
        "import sympy as sp\nx = sp.symbols('x')\nprint(sp.simplify((x**2 - 1)/(x - 1)))",
        "import sympy as sp\nx = sp.symbols('x')\nprint(sp.integrate(x**2, (x, 0, 3)))",
        "import numpy as np\nprint(np.linalg.solve([[2.0, 1.0], [1.0, 3.0]], [3.0, 5.0]).round(3))",
        "from fractions import Fraction\nprint(Fraction(1, 3) + Fraction(1, 6))",
        "import itertools\nprint(sum(1 for _ in itertools.combinations(range(10), 3)))",
        "import statistics, sympy.combinatorics\nprint(statistics.mean([1, 2, 3]))",
    ]
    out = [r.stdout.strip() for r in sb.run_batch(programs)]
    assert out == ["[2, 3]", "x + 1", "9", "[0.8 1.4]", "1/2", "120", "2"]


def test_result_helpers():
    r = Result.sandbox_error("boom")
    assert r.status is Status.SANDBOX_ERROR and not r.ok and r.error == "boom"
    assert Status("timeout") is Status.TIMEOUT and Status.OK == "ok"


def test_wire_structs_match_the_c_core():
    """sandbox/_protocol.py mirrors csrc/protocol.h's packed structs."""
    from sandbox import _core, _protocol

    assert _protocol.REQUEST.size == _core.REQUEST_SIZE
    assert _protocol.RESPONSE.size == _core.RESPONSE_SIZE
    assert {s.value: Status.from_code(_core.STATUS_CODES[s.value]) for s in Status} == {s.value: s for s in Status}
