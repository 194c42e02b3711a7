"""The step format of the released rStar-Math data.

A solution is a program written step by step, its output, then the answer:

    <code>
    # Step 1: <reasoning as a comment>
    x = 2 * 20 * 12
    <end_of_step>

    # Now print the final answer
    print(x / 30)
    <end_of_code>
    <output>16.0<end_of_output>
    <answer>... \\boxed{16} ...<end_of_answer>

One search node is one step, and its text is exactly what the policy wrote
plus the stop string that ended it: a step starts with the blank line that
separates it from the previous one ("\\n\\n# Step 2: ...") and ends at its end
tag, as in the reference. The final code step's node also carries the
program's output ("\\n<output>...<end_of_output>"); the answer step then starts
with "\\n<answer>".
"""

from __future__ import annotations

from dataclasses import dataclass

CODE = "<code>"
END_STEP = "<end_of_step>"
END_CODE = "<end_of_code>"
OUTPUT = "<output>"
END_OUTPUT = "<end_of_output>"
ANSWER = "<answer>"
END_ANSWER = "<end_of_answer>"
STOP = (END_STEP, END_CODE, END_ANSWER)

STEP, FINAL_CODE, FINAL_ANSWER = "step", "final_code", "answer"


@dataclass(frozen=True, slots=True)
class Step:
    """One parsed step: its kind, its text as it joins the solution (end tag
    included) and, for code steps, the code that joins the program."""

    kind: str  # "step", "final_code" or "answer"
    text: str
    code: str = ""


def parse_step(completion: str, stop_reason: str, unended_as_code: bool = True) -> Step | None:
    """A generated step, or None when it is no step.

    As in the reference, a generation with "boxed" in it is an answer,
    whatever stopped it; one that stopped at `<end_of_code>` is the final code
    step, and anything else is a code step: the reference runs every other
    generation as code, so one cut by the token limit or by EOS, or an
    `<end_of_answer>` without a boxed answer, runs (and usually fails), and an
    empty one is a step that does nothing. With `unended_as_code=False`, a
    generation that stopped at no code tag is no step (None).

    >>> parse_step("\\n\\n# Step 2: add\\nx = 1 + 2\\n", "<end_of_step>").code
    '# Step 2: add\\nx = 1 + 2'
    """
    tag = stop_reason if stop_reason in STOP else ""
    if "boxed" in completion:
        return Step(FINAL_ANSWER, completion + tag)
    if stop_reason not in (END_STEP, END_CODE) and not unended_as_code:
        return None
    code = completion.lstrip()
    code = code[len(CODE) :] if code.startswith(CODE) else completion
    kind = FINAL_CODE if stop_reason == END_CODE else STEP
    return Step(kind, completion + tag, code.strip("\n"))


def observation(stdout: str, max_chars: int = 1024) -> str:
    """The `<output>` text that follows the final code step, as the reference
    writes it: the output stripped, a lone float rounded to 4 decimals when
    that is shorter, long output cut in the middle.

    >>> observation("8.94427190999916\\n")
    '\\n<output>8.9443<end_of_output>'
    """
    text = stdout.strip()
    try:
        rounded = str(round(float(text), 4))
        text = rounded if len(rounded) < len(text) else text
    except ValueError:
        pass
    if len(text) > max_chars:
        half = max_chars // 2
        text = f"{text[:half]}...{text[-half:]}"
    return f"\n{OUTPUT}{text}{END_OUTPUT}"
