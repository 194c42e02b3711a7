/* Forks through seccomp user notifications. A snapshot runs user code's
 * leftovers, so it may not create processes on its own: its filter sends
 * every process creation to this zygote, which lets through exactly one
 * clone (CLONE_PARENT | SIGCHLD, so the child is the zygote's) per fork it
 * asked for on the job pipe, handing the child's descriptors over in the
 * same notification. Everything else is answered EPERM. (The last program
 * its caller has for a prefix runs in the snapshot itself, without a clone:
 * see sbx_snapshot_start.) */
#ifndef SBX_NOTIFY_H
#define SBX_NOTIFY_H

#include <poll.h>
#include <stddef.h>

#include "children.h"
#include "protocol.h"
#include "snapshot.h"

struct notifier {
    int *listeners; /* seccomp listeners, one per spare's lineage */
    size_t n, cap;
    struct seccomp_notif *notif;
    struct seccomp_notif_resp *resp;
};

/* 0 or -errno. */
int sbx_notifier_init(struct notifier *nf);
void sbx_notifier_free(struct notifier *nf);

/* SBX_MARK_LISTENER: a spare installed the notifying filter; take a copy
 * of its listener and let it run its program. */
void sbx_notify_take_listener(struct notifier *nf, struct snapshot_cache *sc, struct child *c);
/* SBX_MARK_PID: a process forked through a notification says who it is. */
void sbx_notify_pid_mark(struct snapshot_cache *sc, struct child *c, const struct sbx_mark *m);
/* Handle what poll saw on the listeners (pfds[i] for listeners[i], the
 * first `count` of them); listeners whose lineage is gone are closed. */
void sbx_notify_handle(struct notifier *nf, struct snapshot_cache *sc, const struct pollfd *pfds,
                       size_t count);

#endif
