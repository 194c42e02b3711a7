"""The data files the reference releases and trains from (its `train/`), so
that a policy and a PPM can be trained from data synthesised elsewhere (round
1's 236B bootstrap is out of most users' reach) and our data used by its
scripts.

    SFT:  {"query": question, "response": "<code>\\n# Step 1: ..."}
          the prompt is the official SFT prompt around the query
    PPM:  {"prompt": prefix, "pos": step, "neg": step, "pos_count": 2, "neg_count": 2}
          the texts scored are prompt + pos and prompt + neg

The reference writes them as JSON arrays; JSON Lines are read too.
"""

from __future__ import annotations

import json
from pathlib import Path

from rstar.prompts import sft_prompt

ASSISTANT = "\n<|assistant|>"


def sft_to_official(records: list[dict]) -> list[dict]:
    return [{"query": r["question"], "response": r["response"]} for r in records]


def pairs_to_official(pairs: list[dict]) -> list[dict]:
    return [
        {
            "prompt": p["prefix"],
            "pos": p["positive"],
            "neg": p["negative"],
            "pos_count": p.get("pos_count", 1),
            "neg_count": p.get("neg_count", 1),
        }
        for p in pairs
    ]


def sft_from_official(row: dict, index: int) -> dict:
    """One official SFT row as ours (prompt, response)."""
    _strings(row, "query", "response")
    return {
        "id": f"official-{index}",
        "question": row["query"],
        "prompt": sft_prompt(row["query"]),
        "response": row["response"],
    }


def pair_from_official(row: dict, index: int) -> dict:
    """One official PPM row as ours; pairs of one question share an id (the
    prompt up to the assistant's turn), so held-out pairs are split by problem."""
    _strings(row, "prompt", "pos", "neg")
    question = row["prompt"].split(ASSISTANT, 1)[0]
    return {
        "id": question,
        "kind": "step",
        "prefix": row["prompt"],
        "positive": row["pos"],
        "negative": row["neg"],
        "pos_count": row.get("pos_count", 1),
        "neg_count": row.get("neg_count", 1),
    }


def _strings(row: dict, *keys: str) -> None:
    if not all(isinstance(row[k], str) and row[k] for k in keys):
        raise TypeError(f"{', '.join(keys)} must be non-empty strings")


def is_official(row: dict) -> bool:
    return ("query" in row and "response" in row) or ("pos" in row and "neg" in row)


def read_rows(path: Path) -> list:
    """The rows of a JSON Lines file or of a JSON array (the reference's files).

    Raises:
        ValueError: the file is neither; the message names the file and line.
    """
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a JSON array ({exc.msg} at line {exc.lineno})") from None
        return rows
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
    return rows


def official_text(rows: list[dict]) -> str:
    """An official data file's text (a JSON array, as the reference writes)."""
    return json.dumps(rows, indent=1, ensure_ascii=False) + "\n"
