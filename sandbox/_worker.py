"""One zygote process, seen from the caller: start, send, receive, stop."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from sandbox._protocol import READY, decode_frames
from sandbox._types import Result
from sandbox._zygote_config import ZygoteConfig

# The zygote's environment: one thread per numeric library, so that forked
# children never inherit (or need) thread pools.
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    # The same set and dict-of-str orders in every zygote: a program prints
    # the same whichever worker or snapshot runs it.
    "PYTHONHASHSEED": "0",
}
HUGE_PAGE_TUNABLE = "glibc.malloc.hugetlb=1"

BOOT = "import sys; sys.path[:] = {path!r}; from sandbox._zygote import main; main()"


class WorkerStartError(RuntimeError):
    """A zygote could not start; the message carries its stderr."""


class Worker:
    """A zygote and the requests it has in flight."""

    def __init__(self, config: ZygoteConfig, start_timeout_s: float):
        self.config = config
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.buf = bytearray()
        self.in_flight: dict[int, int] = {}  # request id -> batch index
        self.demoted: set[int] = set()
        self.info: dict[str, Any] = {}
        self.snapshots: tuple[int, float] = (0, 0.0)  # live count and MiB, as last reported

    # -- life cycle ----------------------------------------------------
    def start(self) -> None:
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = [package_parent] + self.config.sys_path
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            # -s and our own environment rather than -I, which would ignore it.
            [sys.executable, "-s", "-c", BOOT.format(path=path), self.config.to_json()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd="/",
            env=zygote_env(self.config.env),
            start_new_session=True,  # a Ctrl-C in the caller's terminal is the caller's
        )

    def wait_ready(self) -> dict[str, Any]:
        """Block until the zygote says it is ready; raise WorkerStartError if it dies."""
        deadline = time.monotonic() + self.start_timeout_s
        fd = self.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                if len(self.buf) >= READY.size:
                    (size,) = READY.unpack_from(self.buf)
                    if len(self.buf) >= READY.size + size:
                        self.info = json.loads(bytes(self.buf[READY.size : READY.size + size]))
                        del self.buf[: READY.size + size]
                        if self.info["failures"]:
                            self.stop()
                            raise WorkerStartError("; ".join(self.info["failures"]))
                        return self.info
                left = deadline - time.monotonic()
                if left <= 0:
                    self.stop()
                    raise WorkerStartError(f"zygote not ready after {self.start_timeout_s:.0f} s")
                if sel.select(left) and not self.read():
                    raise WorkerStartError(f"zygote exited during start-up: {self.stop()}")

    def stop(self) -> str:
        """Close the zygote's input (it kills its children and exits), then make
        sure it is gone. Returns what it wrote to stderr."""
        if self.proc is None:
            return ""
        proc, self.proc = self.proc, None
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # children die with it (PDEATHSIG)
            proc.wait()
        self._log.seek(0)
        log = self._log.read().decode("utf-8", "replace").strip()
        self._log.close()
        return log[-2000:]

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- traffic ---------------------------------------------------------
    @property
    def load(self) -> int:
        """Requests that occupy a running slot (demoted ones do not)."""
        return len(self.in_flight) - len(self.demoted)

    def send(self, request_id: int, index: int, frame: bytes) -> None:
        self.in_flight[request_id] = index
        stdin = self._running().stdin
        assert stdin is not None  # started with stdin=PIPE
        stdin.write(frame)
        stdin.flush()

    def fileno(self) -> int:
        stdout = self._running().stdout
        assert stdout is not None  # started with stdout=PIPE
        return stdout.fileno()

    def _running(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise RuntimeError("this zygote is not running")
        return self.proc

    def read(self) -> bool:
        """Read what is available; False at end of file (the zygote died)."""
        chunk = os.read(self.fileno(), 1 << 20)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def frames(self) -> Iterator[tuple[int, Result]]:
        for _kind, request_id, result, snapshots in decode_frames(self.buf):
            self.snapshots = snapshots
            if result is None:
                self.demoted.add(request_id)
                continue
            self.demoted.discard(request_id)
            index = self.in_flight.pop(request_id, None)
            if index is not None:
                yield index, result


# What a program's environment holds: what the interpreter needs and nothing
# of the caller's, whose environment is where tokens and credentials live.
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    **SINGLE_THREAD_ENV,
    "GLIBC_TUNABLES": HUGE_PAGE_TUNABLE,
}
# The loader's and the sanitizers' settings (an interpreter linked against a
# libpython outside the default path; scripts/sanitize.sh): read once at start,
# then removed from the zygote's os.environ before any program runs.
STARTUP_ONLY_ENV = ("LD_LIBRARY_PATH", "LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")


def zygote_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A zygote's environment: BASE_ENV, then what the user passed explicitly
    (`Sandbox(env=...)`), then the caller's start-up-only variables."""
    env = {**BASE_ENV, **(extra or {})}
    for key in STARTUP_ONLY_ENV:
        if key in os.environ and key not in env:
            env[key] = os.environ[key]
    return env
