"""Write rstar/data/gsm8k_simple.jsonl: GSM8K test problems that are likely one
or two operations, phrased by people rather than by scripts/make_arith.py's
templates. `rstar evolve` evaluates on them beside its held-out set, to show
whether a round teaches arithmetic or only the generator's templates.

The rule (deterministic, no judgement by hand): a GSM8K test problem is kept
when its question has at most 3 sentences, holds 2 or 3 numbers written in
digits (no number words such as "twice", "half", "three"), has no percent,
fraction or decimal, and its answer is a whole number below 1,000.

    python scripts/make_gsm8k_simple.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "rstar" / "data"
NUMBER_WORDS = re.compile(
    r"\b(half|twice|double|triple|thrice|quarter|third|one|two|three|four|five|six|seven|"
    r"eight|nine|ten|eleven|twelve|dozen|hundred|thousand)s?\b",
    re.IGNORECASE,
)


def simple(question: str, answer: str) -> bool:
    numbers = re.findall(r"\d[\d,]*", question)
    sentences = [s for s in re.split(r"[.?!]\s", question.strip()) if s.strip()]
    return (
        2 <= len(numbers) <= 3
        and len(sentences) <= 3
        and not NUMBER_WORDS.search(question)
        and not re.search(r"%|\.\d|\d/\d|percent", question)
        and answer.isdigit()
        and int(answer) < 1000
    )


def main() -> None:
    rows = [json.loads(line) for line in open(DATA / "gsm8k_test.jsonl", encoding="utf-8")]
    kept = [
        {"id": r["id"], "question": r["question"], "answer": r["answer"]}
        for r in rows
        if simple(r["question"], r["answer"])
    ]
    with open(DATA / "gsm8k_simple.jsonl", "w", encoding="utf-8") as f:
        for r in kept:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{len(kept)} of {len(rows)} GSM8K test problems -> {DATA / 'gsm8k_simple.jsonl'}")


if __name__ == "__main__":
    main()
