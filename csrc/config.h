/* What the embedding interpreter decides for a zygote (sandbox/_core.pyx
 * fills it from sandbox/_zygote_config.py). */
#ifndef SBX_CONFIG_H
#define SBX_CONFIG_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stdint.h>

#include "child.h"

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
};

/* What a spare keeps once sbx_serve returns in it: the plan of its setup,
 * for sbx_child_receive. */
struct sbx_job {
    struct sbx_child_plan plan;
};

#endif
