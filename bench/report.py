"""Writing a benchmark's JSON result (shared by the bench scripts)."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone


def search_run_fields(args) -> dict:
    """When, where and on what a search benchmark ran (its --problems, --limit, --preset)."""
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "problems": args.problems,
        "limit": args.limit,
        "preset": args.preset,
    }


def save_report(report: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwrote {path}")
