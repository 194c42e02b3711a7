/* The zygote's loop: read requests from the caller, fork one child per
 * program, supervise many at once (pidfds, capture pipes, deadlines), and
 * send each outcome back, classified. */
#ifndef SBX_SUPERVISE_H
#define SBX_SUPERVISE_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sbx_config {
    const struct sock_fprog *filter;         /* NULL = no seccomp */
    const struct sock_fprog *filter_threads; /* the same, threads allowed */
    const struct sock_fprog *filter_notify;  /* the same, process creation notified
                                                (NULL = no prefix snapshots) */
    int max_snapshots;                       /* live snapshots kept at most */
    uint64_t max_snapshot_bytes;             /* and their private memory at most */
    int ruleset_fd;                          /* Landlock ruleset, or -1 */
    int drop_uid, drop_gid;                  /* -1 = keep */
    bool keep_dac_read;
    uint64_t base_address_space; /* the zygote's own mappings, added to memory limits */
    int max_running;             /* programs running at normal priority */
    double demote_after_s;       /* a program running longer is demoted */
    int nofile;
    /* Fork hooks of the embedding interpreter (may be NULL). */
    void (*before_fork)(void);
    void (*after_fork_parent)(void);
};

#include "child.h"

/* What a spare keeps once sbx_serve returns in it: the plan of its setup,
 * for sbx_child_receive. */
struct sbx_job {
    struct sbx_child_plan plan;
};

/* Serve requests from in_fd, answer on out_fd.
 * Returns 0 in the zygote at end of input (every child killed and reaped),
 * -errno on a fatal error, and 1 in a spare: a prepared child that should
 * make itself ready and then call sbx_child_receive(&job->plan, ...). */
int sbx_serve(int in_fd, int out_fd, const struct sbx_config *cfg, struct sbx_job *job);

#endif
