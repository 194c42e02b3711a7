#include "supervise.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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
#include "util.h"

#define DEMOTED_NICE 15

enum kill_reason { KILL_NONE, KILL_TIMEOUT, KILL_OUTPUT };

struct request {
    struct sbx_request hdr;
    char *code;
    struct request *next;
};

struct child {
    struct request *req; /* NULL while the child waits as a spare */
    pid_t pid;
    int pidfd;
    int job_fd;                 /* write end of the job pipe; -1 once sent */
    int out_fd, err_fd, rep_fd; /* read ends; -1 once at EOF */
    struct sbx_buf out, err, rep;
    double started, deadline;
    bool demoted, reaped;
    bool answered; /* result sent on its trailer; only the reaping is left */
    struct sbx_trailer trailer;
    bool has_trailer;
    enum kill_reason killed;
    int wstatus;
    struct rusage ru;
};

struct server {
    const struct sbx_config *cfg;
    int in_fd, out_fd, devnull;
    bool input_closed;
    struct sbx_buf inbuf, outbuf;
    struct request *queue_head, *queue_tail;
    struct child **children;
    size_t n_children, cap_children;
    int n_running; /* dispatched and not demoted */
    int n_spares;  /* forked, prepared, waiting for a program */
    struct pollfd *pfds;
    size_t cap_pfds;
};

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void request_free(struct request *r)
{
    if (r) {
        free(r->code);
        free(r);
    }
}

static void child_free(struct child *c)
{
    close_fd(&c->pidfd);
    close_fd(&c->job_fd);
    close_fd(&c->out_fd);
    close_fd(&c->err_fd);
    close_fd(&c->rep_fd);
    sbx_buf_free(&c->out);
    sbx_buf_free(&c->err);
    sbx_buf_free(&c->rep);
    request_free(c->req);
    free(c);
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
        r->code = code;
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

static int queue_frame(struct server *s, const struct sbx_response *hdr,
                       const struct child *c, const char *error, size_t error_len)
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

static double rusage_cpu(const struct rusage *ru)
{
    return (double)ru->ru_utime.tv_sec + ru->ru_utime.tv_usec * 1e-6 +
           (double)ru->ru_stime.tv_sec + ru->ru_stime.tv_usec * 1e-6;
}

/* Split a trailer off the end of the report, if the child wrote one. */
static void take_trailer(struct child *c)
{
    struct sbx_buf *rep = &c->rep;
    if (c->has_trailer || rep->len < sizeof c->trailer)
        return;
    memcpy(&c->trailer, rep->data + rep->len - sizeof c->trailer, sizeof c->trailer);
    if (c->trailer.magic != SBX_TRAILER_MAGIC)
        return;
    c->has_trailer = true;
    rep->len -= sizeof c->trailer;
}

/* The outcome of a finished child, and the error line that goes with it.
 * A child that is not reaped yet is judged by its trailer. */
static enum sbx_status classify(struct child *c, char *line, size_t line_size,
                                const char **error, size_t *error_len)
{
    const struct sbx_buf *rep = &c->rep;
    double cpu = rusage_cpu(&c->ru);
    if (!c->reaped) {
        c->wstatus = (c->trailer.exit_code & 0xff) << 8; /* as if it exited */
        cpu = c->trailer.cpu_s;
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
        double cpu_limit = c->req->hdr.cpu_s;
        if (sig == SIGXCPU || (sig == SIGKILL && cpu_limit > 0 && cpu >= cpu_limit)) {
            *error = "CPU-time limit exceeded";
            *error_len = strlen(*error);
            return SBX_TIMEOUT;
        }
        int n = snprintf(line, line_size, "killed by signal %d (SIG%s)%s", sig,
                         signal_name(sig), sig == SIGSYS ? ": forbidden system call" : "");
        *error = line;
        *error_len = n > 0 ? (size_t)n : 0;
        return SBX_KILLED;
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
    take_trailer(c);
    char line[128];
    const char *error;
    size_t error_len;
    enum sbx_status status = classify(c, line, sizeof line, &error, &error_len);
    /* Trailing newlines of the report are not part of the error line. */
    while (error_len && (error[error_len - 1] == '\n' || error[error_len - 1] == '\r'))
        error_len--;
    struct sbx_response hdr = {
        .kind = SBX_FRAME_RESULT,
        .status = status,
        .id = c->req->hdr.id,
        .wall_s = now - c->started,
        .cpu_s = c->reaped ? rusage_cpu(&c->ru) : c->trailer.cpu_s,
        .peak_rss_mb = (double)(c->reaped ? c->ru.ru_maxrss : c->trailer.peak_rss_kb) / 1024.0,
        .exit_code = WIFEXITED(c->wstatus) ? WEXITSTATUS(c->wstatus) : -1,
        .term_signal = WIFSIGNALED(c->wstatus) ? WTERMSIG(c->wstatus) : 0,
        .truncated = c->out.truncated || c->err.truncated,
        .stdout_len = (uint32_t)c->out.len,
        .stderr_len = (uint32_t)c->err.len,
        .error_len = (uint32_t)error_len,
    };
    return queue_frame(s, &hdr, c, error, error_len);
}

/* A result for a request that never got a child. */
static int send_sandbox_error(struct server *s, const struct request *r, int err)
{
    char line[128];
    int n = snprintf(line, sizeof line, "sandbox: could not start the program: %s",
                     strerror(-err));
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

static void kill_child(struct child *c, enum kill_reason why)
{
    if (c->reaped)
        return;
    if (c->killed == KILL_NONE)
        c->killed = why;
    kill(c->pid, SIGKILL);
}

static int add_child(struct server *s, struct child *c)
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

/* Fork a spare: a child that runs the steps of its setup that need no
 * program, then (in the interpreter) makes itself ready and waits on its job
 * pipe. Returns 1 in the child, 0 in the zygote, -errno on failure. */
static int spawn_spare(struct server *s, struct sbx_job *job)
{
    int out[2] = {-1, -1}, err[2] = {-1, -1}, rep[2] = {-1, -1}, jp[2] = {-1, -1};
    int rc = 0;
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0 ||
        pipe2(jp, O_CLOEXEC) < 0) {
        rc = -errno;
        goto fail;
    }
    /* The child writes (and reads its job) blocking; the zygote reads its
     * ends without blocking. */
    if ((rc = sbx_set_nonblock(out[0], 1)) < 0 || (rc = sbx_set_nonblock(err[0], 1)) < 0 ||
        (rc = sbx_set_nonblock(rep[0], 1)) < 0)
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
    struct child *c = calloc(1, sizeof *c);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (!c || pidfd < 0 || add_child(s, c) < 0) {
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
    c->rep.limit = 4096;
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
    for (size_t i = 0; i < s->n_children; i++)
        if (!s->children[i]->req && s->children[i]->job_fd >= 0 && !s->children[i]->reaped)
            return s->children[i];
    return NULL;
}

/* Hand a request to a spare. The write blocks only for programs larger than
 * the pipe, while the spare reads them. 0, or -errno if the spare is gone. */
static int dispatch(struct server *s, struct child *c, struct request *r)
{
    int rc = sbx_write_all(c->job_fd, &r->hdr, sizeof r->hdr);
    if (rc == 0)
        rc = sbx_write_all(c->job_fd, r->code, r->hdr.code_len);
    close_fd(&c->job_fd);
    s->n_spares--;
    if (rc < 0) {
        kill(c->pid, SIGKILL); /* reaped and dropped as a spare that died */
        return rc;
    }
    double now = sbx_now();
    c->req = r;
    c->out.limit = c->err.limit = r->hdr.output_bytes;
    c->started = now;
    c->deadline = r->hdr.wall_s > 0 ? now + r->hdr.wall_s : 0;
    s->n_running++;
    return 0;
}

/* Start queued programs on spares, forking spares as needed; keep one spare
 * per slot ready so that the next program does not wait for a fork. */
static int start_queued(struct server *s, struct sbx_job *job)
{
    while (s->queue_head && s->n_running < s->cfg->max_running) {
        struct child *c = idle_spare(s);
        if (!c) {
            int rc = spawn_spare(s, job);
            if (rc == 1)
                return 1;
            if (rc < 0) {
                struct request *r = s->queue_head;
                s->queue_head = r->next;
                if (!s->queue_head)
                    s->queue_tail = NULL;
                int qrc = send_sandbox_error(s, r, rc);
                request_free(r);
                if (qrc < 0)
                    return qrc;
            }
            continue;
        }
        struct request *r = s->queue_head;
        if (dispatch(s, c, r) < 0)
            continue; /* that spare died; try another */
        s->queue_head = r->next;
        if (!s->queue_head)
            s->queue_tail = NULL;
        r->next = NULL;
    }
    if (!s->queue_head && s->n_spares < s->cfg->max_running) {
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
            kill_child(c, KILL_OUTPUT);
    }
}

static void reap(struct child *c)
{
    pid_t pid = (pid_t)SBX_RETRY(wait4(c->pid, &c->wstatus, WNOHANG, &c->ru));
    if (pid == c->pid) {
        c->reaped = true;
        close_fd(&c->pidfd);
    }
}

static int finish_done(struct server *s, double now)
{
    size_t kept = 0;
    int rc = 0;
    for (size_t i = 0; i < s->n_children; i++) {
        struct child *c = s->children[i];
        bool drained = c->out_fd < 0 && c->err_fd < 0 && c->rep_fd < 0;
        if (drained && c->req && !c->answered && !c->reaped && c->killed == KILL_NONE) {
            take_trailer(c);
            if (c->has_trailer) {
                /* Finished: answer now, let the kernel tear it down meanwhile.
                 * The kill makes sure a forged trailer ends the program too. */
                kill(c->pid, SIGKILL);
                if (rc == 0)
                    rc = send_result(s, c, now);
                c->answered = true;
                if (!c->demoted)
                    s->n_running--;
            }
        }
        if (!(c->reaped && drained)) {
            s->children[kept++] = c;
            continue;
        }
        if (!c->req) {
            s->n_spares -= c->job_fd >= 0; /* a spare that died before its program */
        } else if (!c->answered) {
            if (rc == 0)
                rc = send_result(s, c, now);
            if (!c->demoted)
                s->n_running--;
        }
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
        if (c->reaped || !c->req || c->answered)
            continue;
        if (c->deadline > 0 && now >= c->deadline)
            kill_child(c, KILL_TIMEOUT);
        else if (c->deadline > 0 && (next < 0 || c->deadline < next))
            next = c->deadline;
        if (!c->demoted && c->killed == KILL_NONE && s->cfg->demote_after_s > 0) {
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

static int build_pollfds(struct server *s)
{
    size_t need = 2 + 4 * s->n_children;
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
        p[2 + 4 * i + 0] = (struct pollfd){.fd = c->pidfd, .events = POLLIN};
        p[2 + 4 * i + 1] = (struct pollfd){.fd = c->out_fd, .events = POLLIN};
        p[2 + 4 * i + 2] = (struct pollfd){.fd = c->err_fd, .events = POLLIN};
        p[2 + 4 * i + 3] = (struct pollfd){.fd = c->rep_fd, .events = POLLIN};
    }
    return (int)need;
}

static void handle_children(struct server *s)
{
    for (size_t i = 0; i < s->n_children; i++) {
        struct child *c = s->children[i];
        struct pollfd *p = &s->pfds[2 + 4 * i];
        if (p[1].revents)
            drain(c, &c->out_fd, &c->out, true);
        if (p[2].revents)
            drain(c, &c->err_fd, &c->err, true);
        if (p[3].revents)
            drain(c, &c->rep_fd, &c->rep, false);
        if (p[0].revents)
            reap(c);
    }
}

static void shutdown_children(struct server *s)
{
    for (size_t i = 0; i < s->n_children; i++) {
        struct child *c = s->children[i];
        if (!c->reaped) {
            kill(c->pid, SIGKILL);
            SBX_RETRY(waitpid(c->pid, NULL, 0));
        }
        child_free(c);
    }
    s->n_children = 0;
    while (s->queue_head) {
        struct request *r = s->queue_head;
        s->queue_head = r->next;
        request_free(r);
    }
}

static void server_free(struct server *s)
{
    shutdown_children(s);
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
        if (SBX_RETRY(poll(s.pfds, (nfds_t)nfds, timeout)) < 0) {
            rc = -errno;
            goto out;
        }
        if (s.pfds[0].revents && (rc = read_input(&s)) < 0)
            goto out;
        handle_children(&s);
    }
out:
    server_free(&s);
    return rc;
}
