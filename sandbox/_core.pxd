# Declarations mirroring csrc/*.h.
from libc.stdint cimport uint64_t


cdef extern from "<linux/filter.h>" nogil:
    struct sock_fprog:
        unsigned short len
        void *filter


cdef extern from "policy.h" nogil:
    int sbx_policy_compile(bint allow_threads, sock_fprog *out)
    int sbx_policy_dump(bint allow_threads, int fd)
    int sbx_policy_entry(int index, const char **name, const char **action, int *err)


cdef extern from "landlock.h" nogil:
    int sbx_landlock_abi()
    int sbx_landlock_ruleset_new(const char *const *paths, size_t n_paths)


cdef extern from "child.h" nogil:
    struct sbx_child_plan:
        pass

    char *sbx_child_receive(const sbx_child_plan *plan, size_t *len)


cdef extern from "supervise.h" nogil:
    struct sbx_config:
        const sock_fprog *filter
        const sock_fprog *filter_threads
        int ruleset_fd
        int drop_uid
        int drop_gid
        bint keep_dac_read
        uint64_t base_address_space
        int max_running
        double demote_after_s
        int nofile
        void (*before_fork)() noexcept
        void (*after_fork_parent)() noexcept

    struct sbx_job:
        sbx_child_plan plan

    int sbx_serve(int in_fd, int out_fd, const sbx_config *cfg, sbx_job *job)


cdef extern from "memory.h" nogil:
    long long sbx_collapse_heap()
