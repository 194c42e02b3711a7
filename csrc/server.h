/* The zygote's state, shared by supervise.c (the loop, requests, spares,
 * answers) and snapshot.c (prefix snapshots and the forks they ask for). */
#ifndef SBX_SERVER_H
#define SBX_SERVER_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "capture.h"
#include "child.h"
#include "protocol.h"
#include "supervise.h"

enum kill_reason { KILL_NONE, KILL_TIMEOUT, KILL_OUTPUT };

struct request {
    struct sbx_request hdr;
    char *code;
    uint32_t *step_end; /* for a program of steps: where each step's record ends */
    /* The steps as snapshots are keyed: each step's first line, its length
     * without trailing whitespace, and that text. Steps that differ only in
     * trailing whitespace share snapshots when they start on the same lines. */
    char *key;
    uint32_t *key_end;
    bool scratch; /* run it from scratch: no snapshot may take it */
    struct request *next;
};

enum role {
    ROLE_SPARE,    /* forked and prepared, waiting for its program */
    ROLE_RUNNING,  /* running a request (or waiting to be forked for one) */
    ROLE_SNAPSHOT, /* the live end state of a prefix of steps, serving forks */
};

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
    bool released;         /* that job runs in this process: no longer a snapshot */
};

struct child {
    enum role role;
    struct request *req;
    pid_t pid; /* 0 until a process forked through a notification says who it is */
    int pidfd;
    int job_fd;                 /* write end of its job pipe; -1 once closed */
    int out_fd, err_fd, rep_fd; /* read ends; -1 once at EOF */
    int given[SBX_GIVEN_COUNT]; /* its ends, handed over in its clone's notification */
    struct sbx_buf out, err, rep, report;
    double started, deadline;
    bool demoted, reaped, dropped;
    bool answered; /* result sent on its end mark; only the reaping is left */
    bool ended;    /* its end mark arrived */
    bool evicted;
    bool notified;   /* its process creation is notified to this zygote */
    bool in_place;   /* runs in the process of the snapshot it came from */
    double base_cpu; /* CPU seconds that process had used before this program */
    struct sbx_mark end;
    enum kill_reason killed;
    int wstatus;
    struct rusage ru;
    uint32_t from_step;  /* steps that came from a snapshot */
    uint32_t steps_done; /* of its request, so far */
    double prefix_wall, prefix_cpu;
    struct child *asked_fork; /* the snapshot to fork off at this step's end */
    struct child *source;     /* the snapshot that forks it, until it does */
    struct snapshot *snap;
};

struct server {
    const struct sbx_config *cfg;
    int in_fd, out_fd, devnull;
    bool input_closed;
    struct sbx_buf inbuf, outbuf;
    struct request *queue_head, *queue_tail;
    struct child **children;
    size_t n_children, cap_children;
    int n_running;  /* dispatched and not demoted */
    int n_spares;   /* forked, prepared, waiting for a program */
    int *listeners; /* seccomp listeners, one per spare's lineage */
    size_t n_listeners, cap_listeners;
    struct seccomp_notif *notif;
    struct seccomp_notif_resp *notif_resp;
    uint64_t clock;        /* LRU time */
    bool snapshots_broken; /* the kernel refused what they need: fresh forks only */
    struct pollfd *pfds;
    size_t cap_pfds;
};

/* supervise.c */
int sbx_add_child(struct server *s, struct child *c);
struct child *sbx_child_new(enum role role);
void sbx_kill_child(struct child *c, enum kill_reason why);
void sbx_requeue(struct server *s, struct request *r, bool scratch);
void sbx_request_free(struct request *r);
/* Give up on a child (kill it, or drop it if it was never forked) and queue
 * its request again; `scratch`: no snapshot may take it. */
void sbx_rerun(struct server *s, struct child *c, bool scratch);
uint32_t sbx_step_first_line(const struct request *r, uint32_t step);
int sbx_open_pipe(int fds[2], bool read_nonblock);
void sbx_drain_outputs(struct child *c);

/* snapshot.c */
bool sbx_snapshots_on(const struct server *s);
/* The live snapshot with the longest proper prefix of r's steps; *k its steps. */
struct child *sbx_snapshot_find(struct server *s, const struct request *r, uint32_t *k);
/* Send r to snapshot src (whose prefix has k steps); 0 or -errno. */
int sbx_snapshot_start(struct server *s, struct child *src, struct request *r, uint32_t k);
/* The marks a child writes on its report pipe. */
void sbx_snapshot_step_done(struct server *s, struct child *c, const struct sbx_mark *m);
void sbx_snapshot_pid(struct server *s, struct child *c, const struct sbx_mark *m);
void sbx_snapshot_listener(struct server *s, struct child *c);
/* A running child answered on a clean end: keep it as a snapshot? true if kept. */
bool sbx_snapshot_keep(struct server *s, struct child *c);
/* A child is gone (or no longer running): undo what snapshots and forks in
 * flight expected of it; a dead snapshot's pending job is queued again. */
void sbx_snapshot_gone(struct server *s, struct child *c);
void sbx_snapshot_handle_notification(struct server *s, int listener);
void sbx_snapshot_stats(const struct server *s, uint32_t *count, double *mb);
void sbx_snapshot_free(struct snapshot *snap);

#endif
