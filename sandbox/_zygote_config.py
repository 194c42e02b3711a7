"""What a zygote is started with: one typed record, sent as JSON on its
command line by the caller (`_worker.Worker.start`) and read back by the
zygote (`_zygote.main`), so both sides name the same fields."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ZygoteConfig:
    sys_path: list[str]  # the caller's absolute sys.path entries
    preload: list[str]  # modules imported before the heap is frozen
    warmup: str  # code run once before the heap is frozen
    slots: int  # programs run at once
    demote_after_s: float  # a program running longer is reniced and frees its slot
    nofile: int  # RLIMIT_NOFILE of programs (_core.MIN_NOFILE)
    env: dict[str, str]  # the programs' environment on top of the minimal one
    startup_only_env: list[str]  # loader and sanitizer variables dropped after start-up
    max_snapshots: int  # this zygote's share of the live prefix snapshots
    snapshot_memory_mb: int  # and of their memory
    seccomp: bool
    landlock_paths: list[str] | None  # None: Landlock off
    drop_uid: int
    drop_gid: int
    keep_dac_read: bool

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ZygoteConfig:
        return cls(**json.loads(text))
