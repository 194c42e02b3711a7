"""Prompts: the official SFT prompt of fine-tuned policies (and of the PPM's
text), the reference's 2-shot instruction prompt for round-1 bootstrap
models, and our own instruction with one worked example for small instruct
models. A fine-tuned policy's folder records the style it was trained with,
so `rstar search/eval --policy DIR` prompt it the same way."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

PROMPT_STYLES = ("sft", "fewshot", "chat", "plain")
STYLE_FILE = "rstar-prompt.json"  # in a policy folder: {"prompt_style": ...}
FEWSHOT_FILE = Path(__file__).parent / "data" / "rstar_fewshot.json"

INSTRUCTION = (
    "Solve the math problem with Python code, one step at a time. Write each step's "
    "reasoning as a comment and end the step with <end_of_step>. End the code with a print "
    "of the final answer and <end_of_code>. After the output, give the answer as "
    "<answer>... \\boxed{answer}<end_of_answer>."
)
DEMO_QUESTION = "A box holds 12 pencils. Tom buys 5 boxes and gives away 7 pencils. How many are left?"
DEMO_SOLUTION = (
    "<code>\n# Step 1: pencils bought\nbought = 12 * 5\n<end_of_step>\n\n"
    "# Step 2: pencils left after giving 7 away\nleft = bought - 7\n<end_of_step>\n\n"
    "# Now print the final answer\nprint(left)\n<end_of_code>\n<output>53<end_of_output>\n"
    "<answer>Tom has \\boxed{53} pencils left.<end_of_answer>"
)


def sft_prompt(question: str) -> str:
    """The official SFT prompt: what a fine-tuned policy continues and what
    the PPM reads before the steps."""
    return f"<|user|>:\n{question}\n<|assistant|>: Let's think step by step and solve the problem with code."


@lru_cache(maxsize=1)
def _fewshot() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(FEWSHOT_FILE.read_text(encoding="utf-8"))
    return spec


def fewshot_prompt(question: str) -> str:
    """The reference's round-1 prompt: its instruction, 2 worked examples and
    the question, as plain text. (The reference shuffles the two examples on
    every call; a fixed order keeps the prompt's prefix cacheable.)"""
    spec = _fewshot()
    head = "\n".join([spec["instruction"], "The following are 2 demonstration examples.", *spec["examples"], ""])
    return head + "\n" + str(spec["suffix"]).format(input=question + "\n")


def build_prompt(question: str, tokenizer: Any = None, style: str = "chat") -> str:
    """The text that precedes the solution, in one of PROMPT_STYLES."""
    if style == "sft":
        return sft_prompt(question)
    if style == "fewshot":
        return fewshot_prompt(question)
    if style == "chat" and tokenizer is not None and getattr(tokenizer, "chat_template", None):
        messages = [
            {"role": "system", "content": INSTRUCTION},
            {"role": "user", "content": DEMO_QUESTION},
            {"role": "assistant", "content": DEMO_SOLUTION},
            {"role": "user", "content": question},
        ]
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return f"{INSTRUCTION}\n\nQuestion: {DEMO_QUESTION}\n{DEMO_SOLUTION}\n\nQuestion: {question}\n"


def record_prompt_style(folder: str | Path, style: str) -> None:
    """Write the prompt style a policy was trained with into its folder."""
    (Path(folder) / STYLE_FILE).write_text(json.dumps({"prompt_style": style}) + "\n")


def prompt_style_of(model: str) -> str | None:
    """The prompt style recorded in a policy folder, or None (not a folder, or
    not a policy we trained)."""
    path = Path(model) / STYLE_FILE
    if not path.is_file():
        return None
    style = json.loads(path.read_text()).get("prompt_style")
    if style not in PROMPT_STYLES:
        raise ValueError(f"{path}: unknown prompt style {style!r}")
    return str(style)
