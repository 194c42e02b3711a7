"""Write the bundled generated problems: arith_* (one- and two-operation word
problems with known integer answers: the cpu-demo's pool and held-out set) and
toy_* ("What is a and b?", the product of two digits: what the tiny test
model learned to solve, sometimes). Seeded, so running it again writes the
same files; train and test share no question.

    python scripts/make_arith.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

NAMES = ["Tom", "Ana", "Ben", "Mia", "Sam", "Lea", "Raj", "Zoe", "Kim", "Leo"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "cards", "shells"]


def one_problem(rng: random.Random) -> tuple[str, int]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c = rng.randint(2, 12), rng.randint(2, 12), rng.randint(1, 9)
    templates = [
        (f"{name} has {a + 10} {item} and buys {b} more. How many {item} does {name} have now?", a + 10 + b),
        (f"{name} has {a + b} {item} and gives away {b}. How many {item} are left?", a),
        (f"There are {a} bags with {b} {item} in each bag. How many {item} are there in all?", a * b),
        (f"{name} shares {a * b} {item} equally among {b} friends. How many {item} does each friend get?", a),
        (f"{name} buys {a} packs of {b} {item} and gives away {c}. How many {item} are left?", a * b - c),
        (
            f"{name} has {a} {item}, buys {b} more and then gives {c} to a friend. How many {item} does {name} have?",
            a + b - c,
        ),
        (f"{name} reads {a} {item} a day for {b} days and then {c} more. How many {item} in total?", a * b + c),
    ]
    return rng.choice(templates)


def write(path: Path, n: int, rng: random.Random, taken: set[str], prefix: str) -> None:
    rows = []
    while len(rows) < n:
        question, answer = one_problem(rng)
        if question in taken:
            continue
        taken.add(question)
        rows.append({"id": f"{prefix}-{len(rows)}", "question": question, "answer": str(answer)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_toy(data: Path) -> None:
    """ "What is a and b?" (a times b, single digits): the tiny model's problems."""
    pairs = [(a, b) for a in range(2, 10) for b in range(2, 10)]
    random.Random(7).shuffle(pairs)
    for name, part in (("toy_test", pairs[:16]), ("toy_train", pairs[16:])):
        rows = [
            {"id": f"{name}-{i}", "question": f"What is {a} and {b}?", "answer": str(a * b)}
            for i, (a, b) in enumerate(part)
        ]
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def main() -> None:
    data = Path(__file__).resolve().parent.parent / "rstar" / "data"
    rng, taken = random.Random(2025), set()
    write(data / "arith_test.jsonl", 100, rng, taken, "arith-test")
    write(data / "arith_train.jsonl", 1000, rng, taken, "arith-train")
    write_toy(data)


if __name__ == "__main__":
    main()
