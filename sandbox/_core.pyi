"""Type stub of the compiled core (sandbox/_core.pyx over csrc/)."""

from collections.abc import Callable, Sequence

REQUEST_SIZE: int
RESPONSE_SIZE: int
STATUS_CODES: dict[str, int]
MIN_NOFILE: int
END_CLEAN: int
END_UNSPLIT: int
EXIT_SETUP: int
KILL_REASONS: dict[str | None, int]
FILTERS: dict[str, int]

# A job: (payload, steps in it, steps its snapshot already ran).
Job = tuple[bytes, int, int, int]  # payload, n_steps, first_step, first_line

def receive() -> Job | None: ...
def step_done(cpu_s: float, peak_rss_kb: int, private_kb: int) -> Job | None: ...
def finish(
    exit_code: int, flags: int, cpu_s: float, peak_rss_kb: int, private_kb: int, report: bytes
) -> Job | None: ...
def classify(
    *,
    waited: bool,
    ended: bool,
    wstatus: int = 0,
    end_exit: int = 0,
    killed: str | None = None,
    cpu_s: float = 0.0,
    cpu_limit_s: float = 0.0,
    report: bytes = b"",
) -> tuple[int, str, int]: ...
def snapshot_support() -> str | None: ...
def landlock_abi() -> int: ...
def lay_out_heap() -> None: ...
def collapse_heap() -> int: ...
def policy_table() -> list[tuple[str, str, int]]: ...
def policy_dump(variant: str = "plain") -> str: ...
def syscall_number(name: str) -> int: ...
def serve(
    in_fd: int,
    out_fd: int,
    *,
    seccomp: bool,
    landlock_paths: Sequence[str] | None,  # None: Landlock off
    drop_uid: int,
    drop_gid: int,
    keep_dac_read: bool,
    base_address_space: int,
    max_running: int,
    demote_after_s: float,
    nofile: int,
    max_snapshots: int,
    max_snapshot_bytes: int,
    on_ready: Callable[[], object],
) -> bool: ...
