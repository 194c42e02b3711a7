"""The transformers engine: the CPU default, also runs on a GPU.

Batches many prompts x n samples: prompts are left-padded and prefilled once
each; the prefill's KV cache is repeated for the n samples; every step samples
all live rows at once; a row that hits a stop string, EOS or max_tokens leaves
the batch (its cache rows are dropped), so finished sequences cost nothing.

The token prefix that all prompts of a batch share (a few-shot prompt's
instruction and demonstration: ~210 of a search prompt's ~300 tokens) is
prefilled once and its KV cache kept for the next calls, so each prompt only
prefills its own suffix.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rstar.llm.models import resolve_model
from rstar.llm.types import EOS, LENGTH, Completion, Seed, check_counts, check_request, cut_at_stop, seeds_for


@dataclass(frozen=True)
class HFEngineConfig:
    """Settings of the transformers engine.

    Args:
        model: anything `resolve_model` accepts (default: the packaged SmolLM2-135M).
        dtype: "float32", "bfloat16" or "float16"; "auto" picks bfloat16 on a GPU
            and float32 on a CPU.
        device: "cpu", "cuda", ... ; "auto" picks cuda when available.
        threads: CPU threads for torch (0: torch's default).
        int8: dynamic int8 quantization of the linear layers for CPU decoding.
        max_batch_rows: at most this many sequences (prompts x n) decode at once.
        share_prefix: prefill the prompts' common token prefix once and keep it.
    """

    model: str = "default"
    dtype: str = "auto"
    device: str = "auto"
    threads: int = 0
    int8: bool = False
    max_batch_rows: int = 64
    share_prefix: bool = True


MIN_SHARED_TOKENS = 32  # a shorter common prefix is not worth a pass of its own


class HFEngine:
    """Generation with transformers; see the module docstring."""

    def __init__(self, config: HFEngineConfig | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config = config or HFEngineConfig()
        if config.threads:
            torch.set_num_threads(config.threads)
        device = config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype_name = config.dtype
        if dtype_name == "auto":
            dtype_name = "bfloat16" if device.startswith("cuda") else "float32"
        dtype = getattr(torch, dtype_name)
        path = resolve_model(config.model)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        if config.int8:
            if device != "cpu":
                raise ValueError("int8 dynamic quantization is for CPU decoding")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self.model, self.tokenizer, self.device = model, tokenizer, torch.device(device)
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids), 0)
        self._prefix: tuple[list[int], object] | None = None  # shared token ids and their KV cache

    def close(self) -> None:
        """Free the model (a long run loads several engines in turn)."""
        import gc

        import torch

        self.model = self._prefix = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def generate(
        self,
        prompts: Sequence[str],
        n: int = 1,
        stop: Sequence[str] = (),
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: Seed = None,
    ) -> list[list[Completion]]:
        check_request(prompts, n, stop, max_tokens, temperature, top_p)
        seeds = seeds_for(seed, len(prompts))
        per_call = max(1, self.config.max_batch_rows // n)
        results: list[list[Completion]] = []
        for start in range(0, len(prompts), per_call):
            end = start + per_call
            results += self._generate_group(
                list(prompts[start:end]), n, list(stop), max_tokens, temperature, top_p, seeds[start:end]
            )
        return check_counts(results, len(prompts), n)

    # -- one group of prompts ------------------------------------------------
    def _generate_group(
        self,
        prompts: list[str],
        n: int,
        stop: list[str],
        max_tokens: int,
        temperature: float,
        top_p: float,
        seeds: list[int | None],
    ) -> list[list[Completion]]:
        import torch

        enc = [self.tokenizer(p)["input_ids"] for p in prompts]
        with torch.inference_mode():
            # One prefill per prompt, shared by its n samples.
            cache, logits, mask, positions = self._prefill(enc)
            if n > 1:
                cache.batch_repeat_interleave(n)
                logits = logits.repeat_interleave(n, 0)
                mask = mask.repeat_interleave(n, 0)
                positions = positions.repeat_interleave(n, 0)
            next_pos = positions[:, -1] + 1  # [rows]
            rows = [_Row(p, j, _generator(seeds[p], j, self.device)) for p in range(len(prompts)) for j in range(n)]
            live = list(range(len(rows)))  # batch position -> row
            longest_stop = max(map(len, stop), default=0)
            while live:
                logprobs = torch.log_softmax(logits, dim=-1)  # raw, for the reported sums
                tokens = self._sample(logits, temperature, top_p, [rows[r].gen for r in live])
                keep = []
                for b, r in enumerate(live):
                    row, token = rows[r], int(tokens[b])
                    row.logprob += float(logprobs[b, token])
                    row.ids.append(token)
                    if self._finish(row, token, stop, longest_stop, max_tokens):
                        continue
                    keep.append(b)
                if not keep:
                    break
                if len(keep) < len(live):  # finished rows leave the batch
                    idx = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(idx)
                    mask, next_pos, tokens = mask[idx], next_pos[idx], tokens[idx]
                    live = [live[b] for b in keep]
                mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
                out = self.model(
                    input_ids=tokens.view(-1, 1),
                    attention_mask=mask,
                    position_ids=next_pos.view(-1, 1),
                    past_key_values=cache,
                    use_cache=True,
                )
                cache, logits, next_pos = out.past_key_values, out.logits[:, -1, :].float(), next_pos + 1
        grouped: list[list[Completion]] = [[] for _ in prompts]
        for row in rows:
            grouped[row.prompt].append(Completion(row.text, row.reason, len(row.ids), row.logprob))
        return grouped

    def _prefill(self, enc: list[list[int]]) -> tuple[Any, Any, Any, Any]:
        """KV cache, last logits, attention mask and position ids of the
        prompts; the shared prefix (if any) is computed once. Pads sit between
        the prefix and each prompt's own tokens, masked out."""
        import torch

        shared, cache = self._shared_prefix(enc)
        suffixes = [e[len(shared) :] for e in enc]
        width = max(map(len, suffixes))
        input_ids = torch.tensor([[self.pad_id] * (width - len(e)) + e for e in suffixes], device=self.device)
        own = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in suffixes], device=self.device)
        positions = (len(shared) + own.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([own.new_ones(len(enc), len(shared)), own], dim=1)
        if cache is not None:
            cache = copy.deepcopy(cache)  # the kept prefix stays batch 1 and unchanged
            cache.batch_repeat_interleave(len(enc))
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.past_key_values, out.logits[:, -1, :].float(), mask, positions

    def _shared_prefix(self, enc: list[list[int]]) -> tuple[list[int], Any]:
        """The token prefix common to all prompts, with its KV cache (batch 1):
        the kept one when every prompt starts with it, else the batch's own
        common prefix, computed and kept (when several prompts share enough)."""
        import torch

        if not self.config.share_prefix:
            return [], None
        room = min(map(len, enc)) - 1  # each prompt prefills >= 1 token: its logits start decoding
        if self._prefix is not None:
            ids, cache = self._prefix
            if len(ids) <= room and all(e[: len(ids)] == ids for e in enc):
                return ids, cache
        if len(enc) < 2:
            return [], None
        ids = list(os.path.commonprefix(enc)[:room])  # works on any sequences, token lists too
        if len(ids) < MIN_SHARED_TOKENS:
            return [], None
        out = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True, logits_to_keep=1)
        self._prefix = (ids, out.past_key_values)
        return self._prefix

    def _finish(self, row: _Row, token: int, stop: list[str], longest_stop: int, max_tokens: int) -> bool:
        if token in self.eos_ids:
            row.text, row.reason = self.tokenizer.decode(row.ids[:-1]), EOS
            return True
        text = self.tokenizer.decode(row.ids)
        # A stop string may span tokens: look from just before the new piece.
        found = cut_at_stop(text, stop, max(0, row.checked - longest_stop)) if stop else None
        row.checked = len(text)
        if found:
            row.text, row.reason = found
            return True
        if len(row.ids) >= max_tokens:
            row.text, row.reason = text, LENGTH
            return True
        return False

    @staticmethod
    def _sample(logits: Any, temperature: float, top_p: float, generators: list[Any]) -> Any:
        import torch

        if temperature == 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits / temperature, dim=-1)
        if top_p < 1:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            # Keep the smallest prefix whose mass reaches top_p (the first token always).
            drop = sorted_p.cumsum(-1) - sorted_p >= top_p
            sorted_p = sorted_p.masked_fill(drop, 0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        probs = probs / probs.sum(-1, keepdim=True)
        # One uniform draw per row from the row's own generator: a sample does
        # not depend on what else is in the batch.
        u = torch.stack([torch.rand((), generator=g, device=logits.device) for g in generators])
        cdf = probs.cumsum(-1)
        picks = torch.searchsorted(cdf, u.unsqueeze(-1).to(cdf.dtype)).squeeze(-1)
        return picks.clamp(max=logits.shape[-1] - 1)


@dataclass
class _Row:
    """One sequence being decoded: sample `sample` of prompt `prompt`."""

    prompt: int
    sample: int
    gen: object  # its torch.Generator
    ids: list[int] = field(default_factory=list)
    logprob: float = 0.0
    text: str = ""
    reason: str = ""
    checked: int = 0  # length of the text already searched for stop strings


def _generator(seed: int | None, sample: int, device: Any) -> Any:
    import torch

    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        # Sample j of a request with seed s draws the same numbers wherever the
        # request sits in a batch.
        g.manual_seed((seed * 1_000_003 + sample) % (2**63))
    return g


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = set()
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(value)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
