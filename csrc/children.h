/* The zygote's process table: one record per child process (or per process
 * to come), what it is for, whether its process exists, and the few
 * transitions between those states. The counters the scheduler reads
 * (running, spares) change only in those transitions.
 *
 * A record has two states:
 *   what it is for   SPARE -> RUNNING <-> (DEMOTED) -> ENDING
 *                                    \-> SNAPSHOT -> EVICTED | ENDING
 *   its process      UNBORN -> LIVE -> REAPED, or UNBORN -> NONE
 * UNBORN: a fork through a seccomp notification is to make it (its pid is
 * not known yet); NONE: it never will, or its process was handed to another
 * record. A record is freed once nothing more can come of it
 * (sbx_child_finished). */
#ifndef SBX_CHILDREN_H
#define SBX_CHILDREN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "capture.h"
#include "child.h"
#include "config.h"
#include "outcome.h"
#include "wire.h"

enum child_state {
    CHILD_SPARE,    /* forked and prepared, waiting for its program */
    CHILD_RUNNING,  /* running a request (or to be forked for one) */
    CHILD_DEMOTED,  /* running long, at low priority, out of the running count */
    CHILD_SNAPSHOT, /* the live end state of a prefix of steps, serving forks */
    CHILD_EVICTED,  /* a snapshot killed to keep the caps */
    CHILD_ENDING,   /* answered or given up: only its process is left */
};

enum child_process { PROC_UNBORN, PROC_LIVE, PROC_REAPED, PROC_NONE };

/* The descriptors a process forked through a notification gets from the
 * zygote: the other ends of its pipes, in this order at SBX_GIVEN_FD. */
enum given_slot { GIVEN_STDOUT, GIVEN_STDERR, GIVEN_REPORT, GIVEN_JOB };
_Static_assert(GIVEN_JOB + 1 == SBX_GIVEN_COUNT, "one slot per given descriptor");

/* What a snapshot record holds (filled and read by snapshot.c). */
struct snapshot {
    char *key; /* the limits, then the key of the prefix's steps (struct request) */
    size_t key_len;
    uint64_t hash;
    uint32_t steps;
    struct sbx_buf out, err; /* what the prefix printed */
    double wall_s, cpu_s;    /* what the prefix cost */
    uint64_t private_bytes;  /* estimated from the pages its prefix wrote */
    uint64_t last_used;
    struct child *pending; /* a job sent to it, whose clone is not seen yet */
    int unborn_forks;      /* clones it made whose process has not said who it
                            * is: killing it could still abort one */
};

struct child {
    enum child_state state;
    enum child_process proc;
    struct request *req;
    pid_t pid; /* 0 while UNBORN */
    int pidfd;
    int job_fd;                 /* write end of its job pipe; -1 once closed */
    int out_fd, err_fd, rep_fd; /* read ends; -1 once at EOF */
    int given[SBX_GIVEN_COUNT]; /* its ends, handed over in its clone's notification */
    struct sbx_buf out, err, rep, report;
    double started, deadline;
    bool ended;      /* its end mark arrived: `end` holds it */
    bool notified;   /* its process creation is notified to this zygote */
    bool output_in;  /* it ended clean: all it printed is in, its pipes stay open */
    double base_cpu; /* CPU seconds that process had used before this program */
    struct sbx_mark end;
    enum sbx_kill_reason killed;
    int wstatus;
    struct rusage ru;
    uint32_t from_step;  /* steps that came from a snapshot */
    uint32_t steps_done; /* of its request, so far */
    double prefix_wall, prefix_cpu;
    struct child *asked_fork;  /* the snapshot to fork off at this step's end */
    struct child *source;      /* the snapshot that forks it, until it does */
    struct child *forked_from; /* that snapshot after its clone, until this says who it is */
    struct snapshot *snap;
};

struct children {
    struct child **items;
    size_t n, cap;
    int n_running;               /* RUNNING records */
    int n_spares;                /* SPARE records */
    struct request_queue *queue; /* where a rerun request goes */
};

/* Fork a spare (see child.h): 1 in the child (job->plan is its setup),
 * 0 in the zygote, -errno on failure. */
int sbx_children_spawn_spare(struct children *t, const struct sbx_config *cfg, int devnull,
                             bool notify, struct sbx_job *job);
/* An UNBORN record, with the pipes a forked process is given (`with_pipes`)
 * or none (it is to take over a snapshot's process, sbx_child_hand_over);
 * NULL if it could not be made (nothing is left behind). */
struct child *sbx_children_add_unborn(struct children *t, enum child_state state, bool with_pipes);
struct child *sbx_children_idle_spare(const struct children *t);
/* Free the records sbx_child_finished says are done with. */
void sbx_children_sweep(struct children *t);
/* Kill and reap every child, and any process they made that the zygote
 * does not know of; free every record. */
void sbx_children_shutdown(struct children *t);

/* SPARE -> RUNNING: write r to its job pipe. 0, or -errno if the spare is
 * gone (it is then ENDING). */
int sbx_child_hand_job(struct children *t, struct child *c, struct request *r);
void sbx_child_demote(struct children *t, struct child *c);
/* RUNNING or DEMOTED -> ENDING, once its result is sent. */
void sbx_child_answered(struct children *t, struct child *c);
/* RUNNING or DEMOTED -> SNAPSHOT: its end state is kept (snap). */
void sbx_child_keep(struct children *t, struct child *c, struct snapshot *snap);
/* SNAPSHOT -> EVICTED: kill it and its process group. */
void sbx_child_evict(struct children *t, struct child *c);
/* Give up on a child: kill it (or, UNBORN, drop it) and queue its request
 * again; `scratch`: no snapshot may take it. -> ENDING. */
void sbx_child_rerun(struct children *t, struct child *c, bool scratch);
/* Any state -> ENDING: nothing more is expected of it. */
void sbx_child_end(struct children *t, struct child *c);

/* UNBORN -> LIVE: its process said who it is. */
void sbx_child_born(struct child *c, pid_t pid, int pidfd);
/* UNBORN -> NONE: its process will not come. */
void sbx_child_drop(struct child *c);
/* In place: snapshot src's process and its descriptors go on as c's (c:
 * UNBORN -> LIVE, src: -> NONE and ENDING). */
void sbx_child_hand_over(struct children *t, struct child *src, struct child *c, double base_cpu);
/* LIVE -> REAPED if its process ended. */
void sbx_child_reap(struct child *c);
void sbx_child_kill(struct child *c, enum sbx_kill_reason why);

/* Counted in the running slots or demoted: its result is still owed. */
bool sbx_child_owes_result(const struct child *c);
/* Its stdout and stderr are at EOF (everything it printed is in). */
bool sbx_child_output_done(const struct child *c);
/* Nothing more can come of it: its record may be freed. */
bool sbx_child_finished(const struct child *c);
/* Read what its capture pipes hold; past the output cap it is killed. */
void sbx_child_drain_outputs(struct child *c);
/* Read what its report pipe holds. */
void sbx_child_drain_report(struct child *c);

void sbx_snapshot_free(struct snapshot *snap);

#endif
