"""Which protections a zygote applies on this machine, decided once in the caller."""

from __future__ import annotations

import os
import pwd
import stat
import sys
from dataclasses import dataclass

from sandbox import _core

# Read-only paths a child may need besides the interpreter's own: shared
# libraries loaded lazily, the dynamic loader's cache, time zones, the CPU list
# that os.cpu_count() reads, and the device files Python opens.
SYSTEM_READ_PATHS = (
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/usr/share/zoneinfo",
    "/sys/devices/system/cpu",
    "/dev/null",
    "/dev/urandom",
)
UNPRIVILEGED_USER = "nobody"


@dataclass(frozen=True)
class Isolation:
    """The protections of every child of a zygote (see `python -m sandbox check`)."""

    seccomp: bool
    landlock_abi: int  # 0: not enforced
    landlock_paths: tuple[str, ...]
    drop_uid: int  # -1: keep the caller's uid
    drop_gid: int
    keep_dac_read: bool  # the interpreter lies where the unprivileged user cannot read


def interpreter_paths() -> tuple[str, ...]:
    """Everything the interpreter may import or load from, as real paths."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    paths.update(p for p in sys.path if p and os.path.isabs(p))
    paths.update(SYSTEM_READ_PATHS)
    return tuple(sorted(os.path.realpath(p) for p in paths if os.path.exists(p)))


def _world_readable(path: str) -> bool:
    """Whether a user who is neither owner nor group member can reach `path`."""
    parts = os.path.realpath(path).split(os.sep)
    for i in range(2, len(parts) + 1):
        st = os.stat(os.sep.join(parts[:i]) or os.sep)
        need = stat.S_IXOTH if stat.S_ISDIR(st.st_mode) else stat.S_IROTH
        if not st.st_mode & need:
            return False
    return True


def decide(seccomp: bool = True, landlock: bool = True, drop_privileges: bool = True) -> Isolation:
    abi = _core.landlock_abi() if landlock else 0
    paths = interpreter_paths()
    uid = gid = -1
    keep_dac_read = False
    if drop_privileges and os.geteuid() == 0:
        try:
            user = pwd.getpwnam(UNPRIVILEGED_USER)
            uid, gid = user.pw_uid, user.pw_gid
        except KeyError:
            uid = gid = 65534
        # In a venv the stdlib lives under base_prefix: check every path.
        keep_dac_read = not all(_world_readable(p) for p in paths)
    return Isolation(seccomp, abi, paths, uid, gid, keep_dac_read)
