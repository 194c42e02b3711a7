# cython: language_level=3
"""Thin binding over the C core: marshal arguments, turn -errno into OSError.

Everything that decides policy or defaults lives in Python (sandbox/_zygote.py,
sandbox/_types.py); everything that enforces it lives in csrc/.
"""
import os

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdlib cimport free, malloc

from sandbox._core cimport (SBX_END_CLEAN, SBX_END_UNSPLIT, SBX_EXIT_SETUP, SBX_FILTER_NOTIFY,
                            SBX_FILTER_PLAIN, SBX_FILTER_THREADS, SBX_KILL_NONE, SBX_KILL_OUTPUT,
                            SBX_KILL_TIMEOUT, sbx_child_finish, sbx_classify, sbx_facts, sbx_outcome,
                            sbx_child_receive, sbx_child_step_done, sbx_collapse_heap,
                            sbx_arena_alloc, sbx_lay_out_heap,
                            sbx_config, sbx_filter, sbx_job, sbx_landlock_abi,
                            sbx_landlock_ruleset_new, sbx_policy_compile, sbx_policy_dump,
                            sbx_policy_entry, sbx_policy_notify_unsupported, sbx_request, sbx_syscall_number,
                            sbx_serve, sock_fprog)


cdef extern from "Python.h":
    ctypedef struct PyObjectArenaAllocator:
        void *ctx
        void *(*alloc)(void *ctx, size_t size) noexcept
        void (*free)(void *ctx, void *ptr, size_t size) noexcept
    void PyObject_GetArenaAllocator(PyObjectArenaAllocator *allocator)
    void PyObject_SetArenaAllocator(PyObjectArenaAllocator *allocator)
    void PyOS_AfterFork_Child()


# The wire structs' sizes, for sandbox/_protocol.py's mirrors (tested).
REQUEST_SIZE = sizeof(sbx_request)
RESPONSE_SIZE = sizeof(sbx_response)
# enum sbx_status, for sandbox.Status's order (tested).
STATUS_CODES = {
    "ok": SBX_OK, "error": SBX_ERROR, "timeout": SBX_TIMEOUT, "memory": SBX_MEMORY,
    "output_limit": SBX_OUTPUT_LIMIT, "killed": SBX_KILLED, "sandbox_error": SBX_SANDBOX_ERROR,
}
# The open-file limit a child needs: its descriptors are handed over at
# SBX_GIVEN_FD and up.
MIN_NOFILE = SBX_MIN_NOFILE_FOR_SNAPSHOTS
END_CLEAN = SBX_END_CLEAN
# A child whose setup failed exits with this code (its report says why).
EXIT_SETUP = SBX_EXIT_SETUP
END_UNSPLIT = SBX_END_UNSPLIT
FILTERS = {"plain": SBX_FILTER_PLAIN, "threads": SBX_FILTER_THREADS, "notify": SBX_FILTER_NOTIFY}

# The compiled filters outlive serve(): a spare loads one in receive().
cdef sock_fprog _plain
cdef sock_fprog _threads
cdef sock_fprog _notify
# In a spare: the plan of its setup, kept for receive().
cdef sbx_job _spare_job
cdef bint _is_spare = False


cdef int _check(int rc, str what) except -1:
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}")
    return rc


cdef object _job(char *code, sbx_request *job):
    """A job as (payload, steps in it, steps its snapshot already ran, lines
    of the program before its first step)."""
    if code == NULL:
        return None
    try:
        return PyBytes_FromStringAndSize(code, job.code_len), job.n_steps, job.first_step, job.first_line
    finally:
        free(code)


def receive():
    """In a spare: wait for the program, apply its rlimits and the seccomp
    filter, and return it as (payload, n_steps, first_step, first_line); n_steps is 0 for
    a program given as one source. Exits the process if the zygote retires it."""
    cdef sbx_request job
    cdef char *code
    if not _is_spare:
        raise RuntimeError("receive() is only for a spare")
    with nogil:
        code = sbx_child_receive(&_spare_job.plan, &job)
    return _job(code, &job)


def step_done(double cpu_s, long long peak_rss_kb, unsigned long long private_kb):
    """Between two steps: None to go on. If the zygote kept a snapshot here,
    this returns (later, in a child forked from it) the job that child runs."""
    cdef sbx_request job
    cdef char *code = sbx_child_step_done(&_spare_job.plan, cpu_s, peak_rss_kb, private_kb, &job)
    return _job(code, &job)


def finish(int exit_code, unsigned int flags, double cpu_s, long long peak_rss_kb,
           unsigned long long private_kb, bytes report):
    """The program ended. Exits the process unless it is kept as a snapshot;
    then this returns only in a child forked from it, with that child's job."""
    cdef sbx_request job
    cdef char *code = sbx_child_finish(&_spare_job.plan, exit_code, flags, cpu_s, peak_rss_kb,
                                       private_kb, report, len(report), &job)
    return _job(code, &job)


KILL_REASONS = {None: SBX_KILL_NONE, "timeout": SBX_KILL_TIMEOUT, "output": SBX_KILL_OUTPUT}


def classify(*, bint waited, bint ended, int wstatus=0, int end_exit=0, killed=None,
             double cpu_s=0.0, double cpu_limit_s=0.0, bytes report=b""):
    """The zygote's outcome classifier (csrc/outcome.c) on given facts:
    (status code, error line, wait status it reports). For its tests."""
    cdef sbx_facts facts
    cdef sbx_outcome o
    facts.waited = waited
    facts.ended = ended
    facts.wstatus = wstatus
    facts.end_exit = end_exit
    facts.killed = KILL_REASONS[killed]
    facts.cpu_s = cpu_s
    facts.cpu_limit_s = cpu_limit_s
    facts.report = report
    facts.report_len = len(report)
    sbx_classify(&facts, &o)
    error = PyBytes_FromStringAndSize(o.error, o.error_len).decode(errors="replace") if o.error_len else ""
    return o.status, error, o.wstatus


def snapshot_support():
    """None when this kernel can hold prefix snapshots, else why not."""
    cdef const char *why = sbx_policy_notify_unsupported()
    return None if why == NULL else why.decode()


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 when it has none."""
    cdef int abi = sbx_landlock_abi()
    return abi if abi > 0 else 0


cdef PyObjectArenaAllocator _interpreter_arenas, _paired_arenas


def lay_out_heap() -> None:
    """Before the warm-up: allocate so that collapse_heap() can collapse
    (until then, arenas in 2 MiB-aligned pairs)."""
    PyObject_GetArenaAllocator(&_interpreter_arenas)
    _paired_arenas = _interpreter_arenas
    _paired_arenas.alloc = sbx_arena_alloc
    PyObject_SetArenaAllocator(&_paired_arenas)
    sbx_lay_out_heap()


def collapse_heap() -> int:
    """After the warm-up: the interpreter's own allocators back, then this
    process's anonymous memory onto huge pages (and its clean file pages'
    entries, which fork would copy, dropped); returns bytes collapsed."""
    if _paired_arenas.alloc != NULL:
        PyObject_SetArenaAllocator(&_interpreter_arenas)
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


def syscall_number(str name) -> int:
    """This architecture's number of a syscall (-1 if it has none): what
    tests and probes pass to syscall(2), resolved as the policy resolves it."""
    return sbx_syscall_number(name.encode())


def policy_dump(str variant="plain") -> str:
    """The compiled policy (plain, threads or notify) in libseccomp's PFC form."""
    r, w = os.pipe()
    try:
        rc = sbx_policy_dump(FILTERS[variant], w)
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
          int max_running, double demote_after_s, int nofile, int max_snapshots,
          unsigned long long max_snapshot_bytes, on_ready):
    """Run the zygote loop. `on_ready()` is called once the policy and the
    Landlock ruleset are built. Returns False in the zygote once its input
    closes, and True in a spare: a forked child, unprivileged and under
    Landlock, that should make itself ready and then call receive().
    `max_snapshots` 0 turns prefix snapshots off."""
    global _is_spare
    cdef sbx_config cfg
    cdef sbx_job job
    cdef const char **paths = NULL
    cdef int rc = 0
    _plain.filter = NULL
    _threads.filter = NULL
    _notify.filter = NULL
    cfg.filter = NULL
    cfg.filter_threads = NULL
    cfg.filter_notify = NULL
    cfg.max_snapshots = max_snapshots
    cfg.max_snapshot_bytes = max_snapshot_bytes
    cfg.ruleset_fd = -1
    cfg.drop_uid = drop_uid
    cfg.drop_gid = drop_gid
    cfg.keep_dac_read = keep_dac_read
    cfg.base_address_space = base_address_space
    cfg.max_running = max_running
    cfg.demote_after_s = demote_after_s
    cfg.nofile = nofile
    try:
        if seccomp:
            _check(sbx_policy_compile(SBX_FILTER_PLAIN, &_plain), "seccomp policy")
            _check(sbx_policy_compile(SBX_FILTER_THREADS, &_threads), "seccomp policy")
            cfg.filter = &_plain
            cfg.filter_threads = &_threads
            if max_snapshots > 0 and sbx_policy_notify_unsupported() == NULL:
                _check(sbx_policy_compile(SBX_FILTER_NOTIFY, &_notify), "seccomp policy")
                cfg.filter_notify = &_notify
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
        # The GIL stays held: a spare returns into the interpreter from here.
        rc = sbx_serve(in_fd, out_fd, &cfg, &_spare_job)
        if rc == 1:
            PyOS_AfterFork_Child()
            _is_spare = True
            return True
        _check(rc, "sandbox supervisor")
        return False
    finally:
        # In a child these frees are harmless: its memory is its own copy.
        free(paths)
        if rc != 1:  # a spare still needs the filters for receive()
            free(_plain.filter)
            free(_threads.filter)
            free(_notify.filter)
        if cfg.ruleset_fd >= 0 and rc != 1:
            os.close(cfg.ruleset_fd)
