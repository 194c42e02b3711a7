"""The PPM as a Hugging Face sequence-classification model with one label: the
policy's backbone with its next-token head replaced by a scalar head read at
the last token. That is the layout TRL's RewardTrainer trains and peft's
SEQ_CLS LoRA adapts (the head, `score`, in `modules_to_save`). A score is
tanh of the head's output divided by a scale (the reference's 5), in [-1, 1]."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rstar.llm.models import resolve_model
from rstar.train.common import load_tokenizer


def init_ppm(policy: str, out: str | Path, seed: int = 0) -> Path:
    """A PPM that starts from `policy`: same backbone, a fresh scalar head.
    Training (the pairwise loss) is what makes its scores mean something."""
    import torch
    from transformers import AutoModelForSequenceClassification

    path = resolve_model(policy)
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


VALUE_HEAD = "value_head.bin"  # the reference's saved head (train/save_rm.py), beside a causal LM


def check_ppm_folder(model: str) -> Path:
    """The folder of a PPM, or a clear error when it holds none."""
    path = Path(model)
    if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
        raise FileNotFoundError(f"{model} is not a PPM folder (no config.json or adapter_config.json)")
    return path


class PPMScorer:
    """`score(texts)`: one float in [-1, 1] per partial solution, batched:
    tanh(head output / scale), the reference's scale being 5.

    Reads our PPM folders (a one-label sequence-classification model, or a
    peft adapter on one; the head read at an appended EOS, as TRL trains it)
    and PPMs saved the reference's way (a causal LM folder with
    `value_head.bin`; the head read at the last token of the text, as the
    reference scores).

    Args:
        model: the PPM folder.
        device: "auto", "cpu", "cuda", ...
        batch_size: texts per forward pass.
        max_length: longer texts keep their last tokens (the step being judged).
        scale: divides the head's output before tanh.
    """

    def __init__(
        self, model: str, device: str = "auto", batch_size: int = 16, max_length: int = 2048, scale: float = 5.0
    ):
        import torch

        path = check_ppm_folder(model)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.reference_layout = (path / VALUE_HEAD).exists()
        if self.reference_layout:
            net = _ValueHeadModel.load(path, dtype)
        elif (path / "adapter_config.json").exists():
            from peft import AutoPeftModelForSequenceClassification

            net = AutoPeftModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
            net = net.merge_and_unload()
        else:
            from transformers import AutoModelForSequenceClassification

            net = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
        self.tokenizer = load_tokenizer(str(path))
        self.tokenizer.padding_side = "right"
        self.tokenizer.truncation_side = "left"
        net.config.pad_token_id = self.tokenizer.pad_token_id
        self.model = net.to(device).eval()
        self.device, self.batch_size, self.max_length, self.scale = device, batch_size, max_length, scale

    def raw(self, texts: Sequence[str]):
        """The head's outputs (before scaling and tanh), shape [len(texts)]."""
        import torch

        outs = []
        if not self.reference_layout:  # scored as trained: TRL's RewardTrainer appends EOS
            eos = self.tokenizer.eos_token or ""
            texts = [t if t.endswith(eos) else t + eos for t in texts]
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    list(texts[i : i + self.batch_size]),
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    add_special_tokens=not self.reference_layout,
                )
                enc = {k: v.to(self.device) for k, v in enc.items()}
                outs.append(self.model(**enc).logits[:, 0].float().cpu())
        return torch.cat(outs) if outs else torch.zeros(0)

    def score(self, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        return (self.raw(texts) / self.scale).tanh().tolist()


class _ValueHeadModel:
    """A causal LM's backbone and the reference's linear value head, read at
    the last real token (right padding); `logits` shaped [batch, 1] like a
    sequence-classification model's."""

    @staticmethod
    def load(path: Path, dtype):
        import torch
        from transformers import AutoModel
        from transformers.modeling_outputs import SequenceClassifierOutput

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone = AutoModel.from_pretrained(path, dtype=dtype)
                self.config = self.backbone.config
                state = torch.load(path / VALUE_HEAD, map_location="cpu", weights_only=True)
                state = {k.removeprefix("v_head.").removeprefix("summary."): v for k, v in state.items()}
                if set(state) != {"weight", "bias"}:
                    raise ValueError(
                        f"{path / VALUE_HEAD}: expected a linear value head "
                        f"(v_head.summary.weight, bias), found {sorted(state)}"
                    )
                self.head = torch.nn.Linear(state["weight"].shape[-1], 1)
                self.head.load_state_dict(state)

            def forward(self, input_ids, attention_mask):
                hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                last = attention_mask.sum(dim=1) - 1  # [batch]
                h = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # [batch, hidden]
                return SequenceClassifierOutput(logits=self.head(h.float()))

        return Net()
