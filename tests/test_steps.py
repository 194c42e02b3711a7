"""The step format: parsing, program assembly, observations."""
from rstar.steps import (END_ANSWER, END_CODE, END_STEP, FINAL_ANSWER, FINAL_CODE, STEP, Step,
                         observation, parse_step, program_of, solution_text)


def test_parse_code_steps():
    first = parse_step("<code>\n# Step 1: total\nx = 2 * 20 * 12\n", END_STEP)
    assert first == Step(STEP, "<code>\n# Step 1: total\nx = 2 * 20 * 12\n" + END_STEP,
                         "# Step 1: total\nx = 2 * 20 * 12")
    final = parse_step("# Now print the final answer\nprint(x / 30)\n", END_CODE)
    assert final.kind == FINAL_CODE and final.code == "# Now print the final answer\nprint(x / 30)"


def test_parse_answer_and_failures():
    ans = parse_step("<answer>The answer is \\boxed{16}", END_ANSWER)
    assert ans.kind == FINAL_ANSWER and ans.code == ""
    assert parse_step("<answer>no answer here", END_ANSWER) is not None  # the tag alone makes it one
    assert parse_step("rambling", END_ANSWER) is None
    assert parse_step("x = 1", "length") is None
    assert parse_step("x = 1", "eos") is None


def test_program_and_solution_text():
    steps = [parse_step("<code>\nx = 2\n", END_STEP), parse_step("print(x * 8)\n", END_CODE),
             parse_step("<answer>\\boxed{16}", END_ANSWER)]
    assert program_of(steps) == ["x = 2", "print(x * 8)"]
    assert solution_text(steps, output="16\n") == (
        "<code>\nx = 2\n<end_of_step>\n\nprint(x * 8)\n<end_of_code>\n<output>16<end_of_output>\n"
        "<answer>\\boxed{16}<end_of_answer>")


def test_observation_cuts_the_middle():
    text = observation("a" * 600 + "b" * 600, max_chars=100)
    assert text.startswith("\n<output>" + "a" * 50) and text.endswith("b" * 50 + "<end_of_output>\n")
    assert "[1100 characters cut]" in text
