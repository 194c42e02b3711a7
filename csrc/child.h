/* The setup of a forked child, as one ordered list of fallible steps:
 * process group, parent-death signal, descriptors, privilege drop,
 * no_new_privs, Landlock -- done ahead of time while the child waits as a
 * spare -- then, once its program arrives on the job pipe, rlimits and
 * seccomp. A failing step is written to the report pipe as
 * "S<step>:<errno>" and the child exits; stdout is never used. */
#ifndef SBX_CHILD_H
#define SBX_CHILD_H

#include <linux/filter.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "protocol.h"

/* Descriptor numbers inside the child. */
#define SBX_CHILD_REPORT_FD  3
#define SBX_CHILD_JOB_FD     4
#define SBX_CHILD_RULESET_FD 5
/* A spare's seccomp listener, until the zygote has taken a copy. */
#define SBX_CHILD_LISTENER_FD 5
/* Where the zygote puts a forked child's descriptors (stdout, stderr, report,
 * job) in its parent, during the notification of its clone: just below the
 * open-file limit, where user code rarely has descriptors of its own. */
#define SBX_GIVEN_FD                 60
#define SBX_GIVEN_COUNT              4 /* stdout, stderr, report, job */
#define SBX_MIN_NOFILE_FOR_SNAPSHOTS (SBX_GIVEN_FD + SBX_GIVEN_COUNT)
/* The only process creation the zygote lets a sandboxed process make: a
 * sibling (a child of the zygote), asked for on the job pipe. */
#define SBX_FORK_FLAGS (CLONE_PARENT | SIGCHLD)
/* Exit code of a child whose setup failed. */
#define SBX_EXIT_SETUP 121

struct sbx_child_plan {
    int stdin_fd;  /* opened on /dev/null */
    int stdout_fd; /* write ends of the capture pipes */
    int stderr_fd;
    int report_fd;
    int job_fd;     /* read end of the job pipe */
    int ruleset_fd; /* Landlock ruleset, or -1 */
    pid_t supervisor;
    uint64_t base_address_space; /* the zygote's mappings, added to memory limits */
    int nofile;
    int drop_uid; /* -1 = keep */
    int drop_gid;
    bool keep_dac_read;                      /* keep CAP_DAC_READ_SEARCH after the uid drop */
    const struct sock_fprog *filter;         /* NULL = no seccomp */
    const struct sock_fprog *filter_threads; /* the same, threads allowed */
    const struct sock_fprog *filter_notify;  /* the same, process creation notified;
                                                NULL = no snapshots */
};

/* The steps that need no program: run in a spare as soon as it is forked.
 * Returns only on success (on failure the child exits). */
void sbx_child_prepare(const struct sbx_child_plan *plan);
/* Block until the program arrives on the job pipe, then apply its limits and
 * the seccomp filter (for a program of steps: the notifying one, whose
 * listener is handed to the zygote first). Returns the malloc'ed payload;
 * *job is its header. */
char *sbx_child_receive(const struct sbx_child_plan *plan, struct sbx_request *job);

/* Between two steps: report that a step ended normally and do what the
 * zygote answers. Returns NULL to go on with the next step. If the zygote
 * asked for a snapshot, the forked copy becomes that snapshot and serves
 * jobs: it returns only in a child forked for a job, or in the snapshot
 * itself for a job that runs in place, with the job's payload (*job is its
 * header). */
char *sbx_child_step_done(const struct sbx_child_plan *plan, double cpu_s, int64_t peak_rss_kb,
                          uint64_t private_kb, struct sbx_request *job);

/* The program ended: report it. Unless `flags` has SBX_END_CLEAN the process
 * exits here. Otherwise it becomes the snapshot of its last step and returns
 * only with a job, as sbx_child_step_done does. */
char *sbx_child_finish(const struct sbx_child_plan *plan, int exit_code, uint32_t flags,
                       double cpu_s, int64_t peak_rss_kb, uint64_t private_kb, const char *report,
                       size_t report_len, struct sbx_request *job);

#endif
