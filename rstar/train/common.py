"""What the two training recipes share: LoRA and optimisation settings, and
reading their JSONL data with clear errors."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


class DataFileError(ValueError):
    """A training data file that cannot be used; the message names file and line."""


@dataclass(frozen=True)
class LoraTrainConfig:
    """Settings every LoRA recipe has (defaults suit a CPU and small models)."""

    base: str = field(default="default", metadata={"help": "the model to start from"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    target_modules: tuple = field(
        default=("q_proj", "k_proj", "v_proj", "o_proj"), metadata={"help": "modules LoRA adapts"}
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "peak learning rate"})
    epochs: float = field(default=1.0, metadata={"help": "passes over the data"})
    batch_size: int = field(default=8, metadata={"help": "examples (or pairs) per step"})
    max_length: int = field(default=1024, metadata={"help": "tokens; longer examples are skipped and counted"})
    save_steps: int = field(default=50, metadata={"help": "checkpoint every N steps (resume point)"})
    bf16: bool = field(
        default=False,
        metadata={"help": "bfloat16 backbone (GPU, or a CPU with AVX512-BF16: 2-4x faster); adapters, head float32"},
    )
    gradient_checkpointing: bool = field(default=False, metadata={"help": "trade compute for memory"})
    seed: int = field(default=0, metadata={"help": "data order, split and initialisation"})


def per_process_batch(batch_size: int) -> int:
    """Each training process's share of a step's examples: under a launcher
    (`rstar.train.launch`) `batch_size` is the step's total, as in one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} does not split among {world} processes")
    return batch_size // world


def trainer_arguments(config: LoraTrainConfig, checkpoints: Path, progress: bool) -> dict:
    """The TRL trainer arguments both recipes share (checkpoints every
    `save_steps`, the last two kept; a step's batch split among processes)."""
    import torch

    return dict(
        output_dir=str(checkpoints),
        per_device_train_batch_size=per_process_batch(config.batch_size),
        num_train_epochs=config.epochs,
        learning_rate=config.learning_rate,
        max_length=config.max_length,
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        report_to=[],
        seed=config.seed,
        bf16=config.bf16,
        gradient_checkpointing=config.gradient_checkpointing,
        disable_tqdm=not progress,
        use_cpu=not torch.cuda.is_available(),
        ddp_find_unused_parameters=False,  # every LoRA weight (and the PPM's head) is used in every step
    )


def lora_config(config: LoraTrainConfig, task_type: str, **extra):
    """peft's LoRA settings from a recipe's config (`extra`: e.g. the modules
    trained in full)."""
    from peft import LoraConfig

    return LoraConfig(
        task_type=task_type,
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        **extra,
    )


def load_tokenizer(base: str):
    """The tokenizer of a resolved model folder, with a pad token (EOS if none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def fits(tokenizer, texts: tuple[str, ...], max_length: int) -> bool:
    """Whether every text, with the EOS the trainers append, fits in max_length.
    Callers skip and count what does not (TRL would drop it silently)."""
    return all(len(tokenizer(t)["input_ids"]) + 1 <= max_length for t in texts)


def last_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint that was written to the end (the trainer writes
    trainer_state.json last): one cut short by a kill is passed over."""
    done = [p.parent for p in Path(folder).glob("checkpoint-*/trainer_state.json")]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def read_records(path: Path, fields: tuple[str, ...], what: str) -> list[dict]:
    """Every record of a data file, each an object with non-empty string
    `fields`: ours (JSON Lines) or the reference's released format (a JSON
    array or lines of {query, response} / {prompt, pos, neg, ...}), which is
    converted to ours.

    Raises:
        DataFileError: missing file, a malformed line, a missing field, no records.
    """
    from rstar.train.official import is_official, pair_from_official, read_rows, sft_from_official

    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"{path} does not exist")
    try:
        raw = read_rows(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataFileError(str(exc)) from None
    rows = []
    for i, row in enumerate(raw):
        if isinstance(row, dict) and is_official(row):
            try:
                row = (sft_from_official if "query" in row else pair_from_official)(row, i)
            except (KeyError, AttributeError, TypeError):
                raise DataFileError(f"{path}: record {i + 1} is not a valid official record") from None
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) and row[k] for k in fields):
            raise DataFileError(f"{path}: record {i + 1} needs non-empty string fields {', '.join(fields)}")
        rows.append(row)
    if not rows:
        raise DataFileError(f"{path}: no {what}")
    return rows
