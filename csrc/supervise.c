#include "supervise.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capture.h"
#include "child.h"
#include "protocol.h"
#include "server.h"
#include "util.h"

#define DEMOTED_NICE 15

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

void sbx_request_free(struct request *r)
{
    if (r) {
        free(r->code);
        free(r->step_end);
        free(r->key);
        free(r->key_end);
        free(r);
    }
}

static bool trailing_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* The snapshot key of a program of steps (see struct request). */
static int key_steps(struct request *r)
{
    uint32_t n = r->hdr.n_steps;
    /* Each record grows by 4 bytes: a first line instead of nothing. */
    r->key = malloc(r->hdr.code_len + (size_t)n * 4);
    r->key_end = malloc(n * sizeof *r->key_end);
    if (!r->key || !r->key_end)
        return -ENOMEM;
    size_t pos = 0, out = 0;
    uint32_t line = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *text = r->code + pos + 4;
        uint32_t len = r->step_end[i] - (uint32_t)pos - 4, kept = len;
        while (kept > 0 && trailing_space(text[kept - 1]))
            kept--;
        memcpy(r->key + out, &line, 4);
        memcpy(r->key + out + 4, &kept, 4);
        memcpy(r->key + out + 8, text, kept);
        out += 8 + kept;
        r->key_end[i] = (uint32_t)out;
        line += 1;
        for (uint32_t j = 0; j < len; j++)
            line += text[j] == '\n';
        pos = r->step_end[i];
    }
    return 0;
}

/* The line a program's step starts on, counted from 0 (see key_steps). */
uint32_t sbx_step_first_line(const struct request *r, uint32_t step)
{
    uint32_t line;
    memcpy(&line, r->key + (step ? r->key_end[step - 1] : 0), 4);
    return line;
}

/* Index the step records of a program of steps; -EPROTO if they do not fill
 * the payload exactly. */
static int index_steps(struct request *r)
{
    if (!r->hdr.n_steps)
        return 0;
    r->step_end = malloc(r->hdr.n_steps * sizeof *r->step_end);
    if (!r->step_end)
        return -ENOMEM;
    size_t pos = 0;
    for (uint32_t i = 0; i < r->hdr.n_steps; i++) {
        uint32_t len;
        if (r->hdr.code_len - pos < sizeof len)
            return -EPROTO;
        memcpy(&len, r->code + pos, sizeof len);
        if (r->hdr.code_len - pos - sizeof len < len)
            return -EPROTO;
        pos += sizeof len + len;
        r->step_end[i] = (uint32_t)pos;
    }
    return pos == r->hdr.code_len ? key_steps(r) : -EPROTO;
}

static void child_free(struct child *c)
{
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

struct child *sbx_child_new(enum role role)
{
    struct child *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->role = role;
    c->pidfd = c->job_fd = c->out_fd = c->err_fd = c->rep_fd = -1;
    for (int i = 0; i < SBX_GIVEN_COUNT; i++)
        c->given[i] = -1;
    c->rep.limit = 1 << 16;
    return c;
}

/* A pipe whose write end goes to a child; the zygote reads its end without
 * blocking when read_nonblock (capture pipes), or writes it blocking (jobs). */
int sbx_open_pipe(int fds[2], bool read_nonblock)
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

/* ---- requests in ---------------------------------------------------- */

static int parse_requests(struct server *s)
{
    while (s->inbuf.len >= sizeof(struct sbx_request)) {
        struct sbx_request hdr;
        memcpy(&hdr, s->inbuf.data, sizeof hdr);
        if (hdr.magic != SBX_REQUEST_MAGIC)
            return -EPROTO;
        size_t total = sizeof hdr + hdr.code_len;
        if (s->inbuf.len < total)
            return 0;
        struct request *r = calloc(1, sizeof *r);
        char *code = malloc(hdr.code_len + 1);
        if (!r || !code) {
            free(r);
            free(code);
            return -ENOMEM;
        }
        memcpy(code, s->inbuf.data + sizeof hdr, hdr.code_len);
        code[hdr.code_len] = '\0';
        r->hdr = hdr;
        r->hdr.first_step = r->hdr.first_line = 0;
        r->code = code;
        int rc = index_steps(r);
        if (rc < 0) {
            sbx_request_free(r);
            return rc;
        }
        if (s->queue_tail)
            s->queue_tail->next = r;
        else
            s->queue_head = r;
        s->queue_tail = r;
        sbx_buf_consume(&s->inbuf, total);
    }
    return 0;
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
    return parse_requests(s);
}

/* ---- responses out -------------------------------------------------- */

static int queue_frame(struct server *s, const struct sbx_response *hdr, const struct child *c,
                       const char *error, size_t error_len)
{
    int rc = sbx_buf_append(&s->outbuf, hdr, sizeof *hdr);
    if (rc == 0 && c) {
        rc = sbx_buf_append(&s->outbuf, c->out.data, c->out.len);
        if (rc == 0)
            rc = sbx_buf_append(&s->outbuf, c->err.data, c->err.len);
    }
    if (rc == 0 && error_len)
        rc = sbx_buf_append(&s->outbuf, error, error_len);
    return rc;
}

static int flush_output(struct server *s)
{
    while (s->outbuf.len) {
        ssize_t n = SBX_RETRY(write(s->out_fd, s->outbuf.data, s->outbuf.len));
        if (n < 0)
            return errno == EAGAIN ? 0 : -errno;
        sbx_buf_consume(&s->outbuf, (size_t)n);
    }
    return 0;
}

/* ---- classification ------------------------------------------------- */

static const char *signal_name(int sig)
{
    const char *d = sigabbrev_np(sig);
    return d ? d : "?";
}

/* The outcome of a finished child, and the error line that goes with it.
 * A child that is not reaped yet is judged by its end mark. */
static enum sbx_status classify(struct child *c, char *line, size_t line_size, const char **error,
                                size_t *error_len)
{
    const struct sbx_buf *rep = c->ended ? &c->report : &c->rep;
    double cpu = sbx_rusage_cpu(&c->ru) - c->base_cpu;
    if (!c->reaped) {
        c->wstatus = (c->end.exit_code & 0xff) << 8; /* as if it exited */
        cpu = c->end.cpu_s;
    }
    char kind = rep->len ? rep->data[0] : 0;
    *error = NULL;
    *error_len = 0;
    if (rep->len > 1 && (kind == 'E' || kind == 'M' || kind == 'S')) {
        *error = rep->data + 1;
        *error_len = rep->len - 1;
    }
    if (kind == 'S' && WIFEXITED(c->wstatus) && WEXITSTATUS(c->wstatus) == SBX_EXIT_SETUP)
        return SBX_SANDBOX_ERROR;
    if (c->killed == KILL_OUTPUT) {
        *error = "output limit exceeded";
        *error_len = strlen(*error);
        return SBX_OUTPUT_LIMIT;
    }
    if (c->killed == KILL_TIMEOUT) {
        *error = "wall-clock limit exceeded";
        *error_len = strlen(*error);
        return SBX_TIMEOUT;
    }
    if (WIFSIGNALED(c->wstatus)) {
        int sig = WTERMSIG(c->wstatus);
        double cpu_limit = c->req->hdr.cpu_s - c->prefix_cpu;
        if (sig == SIGXCPU || (sig == SIGKILL && cpu_limit > 0 && cpu >= cpu_limit)) {
            *error = "CPU-time limit exceeded";
            *error_len = strlen(*error);
            return SBX_TIMEOUT;
        }
        int n = snprintf(line, line_size, "killed by signal %d (SIG%s)%s", sig, signal_name(sig),
                         sig == SIGSYS ? ": forbidden system call" : "");
        *error = line;
        *error_len = n > 0 ? (size_t)n : 0;
        return SBX_KILLED;
    }
    if (!c->reaped && !c->ended) { /* a forked child that never started */
        *error = "sandbox: a forked child did not start";
        *error_len = strlen(*error);
        return SBX_SANDBOX_ERROR;
    }
    int code = WEXITSTATUS(c->wstatus);
    if (kind == 'M')
        return SBX_MEMORY;
    if (code == 0)
        return SBX_OK;
    if (!*error) {
        int n = snprintf(line, line_size, "exit status %d", code);
        *error = line;
        *error_len = n > 0 ? (size_t)n : 0;
    }
    return SBX_ERROR;
}

static int send_result(struct server *s, struct child *c, double now)
{
    char line[128];
    const char *error;
    size_t error_len;
    enum sbx_status status = classify(c, line, sizeof line, &error, &error_len);
    /* Trailing newlines of the report are not part of the error line. */
    while (error_len && (error[error_len - 1] == '\n' || error[error_len - 1] == '\r'))
        error_len--;
    bool by_mark = !c->reaped;
    struct sbx_response hdr = {
        .kind = SBX_FRAME_RESULT,
        .status = status,
        .id = c->req->hdr.id,
        .wall_s = now - c->started,
        .cpu_s = by_mark ? c->end.cpu_s : sbx_rusage_cpu(&c->ru) - c->base_cpu,
        .peak_rss_mb = (double)(by_mark ? c->end.peak_rss_kb : c->ru.ru_maxrss) / 1024.0,
        .exit_code = WIFEXITED(c->wstatus) ? WEXITSTATUS(c->wstatus) : -1,
        .term_signal = WIFSIGNALED(c->wstatus) ? WTERMSIG(c->wstatus) : 0,
        .truncated = c->out.truncated || c->err.truncated,
        .stdout_len = (uint32_t)c->out.len,
        .stderr_len = (uint32_t)c->err.len,
        .error_len = (uint32_t)error_len,
        .snapshot_steps = c->from_step,
    };
    uint32_t live;
    double mb;
    sbx_snapshot_stats(s, &live, &mb);
    hdr.live_snapshots = live;
    hdr.snapshot_mb = mb;
    return queue_frame(s, &hdr, c, error, error_len);
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
    return queue_frame(s, &hdr, NULL, line, hdr.error_len);
}

/* ---- children ------------------------------------------------------- */

void sbx_kill_child(struct child *c, enum kill_reason why)
{
    if (c->reaped)
        return;
    if (c->killed == KILL_NONE)
        c->killed = why;
    if (c->pid > 0)
        kill(c->pid, SIGKILL);
}

int sbx_add_child(struct server *s, struct child *c)
{
    if (s->n_children == s->cap_children) {
        size_t cap = s->cap_children ? s->cap_children * 2 : 16;
        struct child **p = realloc(s->children, cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        s->children = p;
        s->cap_children = cap;
    }
    s->children[s->n_children++] = c;
    return 0;
}

void sbx_requeue(struct server *s, struct request *r, bool scratch)
{
    r->scratch = r->scratch || scratch;
    r->next = s->queue_head;
    s->queue_head = r;
    if (!s->queue_tail)
        s->queue_tail = r;
}

/* Fork a spare: a child that runs the steps of its setup that need no
 * program, then (in the interpreter) makes itself ready and waits on its job
 * pipe. Returns 1 in the child, 0 in the zygote, -errno on failure. */
static int spawn_spare(struct server *s, struct sbx_job *job)
{
    int out[2] = {-1, -1}, err[2] = {-1, -1}, rep[2] = {-1, -1}, jp[2] = {-1, -1};
    int rc;
    /* The child writes (and reads its job) blocking; the zygote reads its
     * ends without blocking. */
    if ((rc = sbx_open_pipe(out, true)) < 0 || (rc = sbx_open_pipe(err, true)) < 0 ||
        (rc = sbx_open_pipe(rep, true)) < 0 || (rc = sbx_open_pipe(jp, false)) < 0)
        goto fail;
    const struct sbx_config *cfg = s->cfg;
    struct sbx_child_plan plan = {
        .stdin_fd = s->devnull,
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
        .filter_notify = sbx_snapshots_on(s) ? cfg->filter_notify : NULL,
    };
    if (cfg->before_fork)
        cfg->before_fork();
    pid_t pid = fork();
    if (pid == 0) {
        sbx_child_prepare(&plan);
        job->plan = plan;
        return 1;
    }
    int fork_errno = errno;
    if (cfg->after_fork_parent)
        cfg->after_fork_parent();
    if (pid < 0) {
        rc = -fork_errno;
        goto fail;
    }
    close_fd(&out[1]);
    close_fd(&err[1]);
    close_fd(&rep[1]);
    close_fd(&jp[0]);
    struct child *c = sbx_child_new(ROLE_SPARE);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (!c || pidfd < 0 || sbx_add_child(s, c) < 0) {
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
    s->n_spares++;
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

static struct child *idle_spare(struct server *s)
{
    for (size_t i = 0; i < s->n_children; i++) {
        struct child *c = s->children[i];
        if (c->role == ROLE_SPARE && c->job_fd >= 0 && !c->reaped)
            return c;
    }
    return NULL;
}

/* Hand a request to a spare. The write blocks only for programs larger than
 * the pipe, while the spare reads them. 0, or -errno if the spare is gone. */
static int dispatch(struct server *s, struct child *c, struct request *r)
{
    int rc = sbx_write_all(c->job_fd, &r->hdr, sizeof r->hdr);
    if (rc == 0)
        rc = sbx_write_all(c->job_fd, r->code, r->hdr.code_len);
    /* A program of steps talks with the zygote on its job pipe later. */
    if (rc < 0 || !r->hdr.n_steps)
        close_fd(&c->job_fd);
    s->n_spares--;
    if (rc < 0) {
        kill(c->pid, SIGKILL); /* reaped and dropped as a spare that died */
        return rc;
    }
    double now = sbx_now();
    c->role = ROLE_RUNNING;
    c->req = r;
    c->out.limit = c->err.limit = r->hdr.output_bytes;
    c->started = now;
    c->deadline = r->hdr.wall_s > 0 ? now + r->hdr.wall_s : 0;
    s->n_running++;
    return 0;
}

static struct request *unlink_request(struct server *s, struct request *prev, struct request *r)
{
    struct request *next = r->next;
    if (prev)
        prev->next = next;
    else
        s->queue_head = next;
    if (s->queue_tail == r)
        s->queue_tail = prev;
    r->next = NULL;
    return next;
}

/* Start one queued request from a snapshot if one holds a prefix of it.
 * Returns 1 if started, 0 if it should go to a spare, -1 if it must wait
 * (its snapshot is busy forking). */
static int start_from_snapshot(struct server *s, struct request *r)
{
    if (!r->hdr.n_steps || r->scratch || !sbx_snapshots_on(s))
        return 0;
    uint32_t k = 0;
    struct child *src = sbx_snapshot_find(s, r, &k);
    if (!src)
        return 0;
    if (src->snap->pending)
        return -1;
    if (sbx_snapshot_start(s, src, r, k) < 0)
        return 0; /* that snapshot is gone; run it from scratch */
    s->n_running++;
    return 1;
}

/* Start queued programs, from snapshots or on spares (forking spares as
 * needed); keep one spare per slot ready so that the next program does not
 * wait for a fork. */
static int start_queued(struct server *s, struct sbx_job *job)
{
    struct request *prev = NULL, *r = s->queue_head;
    while (r && s->n_running < s->cfg->max_running) {
        int from_snapshot = start_from_snapshot(s, r);
        if (from_snapshot < 0) {
            prev = r;
            r = r->next;
            continue;
        }
        if (from_snapshot > 0) {
            r = unlink_request(s, prev, r);
            continue;
        }
        struct child *c = idle_spare(s);
        if (!c) {
            int rc = spawn_spare(s, job);
            if (rc == 1)
                return 1;
            if (rc < 0) {
                struct request *failed = r;
                r = unlink_request(s, prev, r);
                int qrc = send_sandbox_error(s, failed, rc);
                sbx_request_free(failed);
                if (qrc < 0)
                    return qrc;
            }
            continue;
        }
        struct request *next = r->next;
        if (dispatch(s, c, r) < 0)
            continue; /* that spare died; try another */
        unlink_request(s, prev, r);
        r = next;
    }
    if (s->n_spares < s->cfg->max_running) {
        int rc = spawn_spare(s, job);
        if (rc == 1)
            return 1;
    }
    return 0;
}

/* Drain one capture pipe; past the output cap the child is killed. */
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
            sbx_kill_child(c, KILL_OUTPUT);
    }
}

/* Everything a child printed before its last mark is in its pipes by now. */
void sbx_drain_outputs(struct child *c)
{
    if (c->out_fd >= 0)
        drain(c, &c->out_fd, &c->out, true);
    if (c->err_fd >= 0)
        drain(c, &c->err_fd, &c->err, true);
}

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
        if (c->pid == 0 && m.kind != SBX_MARK_PID) {
            sbx_buf_consume(&c->rep, sizeof m + m.len);
            continue;
        }
        /* A program in place: what its process used before is not its own. */
        m.cpu_s = m.cpu_s > c->base_cpu ? m.cpu_s - c->base_cpu : 0;
        switch (m.kind) {
        case SBX_MARK_END:
            c->ended = true;
            c->end = m;
            c->steps_done += (m.flags & SBX_END_CLEAN) != 0;
            (void)sbx_buf_append(&c->report, c->rep.data + sizeof m, m.len);
            break;
        case SBX_MARK_STEP:
            sbx_drain_outputs(c);
            sbx_snapshot_step_done(s, c, &m);
            break;
        case SBX_MARK_LISTENER:
            sbx_snapshot_listener(s, c);
            break;
        case SBX_MARK_PID:
            sbx_snapshot_pid(s, c, &m);
            break;
        }
        sbx_buf_consume(&c->rep, sizeof m + m.len);
    }
}

static void reap(struct child *c)
{
    if (c->pid <= 0)
        return;
    pid_t pid = (pid_t)SBX_RETRY(wait4(c->pid, &c->wstatus, WNOHANG, &c->ru));
    if (pid == c->pid) {
        c->reaped = true;
        close_fd(&c->pidfd);
    }
}

/* The child answered on its end mark: keep it as a snapshot or end it. */
static int answer_on_end(struct server *s, struct child *c, double now)
{
    int rc = send_result(s, c, now);
    c->answered = true;
    if (!c->demoted)
        s->n_running--;
    bool clean = c->end.flags & SBX_END_CLEAN && c->killed == KILL_NONE && !c->out.truncated &&
                 !c->err.truncated;
    if (clean && sbx_snapshot_keep(s, c)) {
        sbx_request_free(c->req);
        c->req = NULL;
    } else {
        kill(c->pid, SIGKILL); /* also ends a program that forged its end mark */
    }
    return rc;
}

/* Used when a child forked from a snapshot finds its steps cannot run one by
 * one, when its fork failed, and when its snapshot died before forking it. */
void sbx_rerun(struct server *s, struct child *c, bool scratch)
{
    if (c->pid > 0)
        kill(c->pid, SIGKILL);
    else
        c->dropped = true; /* never forked: nothing to reap */
    if (c->req)
        sbx_requeue(s, c->req, scratch);
    c->req = NULL;
    c->answered = true;
    if (c->role == ROLE_RUNNING && !c->demoted)
        s->n_running--;
}

static int finish_done(struct server *s, double now)
{
    int rc = 0;
    for (size_t i = 0; i < s->n_children; i++) {
        struct child *c = s->children[i];
        if (c->role == ROLE_RUNNING && c->ended && !c->answered && c->out_fd < 0 && c->err_fd < 0) {
            if (c->end.flags & SBX_END_UNSPLIT)
                sbx_rerun(s, c, true);
            else if (rc == 0)
                rc = answer_on_end(s, c, now);
        }
        /* A process forked through a notification that never said who it is:
         * it ran out of time, or its fork failed (every pipe at EOF). */
        bool drained = c->out_fd < 0 && c->err_fd < 0 && c->rep_fd < 0;
        bool unborn = c->pid == 0 && !c->source && !c->dropped && c->given[3] < 0;
        if (unborn && c->role == ROLE_RUNNING && c->killed != KILL_NONE)
            c->reaped = true;
        else if (unborn && drained)
            sbx_rerun(s, c, true);
        if (c->reaped && c->role == ROLE_SNAPSHOT)
            sbx_snapshot_gone(s, c);
    }
    size_t kept = 0;
    for (size_t i = 0; i < s->n_children; i++) {
        struct child *c = s->children[i];
        bool drained = c->out_fd < 0 && c->err_fd < 0 && c->rep_fd < 0;
        bool done =
            c->dropped || (c->reaped && (drained || c->role == ROLE_SNAPSHOT || c->pid == 0));
        if (!done) {
            s->children[kept++] = c;
            continue;
        }
        if (c->role == ROLE_SPARE) {
            s->n_spares -= c->job_fd >= 0; /* a spare that died before its program */
        } else if (c->role == ROLE_RUNNING && !c->answered) {
            if (rc == 0)
                rc = send_result(s, c, now);
            if (!c->demoted)
                s->n_running--;
        }
        if (c->role == ROLE_RUNNING)
            sbx_snapshot_gone(s, c); /* no snapshot waits on it any more */
        child_free(c);
    }
    s->n_children = kept;
    return rc;
}

/* Deadlines and demotion; returns the poll timeout in ms. */
static int enforce_time(struct server *s, double now)
{
    double next = -1;
    for (size_t i = 0; i < s->n_children; i++) {
        struct child *c = s->children[i];
        if (c->reaped || c->role != ROLE_RUNNING || c->answered)
            continue;
        if (c->deadline > 0 && now >= c->deadline)
            sbx_kill_child(c, KILL_TIMEOUT);
        else if (c->deadline > 0 && (next < 0 || c->deadline < next))
            next = c->deadline;
        if (!c->demoted && c->killed == KILL_NONE && c->pid > 0 && s->cfg->demote_after_s > 0) {
            double at = c->started + s->cfg->demote_after_s;
            if (now >= at) {
                /* A long runner (often a never-ending loop) yields the CPU to
                 * fresh programs and frees its slot; its deadline still holds. */
                setpriority(PRIO_PROCESS, (id_t)c->pid, DEMOTED_NICE);
                c->demoted = true;
                s->n_running--;
                struct sbx_response hdr = {.kind = SBX_FRAME_DEMOTED, .id = c->req->hdr.id};
                /* Best effort: without it the caller only dispatches less. */
                (void)queue_frame(s, &hdr, NULL, NULL, 0);
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

#define FDS_PER_CHILD 4

static int build_pollfds(struct server *s)
{
    size_t need = 2 + FDS_PER_CHILD * s->n_children + s->n_listeners;
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
    for (size_t i = 0; i < s->n_children; i++) {
        struct child *c = s->children[i];
        struct pollfd *q = &p[2 + FDS_PER_CHILD * i];
        q[0] = (struct pollfd){.fd = c->pidfd, .events = POLLIN};
        q[1] = (struct pollfd){.fd = c->out_fd, .events = POLLIN};
        q[2] = (struct pollfd){.fd = c->err_fd, .events = POLLIN};
        q[3] = (struct pollfd){.fd = c->rep_fd, .events = POLLIN};
    }
    struct pollfd *l = &p[2 + FDS_PER_CHILD * s->n_children];
    for (size_t i = 0; i < s->n_listeners; i++)
        l[i] = (struct pollfd){.fd = s->listeners[i], .events = POLLIN};
    return (int)need;
}

static void handle_children(struct server *s, size_t n_children)
{
    /* Marks may add children (snapshots being forked): they come after n. */
    for (size_t i = 0; i < n_children; i++) {
        struct child *c = s->children[i];
        struct pollfd *p = &s->pfds[2 + FDS_PER_CHILD * i];
        if (p[1].revents)
            drain(c, &c->out_fd, &c->out, true);
        if (p[2].revents)
            drain(c, &c->err_fd, &c->err, true);
        if (p[3].revents) {
            drain(c, &c->rep_fd, &c->rep, false);
            take_marks(s, c);
        }
        if (p[0].revents)
            reap(c);
    }
}

static void handle_listeners(struct server *s, size_t n_children, size_t n_listeners)
{
    struct pollfd *l = &s->pfds[2 + FDS_PER_CHILD * n_children];
    size_t kept = 0;
    for (size_t i = 0; i < n_listeners; i++) {
        if (l[i].revents & POLLIN)
            sbx_snapshot_handle_notification(s, s->listeners[i]);
        if ((l[i].revents & (POLLHUP | POLLERR | POLLNVAL)) && !(l[i].revents & POLLIN))
            close(s->listeners[i]); /* every process of that lineage is gone */
        else
            s->listeners[kept++] = s->listeners[i];
    }
    /* Listeners added meanwhile stay. */
    for (size_t i = n_listeners; i < s->n_listeners; i++)
        s->listeners[kept++] = s->listeners[i];
    s->n_listeners = kept;
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

static void shutdown_children(struct server *s)
{
    for (size_t i = 0; i < s->n_children; i++) {
        struct child *c = s->children[i];
        if (c->pid > 0 && !c->reaped) {
            kill(c->pid, SIGKILL);
            SBX_RETRY(waitpid(c->pid, NULL, 0));
        }
        child_free(c);
    }
    s->n_children = 0;
    kill_strays();
    while (s->queue_head) {
        struct request *r = s->queue_head;
        s->queue_head = r->next;
        sbx_request_free(r);
    }
}

static void server_free(struct server *s)
{
    shutdown_children(s);
    for (size_t i = 0; i < s->n_listeners; i++)
        close(s->listeners[i]);
    free(s->listeners);
    if (s->notif)
        seccomp_notify_free(s->notif, s->notif_resp);
    sbx_buf_free(&s->inbuf);
    sbx_buf_free(&s->outbuf);
    free(s->children);
    free(s->pfds);
    close_fd(&s->devnull);
}

int sbx_serve(int in_fd, int out_fd, const struct sbx_config *cfg, struct sbx_job *job)
{
    struct server s = {.cfg = cfg, .in_fd = in_fd, .out_fd = out_fd};
    int rc;
    s.devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (s.devnull < 0)
        return -errno;
    if ((rc = sbx_set_nonblock(in_fd, 1)) < 0 || (rc = sbx_set_nonblock(out_fd, 1)) < 0)
        goto out;
    if (cfg->filter_notify && (rc = seccomp_notify_alloc(&s.notif, &s.notif_resp)) < 0)
        goto out;
    for (;;) {
        /* Finish first: a finished child frees the slot a queued request
         * needs, and its answer goes out before a spare is forked (~1.5 ms). */
        if ((rc = finish_done(&s, sbx_now())) < 0 || (rc = flush_output(&s)) < 0)
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
        if ((rc = flush_output(&s)) < 0)
            goto out;
        int nfds = build_pollfds(&s);
        if (nfds < 0) {
            rc = nfds;
            goto out;
        }
        size_t n_children = s.n_children, n_listeners = s.n_listeners;
        if (SBX_RETRY(poll(s.pfds, (nfds_t)nfds, timeout)) < 0) {
            rc = -errno;
            goto out;
        }
        if (s.pfds[0].revents && (rc = read_input(&s)) < 0)
            goto out;
        handle_children(&s, n_children);
        handle_listeners(&s, n_children, n_listeners);
    }
out:
    server_free(&s);
    return rc;
}
