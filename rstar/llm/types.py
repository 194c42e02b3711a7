"""What every generation engine returns, and the checks every engine applies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

LENGTH = "length"  # stop reason: max_tokens reached
EOS = "eos"  # stop reason: the model ended the sequence


@dataclass(frozen=True, slots=True)
class Completion:
    """One sampled continuation.

    Attributes:
        text: the generated text, without the stop string and without the
            end-of-sequence token.
        stop_reason: the stop string that ended it, `"length"` or `"eos"`.
        num_tokens: tokens generated (the stop string's and EOS included).
        logprob: sum of the model's log-probabilities of those tokens (from
            the raw logits, before temperature and top-p).
    """

    text: str
    stop_reason: str
    num_tokens: int
    logprob: float


Seed = int | Sequence[int] | None


def seeds_for(seed: Seed, n_prompts: int) -> list[int | None]:
    """Each prompt's seed: a sampled prompt draws from its own seed, so its
    completions never depend on which other prompts share the call."""
    if seed is None or isinstance(seed, int):
        return [seed] * n_prompts
    seeds: list[int | None] = list(seed)
    if len(seeds) != n_prompts or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"seed must be an int or one int per prompt ({n_prompts}), got {len(seeds)} values")
    return seeds


class Engine(Protocol):
    """A generation backend. The transformers and vLLM engines give the same
    semantics, so the search never knows which one runs."""

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
        """For each prompt, `n` completions. `seed`: one for every prompt, one
        per prompt, or None (unseeded)."""
        ...

    def close(self) -> None:
        """Free the model's memory; the engine is not used afterwards."""
        ...


def check_request(
    prompts: Sequence[str], n: int, stop: Sequence[str], max_tokens: int, temperature: float, top_p: float
) -> None:
    """Reject a malformed request before any work is done."""
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise TypeError("prompts must be a sequence of strings")
    if not prompts:
        raise ValueError("prompts is empty: nothing to generate")
    if not all(isinstance(p, str) and p for p in prompts):
        raise ValueError("every prompt must be a non-empty string")
    if isinstance(stop, str) or not all(isinstance(s, str) and s for s in stop):
        raise ValueError("stop must be a sequence of non-empty strings")
    if n < 1 or max_tokens < 1:
        raise ValueError(f"n and max_tokens must be >= 1, got n={n}, max_tokens={max_tokens}")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")


def check_counts(results: list[list[Completion]], n_prompts: int, n: int) -> list[list[Completion]]:
    """The batch invariant: one list per prompt, n completions in each."""
    if len(results) != n_prompts:
        raise RuntimeError(f"engine returned {len(results)} results for {n_prompts} prompts")
    for i, r in enumerate(results):
        if len(r) != n:
            raise RuntimeError(f"engine returned {len(r)} completions for prompt {i}, expected {n}")
    return results


def cut_at_stop(text: str, stop: Sequence[str], search_from: int = 0) -> tuple[str, str] | None:
    """The text before the earliest stop string at or after `search_from`, and
    that stop string; None when no stop string occurs.

    >>> cut_at_stop("x = 1<end_of_step>y", ["<end_of_step>"])
    ('x = 1', '<end_of_step>')
    """
    best: tuple[int, str] | None = None
    for s in stop:
        i = text.find(s, search_from)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, s)
    return None if best is None else (text[: best[0]], best[1])
