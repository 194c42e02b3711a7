/* The setup of a forked child, as one ordered list of fallible steps:
 * process group, parent-death signal, descriptors, rlimits, privilege drop,
 * no_new_privs, Landlock, seccomp. A failing step is written to the report
 * pipe as "S<step>:<errno>" and the child exits; stdout is never used. */
#ifndef SBX_CHILD_H
#define SBX_CHILD_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Descriptor numbers inside the child. */
#define SBX_CHILD_REPORT_FD 3
/* Exit code of a child whose setup failed. */
#define SBX_EXIT_SETUP 121

struct sbx_child_plan {
    int stdin_fd;   /* opened on /dev/null */
    int stdout_fd;  /* write ends of the capture pipes */
    int stderr_fd;
    int report_fd;
    int ruleset_fd; /* Landlock ruleset, or -1 */
    pid_t supervisor;
    double cpu_s;
    uint64_t address_space_bytes; /* 0 = unlimited */
    int nofile;
    int drop_uid;   /* -1 = keep */
    int drop_gid;
    bool keep_dac_read; /* keep CAP_DAC_READ_SEARCH after the uid drop */
    const struct sock_fprog *filter;
};

/* Run every step; returns only on success (on failure the child exits). */
void sbx_child_setup(const struct sbx_child_plan *plan);

#endif
