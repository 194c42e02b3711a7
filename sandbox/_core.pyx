# cython: language_level=3
"""Thin binding over the C core: marshal arguments, turn -errno into OSError.

Everything that decides policy or defaults lives in Python (sandbox/_zygote.py,
sandbox/_types.py); everything that enforces it lives in csrc/.
"""
import os

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdlib cimport free, malloc

from sandbox._core cimport (sbx_collapse_heap, sbx_config, sbx_job, sbx_landlock_abi,
                            sbx_landlock_ruleset_new, sbx_policy_compile,
                            sbx_policy_dump, sbx_policy_entry, sbx_serve,
                            sock_fprog)


cdef extern from "Python.h":
    void PyOS_BeforeFork()
    void PyOS_AfterFork_Parent()
    void PyOS_AfterFork_Child()


cdef int _check(int rc, str what) except -1:
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}")
    return rc


cdef void _before_fork() noexcept:
    PyOS_BeforeFork()


cdef void _after_fork_parent() noexcept:
    PyOS_AfterFork_Parent()


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 when it has none."""
    cdef int abi = sbx_landlock_abi()
    return abi if abi > 0 else 0


def collapse_heap() -> int:
    """Move this process's anonymous memory onto huge pages; returns bytes collapsed."""
    cdef long long n = sbx_collapse_heap()
    _check(<int>n if n < 0 else 0, "collapse heap")
    return n


def policy_table() -> list:
    """The seccomp table as (syscall, action, errno) rows."""
    cdef const char *name
    cdef const char *action
    cdef int err = 0
    cdef int n = sbx_policy_entry(-1, &name, &action, &err)
    rows = []
    for i in range(n):
        sbx_policy_entry(i, &name, &action, &err)
        rows.append((name.decode(), action.decode(), err))
    return rows


def policy_dump(bint allow_threads=False) -> str:
    """The compiled policy in libseccomp's readable PFC form."""
    r, w = os.pipe()
    try:
        rc = sbx_policy_dump(allow_threads, w)
        os.close(w)
        w = -1
        _check(rc, "seccomp_export_pfc")
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def serve(int in_fd, int out_fd, *, bint seccomp, landlock_paths, int drop_uid,
          int drop_gid, bint keep_dac_read, unsigned long long base_address_space,
          int max_running, double demote_after_s, int nofile, on_ready):
    """Run the zygote loop. `on_ready()` is called once the policy and the
    Landlock ruleset are built. Returns None in the zygote once its input
    closes, and the program (bytes) in a child whose isolation is in place."""
    cdef sock_fprog plain
    cdef sock_fprog threads
    cdef sbx_config cfg
    cdef sbx_job job
    cdef const char **paths = NULL
    cdef int rc = 0
    plain.filter = NULL
    threads.filter = NULL
    cfg.filter = NULL
    cfg.filter_threads = NULL
    cfg.ruleset_fd = -1
    cfg.drop_uid = drop_uid
    cfg.drop_gid = drop_gid
    cfg.keep_dac_read = keep_dac_read
    cfg.base_address_space = base_address_space
    cfg.max_running = max_running
    cfg.demote_after_s = demote_after_s
    cfg.nofile = nofile
    cfg.before_fork = _before_fork
    cfg.after_fork_parent = _after_fork_parent
    try:
        if seccomp:
            _check(sbx_policy_compile(False, &plain), "seccomp policy")
            _check(sbx_policy_compile(True, &threads), "seccomp policy")
            cfg.filter = &plain
            cfg.filter_threads = &threads
        if landlock_paths is not None:
            encoded = [os.fsencode(p) for p in landlock_paths]
            paths = <const char **>malloc(max(1, len(encoded)) * sizeof(char *))
            if paths == NULL:
                raise MemoryError()
            for i, p in enumerate(encoded):
                paths[i] = p
            cfg.ruleset_fd = _check(sbx_landlock_ruleset_new(paths, len(encoded)),
                                    "landlock ruleset")
        on_ready()
        # The zygote runs no other thread, so the GIL stays held: the fork
        # hooks of the interpreter need it.
        rc = sbx_serve(in_fd, out_fd, &cfg, &job)
        if rc == 1:
            PyOS_AfterFork_Child()
            return PyBytes_FromStringAndSize(job.code, job.code_len)
        _check(rc, "sandbox supervisor")
        return None
    finally:
        # In a child these frees are harmless: its memory is its own copy.
        free(paths)
        free(plain.filter)
        free(threads.filter)
        if cfg.ruleset_fd >= 0 and rc != 1:
            os.close(cfg.ruleset_fd)
