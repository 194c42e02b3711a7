/* The loop. Each turn: answer the children that are done, start queued
 * requests (from snapshots or on spares), enforce deadlines, then poll the
 * caller's pipes, every child's pidfd and pipes, and the seccomp listeners.
 * What a child is and may become is children.c's; what a result says is
 * outcome.c's; the bytes on the wire are wire.c's. */
#include "supervise.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "children.h"
#include "memory.h"
#include "notify.h"
#include "outcome.h"
#include "snapshot.h"
#include "util.h"
#include "wire.h"

#define DEMOTED_NICE 15

struct server {
    const struct sbx_config *cfg;
    int in_fd, out_fd, devnull;
    bool input_closed;
    struct sbx_buf inbuf, outbuf;
    struct request_queue queue;
    struct children children;
    struct snapshot_cache snapshots;
    struct notifier notifier;
    struct pollfd *pfds;
    size_t cap_pfds;
};

/* ---- results -------------------------------------------------------- */

static int send_result(struct server *s, struct child *c, double now)
{
    bool waited = c->proc == PROC_REAPED;
    double cpu = waited ? sbx_rusage_cpu(&c->ru) - c->base_cpu : c->end.cpu_s;
    const struct sbx_buf *report = c->ended ? &c->report : &c->rep;
    struct sbx_facts facts = {
        .waited = waited,
        .ended = c->ended,
        .wstatus = c->wstatus,
        .end_exit = c->end.exit_code,
        .killed = c->killed,
        .cpu_s = cpu,
        .cpu_limit_s = c->req->hdr.cpu_s - c->prefix_cpu,
        .report = report->data,
        .report_len = report->len,
    };
    struct sbx_outcome o;
    sbx_classify(&facts, &o);
    c->wstatus = o.wstatus;
    struct sbx_response hdr = {
        .kind = SBX_FRAME_RESULT,
        .status = o.status,
        .id = c->req->hdr.id,
        .wall_s = now - c->started,
        .cpu_s = cpu,
        .peak_rss_mb = (double)(waited ? c->ru.ru_maxrss : c->end.peak_rss_kb) / 1024.0,
        .exit_code = WIFEXITED(o.wstatus) ? WEXITSTATUS(o.wstatus) : -1,
        .term_signal = WIFSIGNALED(o.wstatus) ? WTERMSIG(o.wstatus) : 0,
        .truncated = c->out.truncated || c->err.truncated,
        .stdout_len = (uint32_t)c->out.len,
        .stderr_len = (uint32_t)c->err.len,
        .error_len = (uint32_t)o.error_len,
        .snapshot_steps = c->from_step,
    };
    uint32_t live;
    double mb;
    sbx_snapshot_stats(&s->snapshots, &live, &mb);
    hdr.live_snapshots = live;
    hdr.snapshot_mb = mb;
    return sbx_wire_frame(&s->outbuf, &hdr, &c->out, &c->err, o.error, o.error_len);
}

/* A result for a request that never got a child. */
static int send_sandbox_error(struct server *s, const struct request *r, int err)
{
    char line[128];
    int n = snprintf(line, sizeof line, "sandbox: could not start the program: %s", strerror(-err));
    struct sbx_response hdr = {
        .kind = SBX_FRAME_RESULT,
        .status = SBX_SANDBOX_ERROR,
        .id = r->hdr.id,
        .exit_code = -1,
        .error_len = n > 0 ? (uint32_t)n : 0,
    };
    return sbx_wire_frame(&s->outbuf, &hdr, NULL, NULL, line, hdr.error_len);
}

/* ---- starting programs ---------------------------------------------- */

/* Start one queued request from a snapshot if one holds a prefix of it.
 * Returns 1 if started, 0 if it should go to a spare, -1 if it must wait:
 * its snapshot is busy forking, or is itself still being forked (the program
 * that left it may have answered first; a shorter prefix would redo steps). */
static int start_from_snapshot(struct server *s, struct request *r)
{
    if (!r->hdr.n_steps || r->scratch || !sbx_snapshots_on(&s->snapshots))
        return 0;
    uint32_t k = 0;
    struct child *src = sbx_snapshot_find(&s->snapshots, r, &k);
    if (!src)
        return 0;
    if (src->proc != PROC_LIVE || src->snap->pending)
        return -1;
    if (sbx_snapshot_start(&s->snapshots, src, r, k) < 0)
        return 0; /* that snapshot is gone; run it from scratch */
    return 1;
}

static int spawn_spare(struct server *s, struct sbx_job *job)
{
    return sbx_children_spawn_spare(&s->children, s->cfg, s->devnull,
                                    sbx_snapshots_on(&s->snapshots), job);
}

/* Start queued programs, from snapshots or on spares (forking spares as
 * needed); keep one spare per slot ready so that the next program does not
 * wait for a fork. Returns 1 in a forked spare. */
static int start_queued(struct server *s, struct sbx_job *job)
{
    struct request_queue *q = &s->queue;
    struct request *prev = NULL, *r = q->head;
    while (r && s->children.n_running < s->cfg->max_running) {
        int from_snapshot = start_from_snapshot(s, r);
        if (from_snapshot < 0) {
            prev = r;
            r = r->next;
            continue;
        }
        if (from_snapshot > 0) {
            r = sbx_queue_unlink(q, prev, r);
            continue;
        }
        struct child *c = sbx_children_idle_spare(&s->children);
        if (!c) {
            int rc = spawn_spare(s, job);
            if (rc == 1)
                return 1;
            if (rc < 0) {
                struct request *failed = r;
                r = sbx_queue_unlink(q, prev, r);
                int qrc = send_sandbox_error(s, failed, rc);
                sbx_request_free(failed);
                if (qrc < 0)
                    return qrc;
            }
            continue;
        }
        struct request *next = r->next;
        if (sbx_child_hand_job(&s->children, c, r) < 0)
            continue; /* that spare died; try another */
        sbx_queue_unlink(q, prev, r);
        r = next;
    }
    if (s->children.n_spares < s->cfg->max_running && spawn_spare(s, job) == 1)
        return 1;
    return 0;
}

/* ---- marks and answers ---------------------------------------------- */

/* Act on the marks at the front of a child's report; what follows them
 * (a setup failure's text) stays for classification. */
static void take_marks(struct server *s, struct child *c)
{
    struct sbx_mark m;
    while (c->rep.len >= sizeof m && !c->ended) {
        memcpy(&m, c->rep.data, sizeof m);
        if (m.magic != SBX_MARK_MAGIC || c->rep.len < sizeof m + m.len)
            return;
        /* A process forked through a notification must say who it is first. */
        if ((c->proc == PROC_UNBORN || c->proc == PROC_NONE) && m.kind != SBX_MARK_PID) {
            sbx_buf_consume(&c->rep, sizeof m + m.len);
            continue;
        }
        /* A program in place: what its process used before is not its own. */
        m.cpu_s = m.cpu_s > c->base_cpu ? m.cpu_s - c->base_cpu : 0;
        switch (m.kind) {
        case SBX_MARK_END:
            c->ended = true;
            c->end = m;
            if (m.flags & SBX_END_CLEAN) {
                c->steps_done++;
                /* Its pipes stay open; what it printed before the mark is in. */
                sbx_child_drain_outputs(c);
                c->output_in = true;
            }
            (void)sbx_buf_append(&c->report, c->rep.data + sizeof m, m.len);
            break;
        case SBX_MARK_STEP:
            sbx_child_drain_outputs(c); /* what it printed before the mark is in */
            sbx_snapshot_step_done(&s->snapshots, c, &m);
            break;
        case SBX_MARK_LISTENER:
            sbx_notify_take_listener(&s->notifier, &s->snapshots, c);
            break;
        case SBX_MARK_PID:
            sbx_notify_pid_mark(&s->snapshots, c, &m);
            break;
        }
        sbx_buf_consume(&c->rep, sizeof m + m.len);
    }
}

/* The child answered on its end mark: keep it as a snapshot or end it. */
static int answer_on_end(struct server *s, struct child *c, double now)
{
    int rc = send_result(s, c, now);
    bool clean = c->end.flags & SBX_END_CLEAN && c->killed == SBX_KILL_NONE && !c->out.truncated &&
                 !c->err.truncated;
    if (!clean || !sbx_snapshot_keep(&s->snapshots, c)) {
        sbx_child_answered(&s->children, c);
        sbx_child_kill(c, SBX_KILL_NONE); /* also ends a program that forged its end mark */
    }
    return rc;
}

/* Answer what can be answered, then free the records nothing more can come
 * of. Settling a record can only finish records that owe no result (a
 * pending job queued again, a fork that will not come), so one pass of
 * settling before the sweep loses no answer. */
static int finish_done(struct server *s, double now)
{
    struct children *t = &s->children;
    int rc = 0;
    for (size_t i = 0; i < t->n; i++) {
        struct child *c = t->items[i];
        if (sbx_child_owes_result(c) && c->ended && sbx_child_output_done(c)) {
            if (c->end.flags & SBX_END_UNSPLIT)
                sbx_child_rerun(t, c, true);
            else if (rc == 0)
                rc = answer_on_end(s, c, now);
        }
        /* A process forked through a notification that never said who it is:
         * it ran out of time, or its fork failed (every pipe at EOF). */
        bool unborn = c->proc == PROC_UNBORN && !c->source && c->given[GIVEN_JOB] < 0;
        if (unborn && sbx_child_owes_result(c) && c->killed != SBX_KILL_NONE)
            sbx_child_drop(c);
        else if (unborn && sbx_child_output_done(c) && c->rep_fd < 0)
            sbx_child_rerun(t, c, true);
        if (c->proc == PROC_REAPED && c->state == CHILD_SNAPSHOT)
            sbx_snapshot_gone(&s->snapshots, c);
    }
    for (size_t i = 0; i < t->n; i++) {
        struct child *c = t->items[i];
        if (!sbx_child_finished(c))
            continue;
        if (sbx_child_owes_result(c) && rc == 0)
            rc = send_result(s, c, now);
        sbx_snapshot_gone(&s->snapshots, c); /* no snapshot waits on it any more */
    }
    sbx_children_sweep(t);
    return rc;
}

/* Deadlines and demotion; returns the poll timeout in ms. */
static int enforce_time(struct server *s, double now)
{
    double next = -1;
    for (size_t i = 0; i < s->children.n; i++) {
        struct child *c = s->children.items[i];
        if (c->proc == PROC_REAPED || !sbx_child_owes_result(c))
            continue;
        if (c->deadline > 0 && now >= c->deadline)
            sbx_child_kill(c, SBX_KILL_TIMEOUT);
        else if (c->deadline > 0 && (next < 0 || c->deadline < next))
            next = c->deadline;
        if (c->state == CHILD_RUNNING && c->killed == SBX_KILL_NONE && c->proc == PROC_LIVE &&
            s->cfg->demote_after_s > 0) {
            double at = c->started + s->cfg->demote_after_s;
            if (now >= at) {
                /* A long runner (often a never-ending loop) yields the CPU to
                 * fresh programs and frees its slot; its deadline still holds. */
                setpriority(PRIO_PROCESS, (id_t)c->pid, DEMOTED_NICE);
                sbx_child_demote(&s->children, c);
                struct sbx_response hdr = {.kind = SBX_FRAME_DEMOTED, .id = c->req->hdr.id};
                /* Best effort: without it the caller only dispatches less. */
                (void)sbx_wire_frame(&s->outbuf, &hdr, NULL, NULL, NULL, 0);
            } else if (next < 0 || at < next) {
                next = at;
            }
        }
    }
    if (next < 0)
        return -1;
    double ms = (next - now) * 1000.0;
    return ms < 0 ? 0 : (int)ms + 1;
}

/* ---- polling -------------------------------------------------------- */

/* The pollfds of one child: its pidfd, stdout, stderr and report pipes. */
#define FDS_PER_CHILD 4

static int build_pollfds(struct server *s)
{
    const struct children *t = &s->children;
    size_t need = 2 + FDS_PER_CHILD * t->n + s->notifier.n;
    if (need > s->cap_pfds) {
        struct pollfd *p = realloc(s->pfds, need * sizeof *p);
        if (!p)
            return -ENOMEM;
        s->pfds = p;
        s->cap_pfds = need;
    }
    struct pollfd *p = s->pfds;
    p[0] = (struct pollfd){.fd = s->input_closed ? -1 : s->in_fd, .events = POLLIN};
    p[1] = (struct pollfd){.fd = s->outbuf.len ? s->out_fd : -1, .events = POLLOUT};
    for (size_t i = 0; i < t->n; i++) {
        struct child *c = t->items[i];
        struct pollfd *q = &p[2 + FDS_PER_CHILD * i];
        /* A live snapshot prints nothing; its pipes are for the program
         * that may continue in its process. One still being forked is
         * watched on every pipe: all at EOF, its fork failed. */
        bool unborn_snapshot = c->state == CHILD_SNAPSHOT && c->proc == PROC_UNBORN;
        bool printing = (c->state != CHILD_SNAPSHOT || unborn_snapshot) && !c->output_in;
        q[0] = (struct pollfd){.fd = c->pidfd, .events = POLLIN};
        q[1] = (struct pollfd){.fd = printing ? c->out_fd : -1, .events = POLLIN};
        q[2] = (struct pollfd){.fd = printing ? c->err_fd : -1, .events = POLLIN};
        q[3] = (struct pollfd){.fd = c->rep_fd, .events = POLLIN};
    }
    struct pollfd *l = &p[2 + FDS_PER_CHILD * t->n];
    for (size_t i = 0; i < s->notifier.n; i++)
        l[i] = (struct pollfd){.fd = s->notifier.listeners[i], .events = POLLIN};
    return (int)need;
}

static void handle_children(struct server *s, size_t n_children)
{
    /* Marks may add children (snapshots being forked): they come after n. */
    for (size_t i = 0; i < n_children; i++) {
        struct child *c = s->children.items[i];
        struct pollfd *p = &s->pfds[2 + FDS_PER_CHILD * i];
        if (p[1].revents || p[2].revents)
            sbx_child_drain_outputs(c);
        if (p[3].revents) {
            sbx_child_drain_report(c);
            take_marks(s, c);
        }
        if (p[0].revents)
            sbx_child_reap(c);
    }
}

static int read_input(struct server *s)
{
    for (;;) {
        long n = sbx_buf_read_fd(&s->inbuf, s->in_fd);
        if (n == -EAGAIN)
            break;
        if (n < 0)
            return (int)n;
        if (n == 0) {
            s->input_closed = true;
            break;
        }
    }
    return sbx_wire_parse(&s->inbuf, &s->queue);
}

static void server_free(struct server *s)
{
    sbx_children_shutdown(&s->children);
    sbx_queue_clear(&s->queue);
    sbx_notifier_free(&s->notifier);
    sbx_buf_free(&s->inbuf);
    sbx_buf_free(&s->outbuf);
    free(s->pfds);
    if (s->devnull >= 0)
        close(s->devnull);
}

int sbx_serve(int in_fd, int out_fd, const struct sbx_config *cfg, struct sbx_job *job)
{
    struct server s = {.cfg = cfg, .in_fd = in_fd, .out_fd = out_fd};
    s.children.queue = &s.queue;
    s.snapshots = (struct snapshot_cache){.cfg = cfg, .children = &s.children};
    int rc;
    sbx_seal_heap();
    s.devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (s.devnull < 0)
        return -errno;
    if ((rc = sbx_set_nonblock(in_fd, 1)) < 0 || (rc = sbx_set_nonblock(out_fd, 1)) < 0)
        goto out;
    if (cfg->filter_notify && (rc = sbx_notifier_init(&s.notifier)) < 0)
        goto out;
    for (;;) {
        /* Finish first: a finished child frees the slot a queued request
         * needs, and its answer goes out before a spare is forked (~1.5 ms). */
        if ((rc = finish_done(&s, sbx_now())) < 0 || (rc = sbx_wire_flush(&s.outbuf, out_fd)) < 0)
            goto out;
        rc = start_queued(&s, job);
        if (rc == 1)
            return 1; /* in the child: its setup already closed every other fd */
        if (rc < 0)
            goto out;
        double now = sbx_now();
        if (s.input_closed) {
            /* The caller is gone or closed us: nothing may outlive it. */
            rc = 0;
            goto out;
        }
        int timeout = enforce_time(&s, now);
        if ((rc = sbx_wire_flush(&s.outbuf, out_fd)) < 0)
            goto out;
        int nfds = build_pollfds(&s);
        if (nfds < 0) {
            rc = nfds;
            goto out;
        }
        size_t n_children = s.children.n, n_listeners = s.notifier.n;
        if (SBX_RETRY(poll(s.pfds, (nfds_t)nfds, timeout)) < 0) {
            rc = -errno;
            goto out;
        }
        if (s.pfds[0].revents && (rc = read_input(&s)) < 0)
            goto out;
        handle_children(&s, n_children);
        sbx_notify_handle(&s.notifier, &s.snapshots, &s.pfds[2 + FDS_PER_CHILD * n_children],
                          n_listeners);
    }
out:
    server_free(&s);
    return rc;
}
