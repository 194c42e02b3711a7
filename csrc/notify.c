#include "notify.h"

#include <errno.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/seccomp.h>

#include "util.h"

int sbx_notifier_init(struct notifier *nf)
{
    return seccomp_notify_alloc(&nf->notif, &nf->resp);
}

void sbx_notifier_free(struct notifier *nf)
{
    for (size_t i = 0; i < nf->n; i++)
        close(nf->listeners[i]);
    free(nf->listeners);
    if (nf->notif)
        seccomp_notify_free(nf->notif, nf->resp);
    *nf = (struct notifier){0};
}

void sbx_notify_take_listener(struct notifier *nf, struct snapshot_cache *sc, struct child *c)
{
    if (!sbx_child_owes_result(c) || c->proc != PROC_LIVE || c->job_fd < 0)
        return;
    int fd = (int)syscall(SYS_pidfd_getfd, c->pidfd, SBX_CHILD_LISTENER_FD, 0);
    if (fd >= 0 && nf->n == nf->cap) {
        size_t cap = nf->cap ? nf->cap * 2 : 16;
        int *p = realloc(nf->listeners, cap * sizeof *p);
        if (p) {
            nf->listeners = p;
            nf->cap = cap;
        }
    }
    if (fd >= 0 && nf->n < nf->cap) {
        nf->listeners[nf->n++] = fd;
        c->notified = true;
    } else {
        if (fd >= 0)
            close(fd);
        if (!sc->broken)
            fprintf(stderr, "sandbox: prefix snapshots off: cannot take a seccomp listener: %s\n",
                    strerror(errno));
        sc->broken = true;
    }
    char go = SBX_CMD_GO;
    if (sbx_write_all(c->job_fd, &go, 1) < 0)
        sbx_child_kill(c, SBX_KILL_NONE);
}

/* The pid a forked process reports must be a child of this zygote that it
 * does not know yet: the clone it let through made it. */
static bool plausible_pid(const struct children *t, pid_t pid)
{
    if (pid <= 0)
        return false;
    for (size_t i = 0; i < t->n; i++)
        if (t->items[i]->pid == pid)
            return false;
    siginfo_t info;
    return waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0;
}

void sbx_notify_pid_mark(struct snapshot_cache *sc, struct child *c, const struct sbx_mark *m)
{
    if (c->proc != PROC_UNBORN || c->source)
        return;
    int pidfd = plausible_pid(sc->children, m->pid) ? (int)syscall(SYS_pidfd_open, m->pid, 0) : -1;
    if (pidfd < 0) {
        sbx_snapshot_abandon(sc, c);
        return;
    }
    bool from_snapshot = c->forked_from != NULL;
    sbx_child_born(c, m->pid, pidfd);
    if (c->killed != SBX_KILL_NONE) {
        kill(c->pid, SIGKILL);
        return;
    }
    if (c->state == CHILD_SNAPSHOT)
        sbx_snapshot_went_live(sc, c);
    else if (from_snapshot)
        sbx_snapshot_fork_born(sc);
}

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

/* The record a clone from `asker` is for: the job pending on a snapshot, or
 * the snapshot a running child was asked to leave; NULL if none. */
static struct child *clone_target(const struct children *t, const struct seccomp_notif *n,
                                  struct child **asker)
{
    *asker = NULL;
    for (size_t i = 0; i < t->n && !*asker; i++)
        if (t->items[i]->pid == (pid_t)n->pid && t->items[i]->proc == PROC_LIVE)
            *asker = t->items[i];
    struct child *a = *asker;
    if (!a || n->data.nr != __NR_clone || n->data.args[0] != SBX_FORK_FLAGS)
        return NULL;
    if (a->state == CHILD_SNAPSHOT && a->snap && a->snap->pending)
        return a->snap->pending;
    if (sbx_child_owes_result(a) && a->asked_fork)
        return a->asked_fork;
    return NULL;
}

/* Let the clone through for `target`. 0, or -errno if it cannot be. */
static int let_through(int listener, const struct seccomp_notif *n, struct child *asker,
                       struct child *target, struct seccomp_notif_resp *resp)
{
    if (asker->state == CHILD_SNAPSHOT)
        sbx_snapshot_detach(target);
    else
        asker->asked_fork = NULL;
    target->source = NULL;
    int rc = give_fds(listener, n->id, target);
    for (int i = 0; i < SBX_GIVEN_COUNT; i++)
        if (target->given[i] >= 0) {
            close(target->given[i]);
            target->given[i] = -1;
        }
    if (rc == 0) {
        resp->error = 0;
        resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        if (asker->state == CHILD_SNAPSHOT && asker->snap) {
            /* Until target says who it is, the clone may still be under
             * way in the snapshot: it must not be evicted meanwhile. */
            target->forked_from = asker;
            asker->snap->unborn_forks++;
        }
    }
    return rc;
}

static void handle_one(struct snapshot_cache *sc, struct seccomp_notif *n,
                       struct seccomp_notif_resp *resp, int listener)
{
    memset(n, 0, sizeof *n);
    if (seccomp_notify_receive(listener, n) < 0)
        return; /* the process died meanwhile */
    memset(resp, 0, sizeof *resp);
    resp->id = n->id;
    if (signals_itself(n)) {
        resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE; /* integers only: no TOCTOU */
        (void)seccomp_notify_respond(listener, resp);
        return;
    }
    resp->error = -EPERM;
    struct child *asker;
    struct child *target = clone_target(sc->children, n, &asker);
    if (target && let_through(listener, n, asker, target, resp) < 0)
        sbx_snapshot_abandon(sc, target);
    (void)seccomp_notify_respond(listener, resp);
}

void sbx_notify_handle(struct notifier *nf, struct snapshot_cache *sc, const struct pollfd *pfds,
                       size_t count)
{
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        if (pfds[i].revents & POLLIN)
            handle_one(sc, nf->notif, nf->resp, nf->listeners[i]);
        if ((pfds[i].revents & (POLLHUP | POLLERR | POLLNVAL)) && !(pfds[i].revents & POLLIN))
            close(nf->listeners[i]); /* every process of that lineage is gone */
        else
            nf->listeners[kept++] = nf->listeners[i];
    }
    /* Listeners added meanwhile stay. */
    for (size_t i = count; i < nf->n; i++)
        nf->listeners[kept++] = nf->listeners[i];
    nf->n = kept;
}
