/* Prefix snapshots: a process that ran a prefix of a program's steps stays
 * alive as that prefix's end state, and later programs with the same prefix
 * fork from it and run only their remaining steps.
 *
 * A snapshot runs user code's leftovers, so it may not create processes on
 * its own: its filter sends every process creation to this zygote as a
 * seccomp user notification, and the zygote lets through exactly one clone
 * (CLONE_PARENT | SIGCHLD, so the child is the zygote's) per fork it asked
 * for on the job pipe, handing the child's descriptors over in the same
 * notification. Everything else is answered EPERM. The last program its
 * caller has for a prefix runs in the snapshot itself: the zygote hands the
 * descriptors over the same way but answers the clone with 0 without letting
 * it through, so the snapshot goes on as that program's process. */
#include <errno.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/seccomp.h>

#include "child.h"
#include "server.h"
#include "util.h"

/* Programs fork from a snapshot only under the limits it was made with:
 * they are inherited (CPU, memory) or its output counts toward them. */
struct __attribute__((packed)) key_limits {
    double cpu_s;
    uint64_t memory_bytes;
    uint64_t output_bytes;
    uint32_t flags;
};

#define FNV_OFFSET 1469598103934665603ULL
#define FNV_PRIME  1099511628211ULL

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * FNV_PRIME;
    return h;
}

static struct key_limits limits_of(const struct request *r)
{
    return (struct key_limits){r->hdr.cpu_s, r->hdr.memory_bytes, r->hdr.output_bytes,
                               r->hdr.flags & ~(SBX_FLAG_RELEASE_PREFIX | SBX_FLAG_KEEP_END)};
}

bool sbx_snapshots_on(const struct server *s)
{
    return s->cfg->filter_notify && s->cfg->max_snapshots > 0 && !s->snapshots_broken;
}

void sbx_snapshot_free(struct snapshot *snap)
{
    if (!snap)
        return;
    free(snap->key);
    sbx_buf_free(&snap->out);
    sbx_buf_free(&snap->err);
    free(snap);
}

/* A snapshot of the first `steps` steps of r. */
static struct snapshot *snapshot_new(const struct request *r, uint32_t steps)
{
    struct snapshot *snap = calloc(1, sizeof *snap);
    struct key_limits lim = limits_of(r);
    size_t end = r->key_end[steps - 1];
    if (!snap || !(snap->key = malloc(sizeof lim + end))) {
        free(snap);
        return NULL;
    }
    memcpy(snap->key, &lim, sizeof lim);
    memcpy(snap->key + sizeof lim, r->key, end);
    snap->key_len = sizeof lim + end;
    snap->hash = fnv(FNV_OFFSET, snap->key, snap->key_len);
    snap->steps = steps;
    return snap;
}

static bool is_snapshot(const struct child *c)
{
    return c->role == ROLE_SNAPSHOT && c->snap && !c->snap->released && !c->evicted && !c->reaped &&
           !c->dropped;
}

static bool usable(const struct child *c)
{
    return is_snapshot(c) && c->pid > 0;
}

/* The snapshot (live or being forked) with this key. */
static struct child *lookup(struct server *s, uint64_t hash, uint32_t steps,
                            const struct key_limits *lim, const char *code, size_t end,
                            bool live_only)
{
    for (size_t i = 0; i < s->n_children; i++) {
        struct child *c = s->children[i];
        if (!is_snapshot(c) || (live_only && !usable(c)))
            continue;
        const struct snapshot *p = c->snap;
        if (p->steps == steps && p->hash == hash && p->key_len == sizeof *lim + end &&
            memcmp(p->key, lim, sizeof *lim) == 0 && memcmp(p->key + sizeof *lim, code, end) == 0)
            return c;
    }
    return NULL;
}

static bool held(struct server *s, const struct snapshot *snap)
{
    struct key_limits lim;
    memcpy(&lim, snap->key, sizeof lim);
    return lookup(s, snap->hash, snap->steps, &lim, snap->key + sizeof lim,
                  snap->key_len - sizeof lim, false) != NULL;
}

struct child *sbx_snapshot_find(struct server *s, const struct request *r, uint32_t *k)
{
    struct key_limits lim = limits_of(r);
    uint64_t h = fnv(FNV_OFFSET, &lim, sizeof lim);
    struct child *best = NULL;
    size_t prev = 0;
    for (uint32_t i = 0; i + 1 < r->hdr.n_steps; i++) {
        h = fnv(h, r->key + prev, r->key_end[i] - prev);
        prev = r->key_end[i];
        struct child *c = lookup(s, h, i + 1, &lim, r->key, prev, true);
        if (c) {
            best = c;
            *k = i + 1;
        }
    }
    return best;
}

/* ---- memory and the LRU ---------------------------------------------- */

static void evict(struct child *c)
{
    kill(-c->pid, SIGKILL); /* its process group */
    kill(c->pid, SIGKILL);
    c->evicted = true;
}

/* Evict least recently used snapshots until the count and memory caps hold.
 * A snapshot with a fork in flight, and `keep`, stay. */
static void enforce_caps(struct server *s, const struct child *keep)
{
    for (;;) {
        int count = 0;
        uint64_t bytes = 0;
        struct child *victim = NULL;
        for (size_t i = 0; i < s->n_children; i++) {
            struct child *c = s->children[i];
            if (!is_snapshot(c))
                continue;
            count++;
            bytes += c->snap->private_bytes;
            if (c != keep && c->pid > 0 && !c->snap->pending &&
                (!victim || c->snap->last_used < victim->snap->last_used))
                victim = c;
        }
        if ((count <= s->cfg->max_snapshots && bytes <= s->cfg->max_snapshot_bytes) || !victim)
            return;
        evict(victim);
    }
}

static bool room_for_one(struct server *s)
{
    int count = 0;
    for (size_t i = 0; i < s->n_children; i++) {
        const struct child *c = s->children[i];
        if (is_snapshot(c)) {
            count++;
            if (c->pid > 0 && !c->snap->pending)
                return true; /* evictable */
        }
    }
    return count < s->cfg->max_snapshots;
}

static void go_live(struct server *s, struct child *c)
{
    c->snap->last_used = ++s->clock;
    enforce_caps(s, c);
}

void sbx_snapshot_stats(const struct server *s, uint32_t *count, double *mb)
{
    uint64_t bytes = 0;
    *count = 0;
    for (size_t i = 0; i < s->n_children; i++) {
        const struct child *c = s->children[i];
        if (usable(c)) {
            (*count)++;
            bytes += c->snap->private_bytes;
        }
    }
    *mb = (double)bytes / (1 << 20);
}

/* ---- forks ------------------------------------------------------------- */

/* The pipes of a process forked through a notification: the zygote keeps
 * its ends, the others wait in `given` for the clone. */
static int open_pipes(struct child *c, bool with_output)
{
    int p[SBX_GIVEN_COUNT][2] = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}};
    int rc = 0;
    for (int i = with_output ? 0 : 2; i < SBX_GIVEN_COUNT && rc == 0; i++)
        rc = sbx_open_pipe(p[i], i < 3);
    if (rc < 0) {
        for (int i = 0; i < SBX_GIVEN_COUNT; i++)
            for (int j = 0; j < 2; j++)
                if (p[i][j] >= 0)
                    close(p[i][j]);
        return rc;
    }
    c->out_fd = p[0][0], c->given[0] = p[0][1];
    c->err_fd = p[1][0], c->given[1] = p[1][1];
    c->rep_fd = p[2][0], c->given[2] = p[2][1];
    c->given[3] = p[3][0], c->job_fd = p[3][1];
    return 0;
}

/* A child record the zygote's loop owns; dropped (and freed) on failure. */
static struct child *new_record(struct server *s, enum role role, bool with_output)
{
    struct child *c = sbx_child_new(role);
    if (!c)
        return NULL;
    if (sbx_add_child(s, c) < 0) {
        free(c);
        return NULL;
    }
    c->answered = c->dropped = true; /* until it is complete */
    if (open_pipes(c, with_output) < 0)
        return NULL;
    c->answered = c->dropped = false;
    c->notified = true;
    return c;
}

int sbx_snapshot_start(struct server *s, struct child *src, struct request *r, uint32_t k)
{
    struct child *c = new_record(s, ROLE_RUNNING, true);
    if (!c)
        return -ENOMEM;
    c->out.limit = c->err.limit = r->hdr.output_bytes;
    c->from_step = c->steps_done = k;
    /* The last program its caller has for this prefix runs in the snapshot
     * itself: no fork, and no copy of the pages the prefix already wrote. */
    c->in_place = (r->hdr.flags & SBX_FLAG_RELEASE_PREFIX) && k + 1 == r->hdr.n_steps;
    c->prefix_wall = src->snap->wall_s;
    c->prefix_cpu = src->snap->cpu_s;
    size_t off = r->step_end[k - 1];
    struct sbx_request job = r->hdr;
    /* The CPU limit holds for the whole program: the job gets what the
     * prefix left (the process sets its own limit, see child.c). */
    double cpu_left = r->hdr.cpu_s - c->prefix_cpu;
    job.cpu_s = r->hdr.cpu_s > 0 ? (cpu_left > 0.01 ? cpu_left : 0.01) : 0;
    job.code_len = (uint32_t)(r->hdr.code_len - off);
    job.n_steps = r->hdr.n_steps - k;
    job.first_step = k;
    job.first_line = sbx_step_first_line(r, k);
    /* The prefix's output, as if it had just been printed. */
    int rc = sbx_buf_append(&c->out, src->snap->out.data, src->snap->out.len);
    if (rc == 0)
        rc = sbx_buf_append(&c->err, src->snap->err.data, src->snap->err.len);
    if (rc == 0 && ((rc = sbx_write_all(src->job_fd, &job, sizeof job)) < 0 ||
                    (rc = sbx_write_all(src->job_fd, r->code + off, job.code_len)) < 0))
        evict(src);
    if (rc < 0) {
        c->answered = c->dropped = true;
        return rc;
    }
    double now = sbx_now();
    c->req = r;
    c->source = src;
    c->started = now;
    /* The time limits hold for the whole program, prefix included. */
    double left = r->hdr.wall_s - c->prefix_wall;
    c->deadline = r->hdr.wall_s > 0 ? now + (left > 0.01 ? left : 0.01) : 0;
    src->snap->pending = c;
    src->snap->released = c->in_place;
    src->snap->last_used = ++s->clock;
    return 0;
}

/* The snapshot c was to come from no longer waits for it. */
static void detach_from_source(struct child *c)
{
    if (c->source && c->source->snap && c->source->snap->pending == c) {
        c->source->snap->pending = NULL;
        c->source->snap->released = false;
    }
    c->source = NULL;
}

/* Give up on a record whose process will not come (or not be used). */
static void abandon(struct server *s, struct child *c)
{
    detach_from_source(c);
    sbx_rerun(s, c, true);
}

void sbx_snapshot_step_done(struct server *s, struct child *c, const struct sbx_mark *m)
{
    if (c->role != ROLE_RUNNING || c->pid <= 0 || !c->req)
        return;
    c->steps_done++;
    struct request *r = c->req;
    char answer = SBX_CMD_CONTINUE;
    struct child *b = NULL;
    if (sbx_snapshots_on(s) && c->notified && c->killed == KILL_NONE && !c->out.truncated &&
        !c->err.truncated && c->steps_done <= r->hdr.snap_at && c->steps_done < r->hdr.n_steps &&
        room_for_one(s)) {
        struct snapshot *snap = snapshot_new(r, c->steps_done);
        if (snap && !held(s, snap) && (b = new_record(s, ROLE_SNAPSHOT, false))) {
            b->snap = snap;
            snap->wall_s = c->prefix_wall + (sbx_now() - c->started);
            snap->cpu_s = c->prefix_cpu + m->cpu_s;
            /* Its pages are the running process's until that writes them:
             * what the prefix wrote is the estimate. */
            snap->private_bytes = m->private_kb * 1024;
            if (sbx_buf_append(&snap->out, c->out.data, c->out.len) == 0 &&
                sbx_buf_append(&snap->err, c->err.data, c->err.len) == 0) {
                answer = SBX_CMD_FORK;
                c->asked_fork = b;
            } else {
                b->dropped = true;
            }
        } else {
            sbx_snapshot_free(snap);
        }
    }
    if (c->job_fd < 0 || sbx_write_all(c->job_fd, &answer, 1) < 0) {
        if (c->asked_fork)
            c->asked_fork->dropped = true;
        c->asked_fork = NULL;
    }
}

/* The pid a forked process reports must be a child of this zygote that it
 * does not know yet: the clone it let through made it. */
static bool plausible_pid(struct server *s, pid_t pid)
{
    if (pid <= 0)
        return false;
    for (size_t i = 0; i < s->n_children; i++)
        if (s->children[i]->pid == pid)
            return false;
    siginfo_t info;
    return waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0;
}

void sbx_snapshot_pid(struct server *s, struct child *c, const struct sbx_mark *m)
{
    if (c->pid != 0 || c->source)
        return;
    int pidfd = plausible_pid(s, m->pid) ? (int)syscall(SYS_pidfd_open, m->pid, 0) : -1;
    if (pidfd < 0) {
        abandon(s, c);
        return;
    }
    c->pid = m->pid;
    c->pidfd = pidfd;
    if (c->killed != KILL_NONE) {
        kill(c->pid, SIGKILL);
        return;
    }
    if (c->role == ROLE_SNAPSHOT)
        go_live(s, c);
}

void sbx_snapshot_listener(struct server *s, struct child *c)
{
    if (c->role != ROLE_RUNNING || c->pid <= 0 || c->job_fd < 0)
        return;
    int fd = (int)syscall(SYS_pidfd_getfd, c->pidfd, SBX_CHILD_LISTENER_FD, 0);
    if (fd >= 0 && s->n_listeners == s->cap_listeners) {
        size_t cap = s->cap_listeners ? s->cap_listeners * 2 : 16;
        int *p = realloc(s->listeners, cap * sizeof *p);
        if (p) {
            s->listeners = p;
            s->cap_listeners = cap;
        }
    }
    if (fd >= 0 && s->n_listeners < s->cap_listeners) {
        s->listeners[s->n_listeners++] = fd;
        c->notified = true;
    } else {
        if (fd >= 0)
            close(fd);
        if (!s->snapshots_broken)
            fprintf(stderr, "sandbox: prefix snapshots off: cannot take a seccomp listener: %s\n",
                    strerror(errno));
        s->snapshots_broken = true;
    }
    char go = SBX_CMD_GO;
    if (sbx_write_all(c->job_fd, &go, 1) < 0)
        sbx_kill_child(c, KILL_NONE);
}

bool sbx_snapshot_keep(struct server *s, struct child *c)
{
    struct request *r = c->req;
    if (!sbx_snapshots_on(s) || !c->notified || !r || !r->hdr.n_steps || c->pid <= 0 ||
        c->job_fd < 0 || c->steps_done != r->hdr.n_steps || !(r->hdr.flags & SBX_FLAG_KEEP_END))
        return false;
    struct snapshot *snap = snapshot_new(r, r->hdr.n_steps);
    if (!snap || held(s, snap)) {
        sbx_snapshot_free(snap);
        return false;
    }
    snap->wall_s = c->prefix_wall + (sbx_now() - c->started);
    snap->cpu_s = c->prefix_cpu + c->end.cpu_s;
    snap->private_bytes = c->end.private_kb * 1024;
    snap->out = c->out;
    snap->err = c->err;
    memset(&c->out, 0, sizeof c->out);
    memset(&c->err, 0, sizeof c->err);
    snap->out.limit = snap->err.limit = 0;
    c->snap = snap;
    c->role = ROLE_SNAPSHOT;
    c->deadline = 0;
    go_live(s, c);
    return true;
}

void sbx_snapshot_gone(struct server *s, struct child *c)
{
    if (c->role == ROLE_SNAPSHOT && c->reaped && c->snap && c->snap->pending) {
        struct child *p = c->snap->pending; /* its job goes elsewhere */
        c->snap->pending = NULL;
        p->source = NULL;
        sbx_rerun(s, p, false);
    }
    detach_from_source(c);
    if (c->asked_fork && c->asked_fork->pid == 0)
        c->asked_fork->dropped = true;
    c->asked_fork = NULL;
}

/* ---- notifications ------------------------------------------------------ */

static int give_fds(int listener, uint64_t id, struct child *target)
{
    for (int i = 0; i < SBX_GIVEN_COUNT; i++) {
        if (target->given[i] < 0)
            continue;
        struct seccomp_notif_addfd add = {
            .id = id,
            .flags = SECCOMP_ADDFD_FLAG_SETFD,
            .srcfd = (uint32_t)target->given[i],
            .newfd = (uint32_t)(SBX_GIVEN_FD + i),
        };
        if (ioctl(listener, SECCOMP_IOCTL_NOTIF_ADDFD, &add) < 0)
            return -errno;
    }
    return 0;
}

/* The CPU seconds a live process has used; 0 or -errno. */
static int process_cpu(pid_t pid, double *seconds)
{
    clockid_t clock;
    struct timespec ts;
    int rc = clock_getcpuclockid(pid, &clock); /* returns the error, no errno */
    if (rc != 0)
        return -rc;
    if (clock_gettime(clock, &ts) < 0)
        return -errno;
    *seconds = (double)ts.tv_sec + ts.tv_nsec * 1e-9;
    return 0;
}

/* Snapshot `src` is about to run `c` itself (it waits in its clone): the
 * snapshot's record is retired, the process is c's from now on, and what it
 * used so far is not c's. */
static int take_over(struct child *src, struct child *c)
{
    int rc = process_cpu(src->pid, &c->base_cpu);
    if (rc < 0)
        return rc;
    c->pid = src->pid; /* its pid mark only confirms it */
    c->pidfd = src->pidfd;
    src->pid = 0;
    src->pidfd = -1;
    src->dropped = true;
    return 0;
}

/* kill and kin from a process under the notify filter: its own pid as the
 * first argument (single-threaded there, so tid = pid) or nothing. */
static bool signals_itself(const struct seccomp_notif *n)
{
    switch (n->data.nr) {
    case __NR_kill:
    case __NR_tkill:
    case __NR_tgkill:
    case __NR_rt_sigqueueinfo:
    case __NR_rt_tgsigqueueinfo:
        return (pid_t)n->data.args[0] == (pid_t)n->pid;
    default:
        return false;
    }
}

void sbx_snapshot_handle_notification(struct server *s, int listener)
{
    struct seccomp_notif *n = s->notif;
    memset(n, 0, sizeof *n);
    if (seccomp_notify_receive(listener, n) < 0)
        return; /* the process died meanwhile */
    if (signals_itself(n)) {
        struct seccomp_notif_resp *own = s->notif_resp;
        memset(own, 0, sizeof *own);
        own->id = n->id;
        own->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE; /* integers only: no TOCTOU */
        (void)seccomp_notify_respond(listener, own);
        return;
    }
    struct child *asker = NULL, *target = NULL;
    for (size_t i = 0; i < s->n_children && !asker; i++)
        if (s->children[i]->pid == (pid_t)n->pid && !s->children[i]->reaped)
            asker = s->children[i];
    if (asker && n->data.nr == __NR_clone && n->data.args[0] == SBX_FORK_FLAGS) {
        if (asker->role == ROLE_SNAPSHOT && asker->snap && asker->snap->pending)
            target = asker->snap->pending;
        else if (asker->role == ROLE_RUNNING && asker->asked_fork)
            target = asker->asked_fork;
    }
    struct seccomp_notif_resp *resp = s->notif_resp;
    memset(resp, 0, sizeof *resp);
    resp->id = n->id;
    resp->error = -EPERM;
    if (target) {
        if (asker->role == ROLE_SNAPSHOT)
            asker->snap->pending = NULL;
        else
            asker->asked_fork = NULL;
        target->source = NULL;
        /* In place, the clone does not happen: it returns 0, and the
         * snapshot goes on as the process that runs the job. */
        if (give_fds(listener, n->id, target) == 0 &&
            (!target->in_place || take_over(asker, target) == 0)) {
            resp->error = 0;
            resp->flags = target->in_place ? 0 : SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        } else if (asker->snap) {
            asker->snap->released = false; /* still a snapshot */
        }
        for (int i = 0; i < SBX_GIVEN_COUNT; i++)
            if (target->given[i] >= 0) {
                close(target->given[i]);
                target->given[i] = -1;
            }
        if (resp->error)
            abandon(s, target);
    }
    (void)seccomp_notify_respond(listener, resp);
}
