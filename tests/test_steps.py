"""The step format: parsing, observations, prompts, as the reference has them."""

from rstar.prompts import build_prompt, fewshot_prompt, sft_prompt
from rstar.steps import END_ANSWER, END_CODE, END_STEP, FINAL_ANSWER, FINAL_CODE, STEP, Step, observation, parse_step


def test_a_step_is_what_the_policy_wrote_and_its_end_tag():
    first = parse_step("<code>\n# Step 1: total\nx = 2 * 20 * 12\n", END_STEP)
    assert first == Step(
        STEP, "<code>\n# Step 1: total\nx = 2 * 20 * 12\n" + END_STEP, "# Step 1: total\nx = 2 * 20 * 12"
    )
    # A later step starts with the blank line that separates it from the previous one.
    second = parse_step("\n\n# Step 2: rate\ny = x / 30\n", END_STEP)
    assert second.text == "\n\n# Step 2: rate\ny = x / 30\n<end_of_step>"
    assert second.code == "# Step 2: rate\ny = x / 30"
    final = parse_step("\n\n# Now print the final answer\nprint(x / 30)\n", END_CODE)
    assert final.kind == FINAL_CODE and final.code == "# Now print the final answer\nprint(x / 30)"


def test_boxed_makes_an_answer_whatever_stopped_it():
    ans = parse_step("\n<answer>The answer is \\boxed{16}", END_ANSWER)
    assert ans == Step(FINAL_ANSWER, "\n<answer>The answer is \\boxed{16}<end_of_answer>")
    assert parse_step("# the answer is \\boxed{16}\n", END_STEP).kind == FINAL_ANSWER
    assert parse_step("so \\boxed{16} and more", "length").text == "so \\boxed{16} and more"


def test_any_other_generation_runs_as_code_as_in_the_reference():
    assert parse_step("", "eos") == Step(STEP, "", "")  # a step that does nothing
    assert parse_step("x = 1", "length") == Step(STEP, "x = 1", "x = 1")
    assert parse_step("\n<answer>no answer here", END_ANSWER) == Step(
        STEP, "\n<answer>no answer here<end_of_answer>", "<answer>no answer here"
    )
    for text, reason in (("", "eos"), ("x = 1", "length"), ("<answer>none", END_ANSWER)):
        assert parse_step(text, reason, unended_as_code=False) is None


def test_observation_as_the_reference_writes_it():
    assert observation("53\n") == "\n<output>53<end_of_output>"
    assert observation("8.94427190999916\n") == "\n<output>8.9443<end_of_output>"  # a lone float, rounded
    assert observation("16.0\n") == "\n<output>16.0<end_of_output>"
    assert observation("[20/3]\n") == "\n<output>[20/3]<end_of_output>"
    text = observation("a" * 600 + "b" * 600, max_chars=100)
    assert text == "\n<output>" + "a" * 50 + "..." + "b" * 50 + "<end_of_output>"


def test_the_official_prompts():
    assert sft_prompt("What is 2 + 3?") == (
        "<|user|>:\nWhat is 2 + 3?\n<|assistant|>: Let's think step by step and solve the problem with code."
    )
    assert build_prompt("Q?", style="sft") == sft_prompt("Q?")
    few = fewshot_prompt("What is 2 + 3?")
    assert few.startswith("You are a powerful agent with broad math knowledge")
    assert "The following are 2 demonstration examples.\nQuestion: Terrell" in few
    assert few.endswith("\n\nNow! It's your turn.\nQuestion: What is 2 + 3?\n")
    assert build_prompt("Q?", style="fewshot") == fewshot_prompt("Q?")
