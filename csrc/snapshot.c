#include "snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    return (struct key_limits){
        r->hdr.cpu_s, r->hdr.memory_bytes, r->hdr.output_bytes,
        r->hdr.flags & ~(SBX_FLAG_RELEASE_PREFIX | SBX_FLAG_KEEP_END | SBX_FLAG_IN_PLACE)};
}

bool sbx_snapshots_on(const struct snapshot_cache *sc)
{
    return sc->cfg->filter_notify && sc->cfg->max_snapshots > 0 && !sc->broken;
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

/* A snapshot, live or being forked, that may still serve a job. */
static bool is_snapshot(const struct child *c)
{
    return c->state == CHILD_SNAPSHOT && c->snap &&
           (c->proc == PROC_UNBORN || c->proc == PROC_LIVE);
}

static bool usable(const struct child *c)
{
    return is_snapshot(c) && c->proc == PROC_LIVE;
}

/* The snapshot (live or being forked) with this key. */
static struct child *lookup(struct snapshot_cache *sc, uint64_t hash, uint32_t steps,
                            const struct key_limits *lim, const char *code, size_t end)
{
    const struct children *t = sc->children;
    for (size_t i = 0; i < t->n; i++) {
        struct child *c = t->items[i];
        if (!is_snapshot(c))
            continue;
        const struct snapshot *p = c->snap;
        if (p->steps == steps && p->hash == hash && p->key_len == sizeof *lim + end &&
            memcmp(p->key, lim, sizeof *lim) == 0 && memcmp(p->key + sizeof *lim, code, end) == 0)
            return c;
    }
    return NULL;
}

static bool held(struct snapshot_cache *sc, const struct snapshot *snap)
{
    struct key_limits lim;
    memcpy(&lim, snap->key, sizeof lim);
    return lookup(sc, snap->hash, snap->steps, &lim, snap->key + sizeof lim,
                  snap->key_len - sizeof lim) != NULL;
}

struct child *sbx_snapshot_find(struct snapshot_cache *sc, const struct request *r, uint32_t *k)
{
    struct key_limits lim = limits_of(r);
    uint64_t h = fnv(FNV_OFFSET, &lim, sizeof lim);
    struct child *best = NULL;
    size_t prev = 0;
    for (uint32_t i = 0; i + 1 < r->hdr.n_steps; i++) {
        h = fnv(h, r->key + prev, r->key_end[i] - prev);
        prev = r->key_end[i];
        struct child *c = lookup(sc, h, i + 1, &lim, r->key, prev);
        if (c) {
            best = c;
            *k = i + 1;
        }
    }
    return best;
}

/* ---- memory and the LRU ---------------------------------------------- */

/* A snapshot that may be killed now: not forking, not still inside a clone. */
static bool evictable(const struct child *c)
{
    return c->proc == PROC_LIVE && !c->snap->pending && !c->snap->unborn_forks;
}

/* Evict least recently used snapshots until the count and memory caps hold.
 * A snapshot with a fork in flight, and `keep`, stay. */
static void enforce_caps(struct snapshot_cache *sc, const struct child *keep)
{
    struct children *t = sc->children;
    for (;;) {
        int count = 0;
        uint64_t bytes = 0;
        struct child *victim = NULL;
        for (size_t i = 0; i < t->n; i++) {
            struct child *c = t->items[i];
            if (!is_snapshot(c))
                continue;
            count++;
            bytes += c->snap->private_bytes;
            if (c != keep && evictable(c) &&
                (!victim || c->snap->last_used < victim->snap->last_used))
                victim = c;
        }
        if ((count <= sc->cfg->max_snapshots && bytes <= sc->cfg->max_snapshot_bytes) || !victim)
            return;
        sbx_child_evict(t, victim);
    }
}

static bool room_for_one(const struct snapshot_cache *sc)
{
    const struct children *t = sc->children;
    int count = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct child *c = t->items[i];
        if (is_snapshot(c)) {
            count++;
            if (evictable(c))
                return true;
        }
    }
    return count < sc->cfg->max_snapshots;
}

void sbx_snapshot_went_live(struct snapshot_cache *sc, struct child *c)
{
    c->snap->last_used = ++sc->clock;
    enforce_caps(sc, c);
}

void sbx_snapshot_fork_born(struct snapshot_cache *sc)
{
    enforce_caps(sc, NULL);
}

void sbx_snapshot_stats(const struct snapshot_cache *sc, uint32_t *count, double *mb)
{
    const struct children *t = sc->children;
    uint64_t bytes = 0;
    *count = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct child *c = t->items[i];
        if (usable(c)) {
            (*count)++;
            bytes += c->snap->private_bytes;
        }
    }
    *mb = (double)bytes / (1 << 20);
}

/* ---- forks ------------------------------------------------------------- */

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

int sbx_snapshot_start(struct snapshot_cache *sc, struct child *src, struct request *r, uint32_t k)
{
    /* The last program its caller has for this prefix runs in the snapshot
     * itself: no fork, no descriptors to hand over, and no copy of the pages
     * the prefix already wrote. */
    bool in_place = (r->hdr.flags & SBX_FLAG_RELEASE_PREFIX) && k + 1 == r->hdr.n_steps;
    double base_cpu = 0; /* what the snapshot's process used before this program */
    if (in_place && process_cpu(src->pid, &base_cpu) < 0)
        in_place = false;
    struct child *c = sbx_children_add_unborn(sc->children, CHILD_RUNNING, !in_place);
    if (!c)
        return -ENOMEM;
    c->out.limit = c->err.limit = r->hdr.output_bytes;
    c->from_step = c->steps_done = k;
    c->prefix_wall = src->snap->wall_s;
    c->prefix_cpu = src->snap->cpu_s;
    size_t off = r->step_end[k - 1];
    struct sbx_request job = r->hdr;
    job.flags = (r->hdr.flags & ~SBX_FLAG_IN_PLACE) | (in_place ? SBX_FLAG_IN_PLACE : 0);
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
        sbx_child_evict(sc->children, src);
    if (rc < 0) {
        sbx_child_drop(c);
        sbx_child_end(sc->children, c);
        return rc;
    }
    double now = sbx_now();
    c->req = r;
    c->started = now;
    /* The time limits hold for the whole program, prefix included. */
    double left = r->hdr.wall_s - c->prefix_wall;
    c->deadline = r->hdr.wall_s > 0 ? now + (left > 0.01 ? left : 0.01) : 0;
    src->snap->last_used = ++sc->clock;
    if (in_place) {
        sbx_child_hand_over(sc->children, src, c, base_cpu);
    } else {
        c->source = src;
        src->snap->pending = c;
    }
    return 0;
}

void sbx_snapshot_detach(struct child *c)
{
    if (c->source && c->source->snap && c->source->snap->pending == c)
        c->source->snap->pending = NULL;
    c->source = NULL;
}

void sbx_snapshot_abandon(struct snapshot_cache *sc, struct child *c)
{
    sbx_snapshot_detach(c);
    sbx_child_rerun(sc->children, c, true);
}

/* The unborn record of the snapshot a running child is asked to leave at
 * the end of its current step, or NULL if none should be left. */
static struct child *snapshot_to_leave(struct snapshot_cache *sc, struct child *c,
                                       const struct sbx_mark *m)
{
    struct request *r = c->req;
    if (!sbx_snapshots_on(sc) || !c->notified || c->killed != SBX_KILL_NONE || c->out.truncated ||
        c->err.truncated || c->steps_done > r->hdr.snap_at || c->steps_done >= r->hdr.n_steps ||
        !room_for_one(sc))
        return NULL;
    struct snapshot *snap = snapshot_new(r, c->steps_done);
    struct child *b = NULL;
    if (!snap || held(sc, snap) ||
        !(b = sbx_children_add_unborn(sc->children, CHILD_SNAPSHOT, true))) {
        sbx_snapshot_free(snap);
        return NULL;
    }
    b->snap = snap;
    snap->wall_s = c->prefix_wall + (sbx_now() - c->started);
    snap->cpu_s = c->prefix_cpu + m->cpu_s;
    /* Its pages are the running process's until that writes them: what the
     * prefix wrote is the estimate. */
    snap->private_bytes = m->private_kb * 1024;
    if (sbx_buf_append(&snap->out, c->out.data, c->out.len) < 0 ||
        sbx_buf_append(&snap->err, c->err.data, c->err.len) < 0) {
        sbx_child_drop(b);
        return NULL;
    }
    return b;
}

void sbx_snapshot_step_done(struct snapshot_cache *sc, struct child *c, const struct sbx_mark *m)
{
    if (!sbx_child_owes_result(c) || c->proc != PROC_LIVE || !c->req)
        return;
    c->steps_done++;
    struct child *b = snapshot_to_leave(sc, c, m);
    char answer = b ? SBX_CMD_FORK : SBX_CMD_CONTINUE;
    if (c->job_fd >= 0 && sbx_write_all(c->job_fd, &answer, 1) == 0)
        c->asked_fork = b;
    else if (b)
        sbx_child_drop(b);
}

bool sbx_snapshot_keep(struct snapshot_cache *sc, struct child *c)
{
    struct request *r = c->req;
    if (!sbx_snapshots_on(sc) || !c->notified || !r || !r->hdr.n_steps || c->proc != PROC_LIVE ||
        c->job_fd < 0 || c->steps_done != r->hdr.n_steps || !(r->hdr.flags & SBX_FLAG_KEEP_END))
        return false;
    struct snapshot *snap = snapshot_new(r, r->hdr.n_steps);
    if (!snap || held(sc, snap)) {
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
    sbx_request_free(c->req);
    c->req = NULL;
    sbx_child_keep(sc->children, c, snap);
    sbx_snapshot_went_live(sc, c);
    return true;
}

void sbx_snapshot_gone(struct snapshot_cache *sc, struct child *c)
{
    if (c->state == CHILD_SNAPSHOT && c->proc == PROC_REAPED && c->snap && c->snap->pending) {
        struct child *p = c->snap->pending; /* its job goes elsewhere */
        c->snap->pending = NULL;
        p->source = NULL;
        sbx_child_rerun(sc->children, p, false);
    }
    sbx_snapshot_detach(c);
    if (c->asked_fork)
        sbx_child_drop(c->asked_fork);
    c->asked_fork = NULL;
}
