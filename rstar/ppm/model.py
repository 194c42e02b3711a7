"""The PPM as a Hugging Face sequence-classification model with one label: the
policy's backbone with its next-token head replaced by a scalar head read at
the last token. That is the layout TRL's RewardTrainer trains and peft's
SEQ_CLS LoRA adapts (the head, `score`, in `modules_to_save`). A score is
tanh of the head's output, in [-1, 1]."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rstar.llm.models import resolve_model


def init_ppm(policy: str, out: str | Path, seed: int = 0) -> Path:
    """A PPM that starts from `policy`: same backbone, a fresh scalar head.
    Training (the pairwise loss) is what makes its scores mean something."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model(policy)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


class PPMScorer:
    """`score(texts)`: one float in [-1, 1] per partial solution, batched.

    Args:
        model: a PPM folder (full model, or a peft adapter on one).
        device: "auto", "cpu", "cuda", ...
        batch_size: texts per forward pass.
        max_length: longer texts keep their last tokens (the step being judged).
    """

    def __init__(self, model: str, device: str = "auto", batch_size: int = 16, max_length: int = 2048):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        path = Path(model)
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise FileNotFoundError(f"{model} is not a PPM folder (no config.json or adapter_config.json)")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        if (path / "adapter_config.json").exists():
            from peft import AutoPeftModelForSequenceClassification

            net = AutoPeftModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
            net = net.merge_and_unload()
        else:
            net = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "right"
        self.tokenizer.truncation_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        net.config.pad_token_id = self.tokenizer.pad_token_id
        self.model = net.to(device).eval()
        self.device, self.batch_size, self.max_length = device, batch_size, max_length

    def raw(self, texts: Sequence[str]):
        """The head's outputs (before tanh), shape [len(texts)]."""
        import torch

        outs = []
        # Scored as trained: TRL's RewardTrainer appends EOS to every text.
        eos = self.tokenizer.eos_token or ""
        texts = [t if t.endswith(eos) else t + eos for t in texts]
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(list(texts[i:i + self.batch_size]), return_tensors="pt",
                                     padding=True, truncation=True, max_length=self.max_length)
                enc = {k: v.to(self.device) for k, v in enc.items()}
                outs.append(self.model(**enc).logits[:, 0].float().cpu())
        return torch.cat(outs) if outs else torch.zeros(0)

    def score(self, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        return self.raw(texts).tanh().tolist()
