"""The step format, compatible with the released rStar-Math data.

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

One search node is one step. Generation stops at an end tag; the stop string
is not part of the completion, so a step's text is the completion plus its tag.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

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


def parse_step(completion: str, stop_reason: str) -> Step | None:
    """A generated step, or None when it cannot be a step (no end tag: the
    generation hit its token limit or EOS; or an answer step without an answer).

    >>> parse_step("<code>\\n# Step 1: add\\nx = 1 + 2\\n", "<end_of_step>").code
    '# Step 1: add\\nx = 1 + 2'
    """
    if stop_reason == END_STEP or stop_reason == END_CODE:
        code = completion.replace(CODE, "", 1) if completion.lstrip().startswith(CODE) else completion
        kind = STEP if stop_reason == END_STEP else FINAL_CODE
        return Step(kind, completion + stop_reason, code.strip("\n"))
    if stop_reason == END_ANSWER:
        if ANSWER not in completion and "\\boxed" not in completion:
            return None
        return Step(FINAL_ANSWER, completion + stop_reason)
    return None


def program_of(steps: Iterable[Step]) -> list[str]:
    """The code of every code step on a path: what the sandbox runs, as steps."""
    return [s.code for s in steps if s.kind in (STEP, FINAL_CODE)]


def observation(stdout: str, max_chars: int = 1024) -> str:
    """The `<output>` text that follows the final code step; long output is
    cut in the middle so that both its start and its end stay visible."""
    text = stdout.strip("\n")
    if len(text) > max_chars:
        half = max_chars // 2
        text = f"{text[:half]}\n...[{len(text) - 2 * half} characters cut]...\n{text[-half:]}"
    return f"\n{OUTPUT}{text}{END_OUTPUT}\n"


def solution_text(steps: Iterable[Step], output: str | None = None) -> str:
    """The solution so far as the policy sees it (and the SFT data stores it)."""
    parts = []
    for s in steps:
        parts.append(s.text)
        if s.kind == FINAL_CODE and output is not None:
            parts.append(observation(output))
        elif s.kind == STEP:
            parts.append("\n\n")
    return "".join(parts)
