# Declarations mirroring csrc/*.h.
from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef extern from "<linux/filter.h>" nogil:
    struct sock_fprog:
        unsigned short len
        void *filter


cdef extern from "policy.h" nogil:
    enum sbx_filter:
        SBX_FILTER_PLAIN
        SBX_FILTER_THREADS
        SBX_FILTER_NOTIFY

    int sbx_policy_compile(sbx_filter variant, sock_fprog *out)
    int sbx_policy_dump(sbx_filter variant, int fd)
    const char *sbx_policy_notify_unsupported()
    int sbx_policy_entry(int index, const char **name, const char **action, int *err)
    int sbx_syscall_number(const char *name)


cdef extern from "landlock.h" nogil:
    int sbx_landlock_abi()
    int sbx_landlock_ruleset_new(const char *const *paths, size_t n_paths)


cdef extern from "protocol.h" nogil:
    enum sbx_status:
        SBX_OK
        SBX_ERROR
        SBX_TIMEOUT
        SBX_MEMORY
        SBX_OUTPUT_LIMIT
        SBX_KILLED
        SBX_SANDBOX_ERROR

    struct sbx_response:
        pass

    struct sbx_request:
        uint32_t code_len
        uint32_t n_steps
        uint32_t first_step
        uint32_t first_line

    enum:
        SBX_END_CLEAN
        SBX_END_UNSPLIT


cdef extern from "child.h" nogil:
    enum:
        SBX_MIN_NOFILE_FOR_SNAPSHOTS
        SBX_EXIT_SETUP

    struct sbx_child_plan:
        pass

    char *sbx_child_receive(const sbx_child_plan *plan, sbx_request *job)
    char *sbx_child_step_done(const sbx_child_plan *plan, double cpu_s, int64_t peak_rss_kb,
                              uint64_t private_kb, sbx_request *job)
    char *sbx_child_finish(const sbx_child_plan *plan, int exit_code, uint32_t flags,
                           double cpu_s, int64_t peak_rss_kb, uint64_t private_kb,
                           const char *report, size_t report_len, sbx_request *job)


cdef extern from "config.h" nogil:
    struct sbx_config:
        const sock_fprog *filter
        const sock_fprog *filter_threads
        const sock_fprog *filter_notify
        int max_snapshots
        uint64_t max_snapshot_bytes
        int ruleset_fd
        int drop_uid
        int drop_gid
        bint keep_dac_read
        uint64_t base_address_space
        int max_running
        double demote_after_s
        int nofile

    struct sbx_job:
        sbx_child_plan plan


cdef extern from "supervise.h" nogil:
    int sbx_serve(int in_fd, int out_fd, const sbx_config *cfg, sbx_job *job)


cdef extern from "outcome.h" nogil:
    enum sbx_kill_reason:
        SBX_KILL_NONE
        SBX_KILL_TIMEOUT
        SBX_KILL_OUTPUT

    struct sbx_facts:
        bint waited
        bint ended
        int wstatus
        int end_exit
        sbx_kill_reason killed
        double cpu_s
        double cpu_limit_s
        const char *report
        size_t report_len

    struct sbx_outcome:
        sbx_status status
        int wstatus
        const char *error
        size_t error_len

    void sbx_classify(const sbx_facts *f, sbx_outcome *o)


cdef extern from "memory.h" nogil:
    long long sbx_collapse_heap()
    void sbx_lay_out_heap()
    void *sbx_arena_alloc(void *ctx, size_t size)
