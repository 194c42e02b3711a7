"""Training the PPM on preference pairs: LoRA on the backbone, the scalar head
trained in full (peft `modules_to_save`), loss -log sigmoid(r(pos) - r(neg))
(TRL's RewardTrainer), held-out pairwise accuracy reported."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rstar.llm.models import resolve_model
from rstar.metrics import TrainMetrics
from rstar.train import common
from rstar.train.common import DataFileError, LoraTrainConfig, fits, last_checkpoint, load_tokenizer, read_records


@dataclass(frozen=True)
class PPMTrainConfig(LoraTrainConfig):
    """PPM training settings: the shared LoRA settings and a held-out share."""

    base: str = field(default="default", metadata={"help": "the (fine-tuned) policy the PPM starts from"})
    eval_fraction: float = field(default=0.1, metadata={"help": "held-out share for pairwise accuracy"})


def load_pairs(path: Path) -> list[dict]:
    return read_records(path, ("prefix", "positive", "negative"), "pairs")


def train_ppm(data: Path, out: Path, config: PPMTrainConfig, progress: bool = True) -> TrainMetrics:
    """Train a PPM from `config.base` on the pairs in `data`; write a PPM folder
    (merged weights, loadable by PPMScorer) to `out`, its LoRA adapter to
    `out/adapter`, checkpoints to `out/checkpoints` (a rerun resumes from the
    last one) and `out/metrics.json`."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    out = Path(out)
    pairs = load_pairs(data)
    base = resolve_model(config.base)
    tokenizer = load_tokenizer(base)
    both = [(p["prefix"] + p["positive"], p["prefix"] + p["negative"]) for p in pairs]
    rows = [
        {"chosen": c, "rejected": r, "id": str(p.get("id", i))}
        for i, (p, (c, r)) in enumerate(zip(pairs, both))
        if fits(tokenizer, (c, r), config.max_length)
    ]
    too_long = len(pairs) - len(rows)
    if len(rows) < 2:
        raise DataFileError(f"{data}: {len(rows)} usable pairs ({too_long} longer than max_length={config.max_length})")
    train_rows, eval_rows = split_by_problem(rows, config.eval_fraction, config.seed)

    torch.manual_seed(config.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=1, dtype=torch.bfloat16 if config.bf16 else torch.float32
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    checkpoints = out / "checkpoints"
    args = RewardConfig(**common.trainer_arguments(config, checkpoints, progress))
    lora = common.lora_config(config, "SEQ_CLS", modules_to_save=["score"])  # the head trained in full
    train_set = Dataset.from_list([{"chosen": r["chosen"], "rejected": r["rejected"]} for r in train_rows])
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=train_set, processing_class=tokenizer, peft_config=lora
    )
    if config.bf16:
        _head_in_float32(trainer.model)
    resume = last_checkpoint(checkpoints)
    result = trainer.train(resume_from_checkpoint=resume)

    if not trainer.is_world_process_zero():  # under a launcher, one process writes and evaluates
        return TrainMetrics(steps=result.global_step, resumed=resume is not None)
    trained = trainer.model
    trained.save_pretrained(out / "adapter")
    tokenizer.save_pretrained(out / "adapter")
    merged = trained.merge_and_unload()
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    accuracy = pairwise_accuracy(out, eval_rows)
    metrics = TrainMetrics(
        pairs=len(pairs),
        skipped_too_long=too_long,
        train_pairs=len(train_rows),
        eval_pairs=len(eval_rows),
        train_loss=result.training_loss,
        steps=result.global_step,
        resumed=resume is not None,
        processes=trainer.args.world_size,
        eval_pairwise_accuracy=accuracy,
        losses=[h["loss"] for h in trainer.state.log_history if "loss" in h],
        config=asdict(config),
    )
    (out / "metrics.json").write_text(json.dumps(metrics.to_dict(), indent=2))
    return metrics


def _head_in_float32(model) -> None:
    """peft keeps LoRA weights in float32 over a bfloat16 backbone but copies the
    trained head in the backbone's dtype, where Adam's steps of ~1e-4 round away
    against weights of ~0.02; the trainer's autocast feeds it bfloat16 either way."""
    import torch

    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()


def split_by_problem(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Held-out pairs come from problems none of whose pairs are trained on
    (pairs of one problem share its prefixes). With a single problem, pairs
    are split instead. At least one pair on each side."""
    per_problem = Counter(r["id"] for r in rows)
    ids = sorted(per_problem)
    random.Random(seed).shuffle(ids)
    want = max(1, int(len(rows) * fraction))
    held: set[str] = set()
    if len(ids) > 1:
        count = 0
        for pid in ids[:-1]:
            if count >= want:
                break
            held.add(pid)
            count += per_problem[pid]
        return [r for r in rows if r["id"] not in held], [r for r in rows if r["id"] in held]
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    return shuffled[want:], shuffled[:want]


def pairwise_accuracy(ppm_folder: Path, rows: list[dict]) -> float:
    """Share of pairs whose chosen text the PPM scores above the rejected one."""
    from rstar.ppm.model import PPMScorer

    scorer = PPMScorer(str(ppm_folder))
    chosen = scorer.score([r["chosen"] for r in rows])
    rejected = scorer.score([r["rejected"] for r in rows])
    return sum(c > r for c, r in zip(chosen, rejected)) / len(rows)
