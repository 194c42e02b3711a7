/* The setup of a forked child, as one ordered list of fallible steps:
 * process group, parent-death signal, descriptors, privilege drop,
 * no_new_privs, Landlock -- done ahead of time while the child waits as a
 * spare -- then, once its program arrives on the job pipe, rlimits and
 * seccomp. A failing step is written to the report pipe as
 * "S<step>:<errno>" and the child exits; stdout is never used. */
#ifndef SBX_CHILD_H
#define SBX_CHILD_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "protocol.h"

/* Descriptor numbers inside the child. */
#define SBX_CHILD_REPORT_FD 3
#define SBX_CHILD_JOB_FD 4
#define SBX_CHILD_RULESET_FD 5
/* Exit code of a child whose setup failed. */
#define SBX_EXIT_SETUP 121

struct sbx_child_plan {
    int stdin_fd;   /* opened on /dev/null */
    int stdout_fd;  /* write ends of the capture pipes */
    int stderr_fd;
    int report_fd;
    int job_fd;     /* read end of the job pipe */
    int ruleset_fd; /* Landlock ruleset, or -1 */
    pid_t supervisor;
    uint64_t base_address_space; /* the zygote's mappings, added to memory limits */
    int nofile;
    int drop_uid;   /* -1 = keep */
    int drop_gid;
    bool keep_dac_read; /* keep CAP_DAC_READ_SEARCH after the uid drop */
    const struct sock_fprog *filter;         /* NULL = no seccomp */
    const struct sock_fprog *filter_threads; /* the same, threads allowed */
};

/* The steps that need no program: run in a spare as soon as it is forked.
 * Returns only on success (on failure the child exits). */
void sbx_child_prepare(const struct sbx_child_plan *plan);
/* Block until the program arrives on the job pipe, then apply its limits and
 * the seccomp filter. Returns the malloc'ed source; *len is its length. */
char *sbx_child_receive(const struct sbx_child_plan *plan, size_t *len);

#endif
