"""The files of a run: JSON Lines read with a torn last line cut off and
appended with fsync, whole files written atomically, tree files, and a folder
claimed for one config. Every stage resumes from what these wrote."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from rstar.config import RunConfig
from rstar.search.tree import Tree, tree_from_record, tree_to_record

TREES = "trees.jsonl"


def read_trees(path: Path) -> list[Tree]:
    """Every complete tree in a tree file; a torn last line (an interrupted
    write) is cut off the file so that appending continues cleanly."""
    return _read_complete(path, lambda raw: tree_from_record(json.loads(raw)))


def _read_complete(path: Path, parse) -> list:
    if not path.exists():
        return []
    items, good_bytes = [], 0
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                items.append(parse(raw))
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"{path}: line {len(items) + 1} is not valid ({exc}); "
                    "the file is damaged: move it away to redo its work"
                ) from None
            good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return items


def tree_lines(trees: list[Tree], config: dict) -> list[str]:
    """The lines a tree file holds for these trees (made where they were
    searched, so that the one process writing the file only writes)."""
    return [json.dumps(tree_to_record(t, config)) for t in trees]


def read_jsonl(path: Path) -> list[dict]:
    """The complete lines of a JSONL file written by append_jsonl; a torn last
    line (an interrupted write) is cut off."""
    return _read_complete(path, json.loads)


def append_jsonl(path: Path, rows: list[dict]) -> None:
    append_lines(path, [json.dumps(row) for row in rows])


def append_lines(path: Path, lines: list[str]) -> None:
    """Append JSON lines (without their newline) and fsync."""
    with open(path, "a", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def claim(
    path: Path,
    spec: dict,
    mismatch: Callable[[dict], str],
    error: type[Exception] = ValueError,
    defaults: dict | None = None,
) -> None:
    """Record `spec`, what a folder runs, in `path`; or check that the spec
    already there is the same, so that a folder only ever holds one run.
    `mismatch(theirs)` says why another spec is refused. `defaults` (shaped
    like spec): a setting the recorded spec lacks matches when this run
    leaves it at its default, so a folder written before the setting existed
    continues."""
    spec = json.loads(json.dumps(spec))  # as stored: tuples become lists
    if not path.exists():
        write_atomic(path, json.dumps(spec, indent=2))
        return
    try:
        theirs = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise error(f"{path} is damaged (not JSON); it records what {path.parent} runs") from None
    if defaults is not None and isinstance(theirs, dict):
        theirs = with_new_defaults(theirs, spec, json.loads(json.dumps(defaults)))
    if theirs != spec:
        raise error(mismatch(theirs))


def with_new_defaults(theirs: dict, spec: dict, defaults: dict) -> dict:
    """`theirs` plus the keys it lacks whose value in `spec` is their default."""
    out = dict(theirs)
    for key, value in spec.items():
        default = defaults.get(key)
        if key not in theirs:
            if key in defaults and value == default:
                out[key] = value
        elif isinstance(value, dict) and isinstance(theirs[key], dict) and isinstance(default, dict):
            out[key] = with_new_defaults(theirs[key], value, default)
    return out


def claim_folder(out: Path, config: RunConfig, kind: str) -> None:
    """Record the run's config in `out`; refuse a folder of another run."""
    out.mkdir(parents=True, exist_ok=True)
    claim(
        out / "config.json",
        {"command": kind, **config.to_dict()},
        lambda theirs: (
            f"{out} holds a {theirs.get('command', '?')} run with another config; "
            "use another --out or the same preset and overrides"
        ),
        defaults={"command": kind, **RunConfig().to_dict()},
    )


def write_atomic(path: Path, text: str) -> None:
    """Write a file whole or not at all (a kill leaves the old one or none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
