"""Problem sets: JSON Lines of {id, question, answer}, validated before any work."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
# Bundled sets (MIT-licensed sources; see README): evaluation sets and training pools.
BUNDLED = {
    "math500": "math500.jsonl",
    "gsm8k": "gsm8k_test.jsonl",
    "aime2024": "aime2024.jsonl",
    "amc23": "amc23.jsonl",
    "gsm8k_train": "gsm8k_train.jsonl",
    "math_train": "math_train.jsonl",
    # Generated one- and two-operation word problems (scripts/make_arith.py):
    # the cpu-demo's pool and held-out set.
    "arith_train": "arith_train.jsonl",
    "arith_test": "arith_test.jsonl",
    # "What is a and b?" with single digits: the tiny test model's problems.
    "toy_train": "toy_train.jsonl",
    "toy_test": "toy_test.jsonl",
    # GSM8K test problems of likely one or two operations (scripts/make_gsm8k_simple.py states
    # the rule): held out beside arith_test, phrased by people, not by the generator.
    "gsm8k_simple": "gsm8k_simple.jsonl",
}


class ProblemFileError(ValueError):
    """A problem file that cannot be used; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Problem:
    id: str
    question: str
    answer: str | None


def load_problems(name_or_path: str, limit: int | None = None) -> list[Problem]:
    """A bundled set by name, or a JSONL file. Every line is checked first.

    Raises:
        ProblemFileError: missing file, malformed line, missing or empty
            field, duplicate id.
    """
    path = DATA_DIR / BUNDLED[name_or_path] if name_or_path in BUNDLED else Path(name_or_path)
    if not path.is_file():
        raise ProblemFileError(f"no problem set {name_or_path!r}: not a file and not one of {', '.join(BUNDLED)}")
    problems, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ProblemFileError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ProblemFileError(f"{where}: expected an object with id, question, answer")
            pid, question = row.get("id"), row.get("question")
            if not isinstance(pid, (str, int)) or not isinstance(question, str) or not question.strip():
                raise ProblemFileError(f"{where}: needs a string or integer 'id' and a non-empty 'question'")
            answer = row.get("answer")
            if answer is not None and not isinstance(answer, (str, int, float)):
                raise ProblemFileError(f"{where}: 'answer' must be a string or a number")
            if str(pid) in seen:
                raise ProblemFileError(f"{where}: duplicate id {pid!r}")
            seen.add(str(pid))
            problems.append(Problem(str(pid), question, None if answer is None else str(answer)))
            if limit is not None and len(problems) >= limit:
                break
    if not problems:
        raise ProblemFileError(f"{path}: no problems")
    return problems
