"""Policy SFT: LoRA on the policy with peft, loss on the solution tokens only
(TRL's SFTTrainer on prompt/completion records), checkpoints resumable, the
adapter and (on request) merged weights in Hugging Face format."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rstar.llm.models import resolve_model
from rstar.metrics import TrainMetrics
from rstar.prompts import record_prompt_style
from rstar.train import common
from rstar.train.common import DataFileError, LoraTrainConfig, fits, last_checkpoint, load_tokenizer, read_records


@dataclass(frozen=True)
class PolicyTrainConfig(LoraTrainConfig):
    """Policy SFT settings: the shared LoRA settings, SFT defaults, merging."""

    learning_rate: float = field(default=2e-4, metadata={"help": "peak learning rate"})
    epochs: float = field(default=2.0, metadata={"help": "passes over the data"})
    batch_size: int = field(default=4, metadata={"help": "examples per step"})
    merge: bool = field(default=True, metadata={"help": "also write merged weights (vLLM serves those)"})


def load_sft(path: Path) -> list[dict]:
    """Our SFT records, or the reference's {query, response} (prompted with the
    official SFT prompt)."""
    return read_records(path, ("prompt", "response"), "examples")


def train_policy(data: Path, out: Path, config: PolicyTrainConfig, progress: bool = True) -> TrainMetrics:
    """Fine-tune `config.base` with LoRA on `data` (rstar extract sft); write the
    adapter to `out/adapter`, merged weights to `out` when `config.merge`,
    checkpoints to `out/checkpoints` (a rerun resumes) and `out/metrics.json`."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    out = Path(out)
    rows = load_sft(data)
    base = resolve_model(config.base)
    tokenizer = load_tokenizer(base)
    examples = [
        {"prompt": r["prompt"], "completion": r["response"]}
        for r in rows
        if fits(tokenizer, (r["prompt"] + r["response"],), config.max_length)
    ]
    too_long = len(rows) - len(examples)
    if not examples:
        raise DataFileError(f"{data}: no example fits max_length={config.max_length}")
    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16 if config.bf16 else torch.float32)
    checkpoints = out / "checkpoints"
    args = SFTConfig(**common.trainer_arguments(config, checkpoints, progress), completion_only_loss=True)
    lora = common.lora_config(config, "CAUSAL_LM")
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(examples), processing_class=tokenizer, peft_config=lora
    )
    resume = last_checkpoint(checkpoints)
    result = trainer.train(resume_from_checkpoint=resume)
    metrics = TrainMetrics(
        examples=len(rows),
        skipped_too_long=too_long,
        train_loss=result.training_loss,
        steps=result.global_step,
        resumed=resume is not None,
        processes=trainer.args.world_size,
        losses=[h["loss"] for h in trainer.state.log_history if "loss" in h],
        config=asdict(config),
    )
    if trainer.is_world_process_zero():  # under a launcher, one process writes
        trainer.model.save_pretrained(out / "adapter")
        tokenizer.save_pretrained(out / "adapter")
        record_prompt_style(out / "adapter", "sft")  # rstar search/eval --policy prompt it as trained
        if config.merge:
            trainer.model.merge_and_unload().save_pretrained(out)
            tokenizer.save_pretrained(out)
            record_prompt_style(out, "sft")
        (out / "metrics.json").write_text(json.dumps(metrics.to_dict(), indent=2))
    return metrics
