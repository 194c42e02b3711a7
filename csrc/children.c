#include "children.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* The only place the counters change. */
static void set_state(struct children *t, struct child *c, enum child_state to)
{
    t->n_running -= c->state == CHILD_RUNNING;
    t->n_spares -= c->state == CHILD_SPARE;
    c->state = to;
    t->n_running += to == CHILD_RUNNING;
    t->n_spares += to == CHILD_SPARE;
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

/* A record outside the table: ENDING (it counts nowhere) until added. */
static struct child *record_new(enum child_process proc)
{
    struct child *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->state = CHILD_ENDING;
    c->proc = proc;
    c->pidfd = c->job_fd = c->out_fd = c->err_fd = c->rep_fd = -1;
    for (int i = 0; i < SBX_GIVEN_COUNT; i++)
        c->given[i] = -1;
    c->rep.limit = 1 << 16;
    return c;
}

/* The clone that was to make c's process is over, one way or the other:
 * the snapshot that made it no longer waits on it. */
static void fork_settled(struct child *c)
{
    if (c->forked_from && c->forked_from->snap)
        c->forked_from->snap->unborn_forks--;
    c->forked_from = NULL;
}

static void record_free(struct child *c)
{
    fork_settled(c);
    close_fd(&c->pidfd);
    close_fd(&c->job_fd);
    close_fd(&c->out_fd);
    close_fd(&c->err_fd);
    close_fd(&c->rep_fd);
    for (int i = 0; i < SBX_GIVEN_COUNT; i++)
        close_fd(&c->given[i]);
    sbx_buf_free(&c->out);
    sbx_buf_free(&c->err);
    sbx_buf_free(&c->rep);
    sbx_buf_free(&c->report);
    sbx_request_free(c->req);
    sbx_snapshot_free(c->snap);
    free(c);
}

static int add(struct children *t, struct child *c, enum child_state state)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct child **p = realloc(t->items, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        t->items = p;
        t->cap = cap;
    }
    t->items[t->n++] = c;
    set_state(t, c, state);
    return 0;
}

/* A pipe whose write end goes to a child; the zygote reads its end without
 * blocking when read_nonblock (capture pipes), or writes it blocking (jobs). */
static int open_pipe(int fds[2], bool read_nonblock)
{
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
    int rc = read_nonblock ? sbx_set_nonblock(fds[0], 1) : 0;
    if (rc < 0) {
        close_fd(&fds[0]);
        close_fd(&fds[1]);
    }
    return rc;
}

int sbx_children_spawn_spare(struct children *t, const struct sbx_config *cfg, int devnull,
                             bool notify, struct sbx_job *job)
{
    int out[2] = {-1, -1}, err[2] = {-1, -1}, rep[2] = {-1, -1}, jp[2] = {-1, -1};
    int rc;
    /* The child writes (and reads its job) blocking; the zygote reads its
     * ends without blocking. */
    if ((rc = open_pipe(out, true)) < 0 || (rc = open_pipe(err, true)) < 0 ||
        (rc = open_pipe(rep, true)) < 0 || (rc = open_pipe(jp, false)) < 0)
        goto fail;
    struct sbx_child_plan plan = {
        .stdin_fd = devnull,
        .stdout_fd = out[1],
        .stderr_fd = err[1],
        .report_fd = rep[1],
        .job_fd = jp[0],
        .ruleset_fd = cfg->ruleset_fd,
        .supervisor = getpid(),
        .base_address_space = cfg->base_address_space,
        .nofile = cfg->nofile,
        .drop_uid = cfg->drop_uid,
        .drop_gid = cfg->drop_gid,
        .keep_dac_read = cfg->keep_dac_read,
        .filter = cfg->filter,
        .filter_threads = cfg->filter_threads,
        .filter_notify = notify ? cfg->filter_notify : NULL,
    };
    /* Without the interpreter's fork hooks (PyOS_BeforeFork): the zygote runs
     * no other thread and is inside no import, and their writes (locks,
     * reference counts) would copy pages the children share, splitting
     * huge pages. The child runs PyOS_AfterFork_Child. */
    pid_t pid = fork();
    if (pid == 0) {
        sbx_child_prepare(&plan);
        job->plan = plan;
        return 1;
    }
    if (pid < 0) {
        rc = -errno;
        goto fail;
    }
    close_fd(&out[1]);
    close_fd(&err[1]);
    close_fd(&rep[1]);
    close_fd(&jp[0]);
    struct child *c = record_new(PROC_LIVE);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (!c || pidfd < 0 || add(t, c, CHILD_SPARE) < 0) {
        rc = c && pidfd < 0 ? -errno : -ENOMEM;
        kill(pid, SIGKILL);
        SBX_RETRY(waitpid(pid, NULL, 0));
        if (pidfd >= 0)
            close(pidfd);
        free(c);
        goto fail;
    }
    c->pid = pid;
    c->pidfd = pidfd;
    c->job_fd = jp[1];
    c->out_fd = out[0];
    c->err_fd = err[0];
    c->rep_fd = rep[0];
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        close_fd(&out[i]);
        close_fd(&err[i]);
        close_fd(&rep[i]);
        close_fd(&jp[i]);
    }
    return rc;
}

struct child *sbx_children_add_unborn(struct children *t, enum child_state state, bool with_pipes)
{
    struct child *c = record_new(PROC_UNBORN);
    if (!c)
        return NULL;
    /* The zygote keeps its ends; the others wait in `given` for the clone. */
    int p[SBX_GIVEN_COUNT][2] = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}};
    int rc = 0;
    for (int i = 0; with_pipes && i < SBX_GIVEN_COUNT && rc == 0; i++)
        rc = open_pipe(p[i], i != GIVEN_JOB);
    c->out_fd = p[GIVEN_STDOUT][0], c->given[GIVEN_STDOUT] = p[GIVEN_STDOUT][1];
    c->err_fd = p[GIVEN_STDERR][0], c->given[GIVEN_STDERR] = p[GIVEN_STDERR][1];
    c->rep_fd = p[GIVEN_REPORT][0], c->given[GIVEN_REPORT] = p[GIVEN_REPORT][1];
    c->given[GIVEN_JOB] = p[GIVEN_JOB][0], c->job_fd = p[GIVEN_JOB][1];
    if (rc < 0 || add(t, c, state) < 0) {
        record_free(c);
        return NULL;
    }
    c->notified = true;
    return c;
}

struct child *sbx_children_idle_spare(const struct children *t)
{
    for (size_t i = 0; i < t->n; i++) {
        struct child *c = t->items[i];
        if (c->state == CHILD_SPARE && c->proc == PROC_LIVE)
            return c;
    }
    return NULL;
}

/* A snapshot record about to be freed: the records its clones made forget it. */
static void forget_maker(struct children *t, const struct child *snapshot)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->items[i]->forked_from == snapshot)
            t->items[i]->forked_from = NULL;
}

void sbx_children_sweep(struct children *t)
{
    for (size_t i = 0; i < t->n; i++) {
        struct child *c = t->items[i];
        if (c->snap && c->snap->unborn_forks && sbx_child_finished(c))
            forget_maker(t, c);
    }
    size_t kept = 0;
    for (size_t i = 0; i < t->n; i++) {
        struct child *c = t->items[i];
        if (sbx_child_finished(c)) {
            set_state(t, c, CHILD_ENDING);
            record_free(c);
        } else {
            t->items[kept++] = c;
        }
    }
    t->n = kept;
}

/* Children the zygote does not know of (a fork whose process never said who
 * it is): found by their parent pid, so that nothing outlives the zygote. */
static void kill_strays(void)
{
    DIR *d = opendir("/proc");
    if (!d)
        return;
    pid_t self = getpid();
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], buf[512];
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        char *paren = n > 0 ? (buf[n] = '\0', strrchr(buf, ')')) : NULL;
        int ppid = 0;
        if (paren && sscanf(paren + 1, " %*c %d", &ppid) == 1 && ppid == self) {
            pid_t pid = (pid_t)atoi(e->d_name);
            kill(pid, SIGKILL);
            SBX_RETRY(waitpid(pid, NULL, 0));
        }
    }
    closedir(d);
}

void sbx_children_shutdown(struct children *t)
{
    for (size_t i = 0; i < t->n; i++)
        t->items[i]->forked_from = NULL; /* all go: none waits on another */
    for (size_t i = 0; i < t->n; i++) {
        struct child *c = t->items[i];
        if (c->proc == PROC_LIVE) {
            kill(c->pid, SIGKILL);
            SBX_RETRY(waitpid(c->pid, NULL, 0));
        }
        set_state(t, c, CHILD_ENDING);
        record_free(c);
    }
    t->n = 0;
    free(t->items);
    t->items = NULL;
    t->cap = 0;
    kill_strays();
}

/* ---- transitions ------------------------------------------------------ */

int sbx_child_hand_job(struct children *t, struct child *c, struct request *r)
{
    /* The write blocks only for programs larger than the pipe, while the
     * spare reads them. */
    int rc = sbx_write_all(c->job_fd, &r->hdr, sizeof r->hdr);
    if (rc == 0)
        rc = sbx_write_all(c->job_fd, r->code, r->hdr.code_len);
    /* A program of steps talks with the zygote on its job pipe later. */
    if (rc < 0 || !r->hdr.n_steps)
        close_fd(&c->job_fd);
    if (rc < 0) {
        kill(c->pid, SIGKILL);
        set_state(t, c, CHILD_ENDING);
        return rc;
    }
    double now = sbx_now();
    c->req = r;
    c->out.limit = c->err.limit = r->hdr.output_bytes;
    c->started = now;
    c->deadline = r->hdr.wall_s > 0 ? now + r->hdr.wall_s : 0;
    set_state(t, c, CHILD_RUNNING);
    return 0;
}

void sbx_child_demote(struct children *t, struct child *c)
{
    set_state(t, c, CHILD_DEMOTED);
}

void sbx_child_answered(struct children *t, struct child *c)
{
    set_state(t, c, CHILD_ENDING);
}

void sbx_child_keep(struct children *t, struct child *c, struct snapshot *snap)
{
    c->snap = snap;
    c->deadline = 0;
    set_state(t, c, CHILD_SNAPSHOT);
}

void sbx_child_evict(struct children *t, struct child *c)
{
    /* Its process alone, not its group: a snapshot creates no process but
     * through the zygote, and one it has just forked is in its group until
     * it sets its own (killing that one only made the job run again). */
    kill(c->pid, SIGKILL);
    set_state(t, c, CHILD_EVICTED);
}

void sbx_child_rerun(struct children *t, struct child *c, bool scratch)
{
    if (c->proc == PROC_LIVE)
        kill(c->pid, SIGKILL);
    sbx_child_drop(c);
    if (c->req)
        sbx_queue_push_front(t->queue, c->req, scratch);
    c->req = NULL;
    set_state(t, c, CHILD_ENDING);
}

void sbx_child_end(struct children *t, struct child *c)
{
    set_state(t, c, CHILD_ENDING);
}

void sbx_child_born(struct child *c, pid_t pid, int pidfd)
{
    fork_settled(c);
    c->pid = pid;
    c->pidfd = pidfd;
    c->proc = PROC_LIVE;
}

void sbx_child_drop(struct child *c)
{
    fork_settled(c);
    if (c->proc == PROC_UNBORN)
        c->proc = PROC_NONE;
}

void sbx_child_hand_over(struct children *t, struct child *src, struct child *c, double base_cpu)
{
    c->base_cpu = base_cpu;
    sbx_child_born(c, src->pid, src->pidfd);
    c->job_fd = src->job_fd;
    c->out_fd = src->out_fd;
    c->err_fd = src->err_fd;
    c->rep_fd = src->rep_fd;
    c->notified = src->notified;
    src->pid = 0;
    src->pidfd = src->job_fd = src->out_fd = src->err_fd = src->rep_fd = -1;
    src->proc = PROC_NONE;
    set_state(t, src, CHILD_ENDING);
}

void sbx_child_reap(struct child *c)
{
    if (c->proc != PROC_LIVE)
        return;
    pid_t pid = (pid_t)SBX_RETRY(wait4(c->pid, &c->wstatus, WNOHANG, &c->ru));
    if (pid == c->pid) {
        c->proc = PROC_REAPED;
        close_fd(&c->pidfd);
    }
}

void sbx_child_kill(struct child *c, enum sbx_kill_reason why)
{
    if (c->proc == PROC_REAPED)
        return;
    if (c->killed == SBX_KILL_NONE)
        c->killed = why;
    if (c->proc == PROC_LIVE)
        kill(c->pid, SIGKILL);
}

/* ---- questions ------------------------------------------------------ */

bool sbx_child_owes_result(const struct child *c)
{
    return c->state == CHILD_RUNNING || c->state == CHILD_DEMOTED;
}

bool sbx_child_output_done(const struct child *c)
{
    return c->output_in || (c->out_fd < 0 && c->err_fd < 0);
}

bool sbx_child_finished(const struct child *c)
{
    if (c->proc == PROC_NONE)
        return true;
    bool snapshot = c->state == CHILD_SNAPSHOT || c->state == CHILD_EVICTED;
    return c->proc == PROC_REAPED && (snapshot || (sbx_child_output_done(c) && c->rep_fd < 0));
}

/* ---- capture -------------------------------------------------------- */

static void drain(struct child *c, int *fd, struct sbx_buf *buf, bool capped)
{
    for (;;) {
        long n = sbx_buf_read_fd(buf, *fd);
        if (n == -EAGAIN)
            return;
        if (n <= 0) {
            close_fd(fd);
            return;
        }
        if (capped && buf->truncated)
            sbx_child_kill(c, SBX_KILL_OUTPUT);
    }
}

void sbx_child_drain_outputs(struct child *c)
{
    if (c->out_fd >= 0)
        drain(c, &c->out_fd, &c->out, true);
    if (c->err_fd >= 0)
        drain(c, &c->err_fd, &c->err, true);
}

void sbx_child_drain_report(struct child *c)
{
    if (c->rep_fd >= 0)
        drain(c, &c->rep_fd, &c->rep, false);
}
