"""What searches, evaluations, training runs and evolve rounds measured: typed
records that the CLI, the report and the orchestrator read by attribute.
Each is written to JSON with its field names as keys and read back with
`from_dict`, which ignores keys it does not know (a file of a later version)
and fails on a missing one (a damaged file)."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")


class Record:
    """JSON in and out for a dataclass of plain values and other records."""

    # keys an earlier version wrote under another name: {old: field}
    RENAMED: ClassVar[dict[str, str]] = {}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dataclasses.asdict(self)  # type: ignore[call-overload]
        return data

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        """Raises ValueError when `data` is not such a record."""
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        values = {}
        for key, value in data.items():
            key = cls.RENAMED.get(key, key)
            if key in names:
                values[key] = _build(hints[key], value)
        try:
            return cls(**values)
        except TypeError as exc:
            raise ValueError(f"{cls.__name__}: {exc}") from None


def _build(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_dict(value)
    return value


# -- search --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SearchCost(Record):
    """What one `search_problems` call spent (several workers: phases in
    worker-seconds; `other_s` is the search's own bookkeeping)."""

    searched: int
    setup_s: float
    wall_s: float
    seconds: dict[str, float]
    other_s: float
    driver_cpu_s: float


@dataclasses.dataclass(frozen=True)
class SearchSummary(Record):
    """Trees in a search folder: problems, solved ones, step nodes."""

    problems: int
    solved: int
    nodes: int
    steps_failed: int
    terminals: int
    this_run: SearchCost | None = None

    def plus(self, other: SearchSummary) -> SearchSummary:
        return SearchSummary(
            self.problems + other.problems,
            self.solved + other.solved,
            self.nodes + other.nodes,
            self.steps_failed + other.steps_failed,
            self.terminals + other.terminals,
        )


@dataclasses.dataclass(frozen=True)
class QHistogram(Record):
    """Counts of step nodes' Q-values in equal bins over [-1, 1]."""

    edges: list[float]
    counts: list[int]


# -- evaluation ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EvalMetrics(Record):
    """One `rstar eval` run: the mode's answers graded, with majority vote
    and pass@n over the same samples."""

    mode: str
    n: int
    problems: int
    correct: int
    accuracy: float
    pass_at_n: float
    majority_correct: int
    majority_accuracy: float
    wall_s: float


@dataclasses.dataclass(frozen=True)
class Score(Record):
    correct: int
    accuracy: float


@dataclasses.dataclass(frozen=True)
class GuidedScore(Score):
    """PPM-guided search (beam or MCTS) on the held-out set."""

    RENAMED: ClassVar[dict[str, str]] = {"pass": "pass_at_n"}
    mode: str
    pass_at_n: float


@dataclasses.dataclass(frozen=True)
class ExtraScore(Score):
    """Greedy accuracy on the second held-out set."""

    set: str
    problems: int


@dataclasses.dataclass(frozen=True)
class Curve(Record):
    """Accuracy using the first k samples of each problem."""

    k: list[int]
    majority: list[float]
    best_of_n: list[float] | None


@dataclasses.dataclass(frozen=True)
class AnswerPairs(Record):
    """How often the PPM scores a correct held-out solution above a wrong one."""

    pairs: int
    accuracy: float | None


@dataclasses.dataclass(frozen=True)
class HeldoutMetrics(Record):
    problems: int
    greedy: Score
    n: int
    majority: Score
    best_of_n: Score | None
    guided: GuidedScore | None
    extra: ExtraScore | None
    pass_at_n: float
    curve: Curve
    answer_pairs: AnswerPairs | None


# -- training ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainMetrics(Record):
    """A training run (policy SFT or PPM). A process of a launch other than
    the first reports its steps only."""

    steps: int
    resumed: bool
    train_loss: float | None = None
    skipped_too_long: int = 0
    processes: int = 1
    losses: list[float] = dataclasses.field(default_factory=list)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    examples: int | None = None  # policy: SFT examples
    pairs: int | None = None  # PPM: pairs read, then split in two
    train_pairs: int | None = None
    eval_pairs: int | None = None
    eval_pairwise_accuracy: float | None = None

    def summary(self) -> TrainSummary:
        return TrainSummary(
            self.steps,
            self.train_loss,
            self.skipped_too_long,
            self.eval_pairwise_accuracy,
            self.eval_pairs,
            self.train_pairs,
        )


@dataclasses.dataclass(frozen=True)
class TrainSummary(Record):
    steps: int
    train_loss: float | None
    skipped_too_long: int = 0
    eval_pairwise_accuracy: float | None = None
    eval_pairs: int | None = None
    train_pairs: int | None = None


# -- evolve --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RoundMetrics(Record):
    """One evolve round (round 0: the base policy's evaluation only)."""

    round: int
    policy: str
    tuned: bool
    ppm: str | None
    eval: HeldoutMetrics
    seconds: dict[str, float]
    search_model: str | None = None
    search: SearchSummary | None = None
    solved_ids: list[str] = dataclasses.field(default_factory=list)
    q_values: QHistogram | None = None
    sft_examples: int = 0
    ppm_pairs: int = 0
    pair_counts: dict[str, int] | None = None
    policy_train: TrainSummary | None = None
    ppm_train: TrainSummary | None = None


@dataclasses.dataclass(frozen=True)
class EvolveResult:
    rounds: list[RoundMetrics]
    report: Path
