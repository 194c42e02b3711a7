"""Writing a benchmark's JSON result (shared by the bench scripts)."""

from __future__ import annotations

import json
import os


def save_report(report: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"\nwrote {path}")
