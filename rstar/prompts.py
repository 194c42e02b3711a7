"""Prompts: our instruction with a worked demonstration for instruct/base
models, and the plain SFT prompt for policies fine-tuned on the step format."""
from __future__ import annotations

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
    """The prompt a fine-tuned policy is trained and run with."""
    return f"<|user|>\n{question}\n<|assistant|>\n"


def build_prompt(question: str, tokenizer=None, style: str = "chat") -> str:
    """The text that precedes the solution.

    Args:
        style: "chat" (instruction and one demonstration through the
            tokenizer's chat template), "plain" (the same without a template)
            or "sft" (a fine-tuned policy's prompt).
    """
    if style == "sft":
        return sft_prompt(question)
    if style == "chat" and tokenizer is not None and getattr(tokenizer, "chat_template", None):
        messages = [
            {"role": "system", "content": INSTRUCTION},
            {"role": "user", "content": DEMO_QUESTION},
            {"role": "assistant", "content": DEMO_SOLUTION},
            {"role": "user", "content": question},
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{INSTRUCTION}\n\nQuestion: {DEMO_QUESTION}\n{DEMO_SOLUTION}\n\nQuestion: {question}\n"
