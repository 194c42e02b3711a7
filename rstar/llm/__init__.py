"""Generation engines behind one interface, and where models come from.

from rstar.llm import load_engine
engine = load_engine("hf")                # transformers, the embedded default model
[[c]] = engine.generate(["x = 1"], stop=["<end_of_step>"], max_tokens=64)
"""

from __future__ import annotations

from typing import Any

from rstar.llm.models import DEFAULT_MODEL, PACKAGED, ModelNotFoundError, resolve_model
from rstar.llm.types import EOS, LENGTH, Completion, Engine

ENGINES = ("hf", "vllm")


def engine_config_class(kind: str) -> type:
    """The settings dataclass of an engine: `HFEngineConfig` or `VLLMEngineConfig`."""
    if kind == "hf":
        from rstar.llm.hf import HFEngineConfig

        return HFEngineConfig
    if kind == "vllm":
        from rstar.llm.vllm_engine import VLLMEngineConfig

        return VLLMEngineConfig
    raise ValueError(f"unknown engine {kind!r}; choose one of {', '.join(ENGINES)}")


def load_engine(kind: str = "hf", **config: Any) -> Engine:
    """Build an engine by name: "hf" (transformers) or "vllm".

    Keyword arguments are the fields of `HFEngineConfig` or `VLLMEngineConfig`.
    """
    settings = engine_config_class(kind)(**config)
    if kind == "hf":
        from rstar.llm.hf import HFEngine

        return HFEngine(settings)
    from rstar.llm.vllm_engine import VLLMEngine

    return VLLMEngine(settings)


__all__ = [
    "load_engine",
    "engine_config_class",
    "Engine",
    "Completion",
    "EOS",
    "LENGTH",
    "resolve_model",
    "ModelNotFoundError",
    "DEFAULT_MODEL",
    "PACKAGED",
    "ENGINES",
]
