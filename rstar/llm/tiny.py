"""A tiny random causal LM and its tokenizer, built offline in seconds: for
tests and the `tiny` preset. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rstar.prompts import sft_prompt

CORPUS = [
    "<code>\n# Step 1: compute the total\nx = 2 * 20 * 12\n<end_of_step>\n",
    "# Step 2: divide by the time\ny = x / (2 * 15)\nprint(y)\n<end_of_code>\n",
    "<output>16.0<end_of_output>\n<answer>The answer is \\boxed{16}<end_of_answer>",
    "import sympy as sp\nfrom fractions import Fraction\nfor i in range(10):\n    total += i\n",
    "Question: Tom has 3 apples and buys 5 more. How many apples does he have?\n",
    "0123456789 + - * / = ( ) [ ] { } , . : ; ' \" # _ < > \\ ^ % ! ? abcdefghijklmnopqrstuvwxyz",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


# Solutions in the step format: `train_steps` > 0 teaches the tiny model to
# write them (a few seconds on a CPU), so a search with it runs real steps.
SOLUTIONS = [
    "{q}<code>\n# Step 1: multiply the two numbers together\nx = {a} * {b}\n<end_of_step>\n\n"
    "# Now print the final answer\nprint(x)\n<end_of_code>\n<output>{ab}<end_of_output>\n"
    "<answer>The answer is \\boxed{{{ab}}}<end_of_answer><|endoftext|>",
    # a wrong answer (the sum): step pairs for the PPM
    "{q}<code>\n# Step 1: add them up\ny = {a} + {b}\n<end_of_step>\n\n"
    "# Now print the final answer\nprint(y)\n<end_of_code>\n<output>{a_b}<end_of_output>\n"
    "<answer>\\boxed{{{a_b}}}<end_of_answer><|endoftext|>",
    # a step that fails to run
    "{q}<code>\n# Step 1: add\ny = {a} + {b}\n<end_of_step>\n\n"
    "# Step 2: oops\nz = y / 0\n<end_of_step>\n\n"
    "# Now print the final answer\nprint(y)\n<end_of_code>\n<output>{a_b}<end_of_output>\n"
    "<answer>\\boxed{{{a_b}}}<end_of_answer><|endoftext|>",
]


def _train(model: Any, tokenizer: Any, steps: int, seed: int) -> None:
    import random

    import torch

    rng = random.Random(seed)
    texts = []
    for _ in range(64):
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        template = rng.choice(SOLUTIONS)
        prompt = sft_prompt(f"What is {a} and {b}?")
        texts.append(template.format(q=prompt, a=a, b=b, ab=a * b, a_b=a + b))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = tokenizer(rng.sample(texts, 8), return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def build_tiny_model(
    folder: str | Path, vocab_size: int = 384, hidden: int = 64, layers: int = 2, seed: int = 0, train_steps: int = 0
) -> Path:
    """Write a Llama-style model (random, or trained for `train_steps` on
    step-format solutions) and a byte-level BPE tokenizer to `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = Path(folder)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    examples = [t.format(q=sft_prompt("What is 3 and 4?"), a=3, b=4, ab=12, a_b=7) for t in SOLUTIONS]
    bpe.train_from_iterator(CORPUS * 20 + examples * 5, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>", bos_token=None
    )
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    if train_steps:
        _train(model, tokenizer, train_steps, seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
