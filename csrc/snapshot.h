/* Prefix snapshots: a process that ran a prefix of a program's steps stays
 * alive as that prefix's end state, and later programs with the same prefix
 * fork from it and run only their remaining steps. This unit is the cache:
 * keys, lookup, the LRU and its caps, and the records of forks it asks
 * for. How a fork is let through is notify.c's. */
#ifndef SBX_SNAPSHOT_H
#define SBX_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "children.h"
#include "config.h"
#include "protocol.h"
#include "wire.h"

struct snapshot_cache {
    const struct sbx_config *cfg;
    struct children *children; /* snapshots are records of this table */
    uint64_t clock;            /* LRU time */
    bool broken;               /* the kernel refused what they need: fresh forks only */
};

bool sbx_snapshots_on(const struct snapshot_cache *sc);
/* The snapshot, live or still being forked, with the longest proper prefix
 * of r's steps; *k its steps. */
struct child *sbx_snapshot_find(struct snapshot_cache *sc, const struct request *r, uint32_t *k);
/* Send r to snapshot src (whose prefix has k steps) as a new RUNNING
 * record; 0 or -errno. */
int sbx_snapshot_start(struct snapshot_cache *sc, struct child *src, struct request *r, uint32_t k);
/* A running child's step ended (SBX_MARK_STEP): answer whether it should
 * leave a snapshot of that state. */
void sbx_snapshot_step_done(struct snapshot_cache *sc, struct child *c, const struct sbx_mark *m);
/* A running child answered on a clean end: keep it as a snapshot? true if kept. */
bool sbx_snapshot_keep(struct snapshot_cache *sc, struct child *c);
/* A forked snapshot's process is known: it may serve forks now. */
void sbx_snapshot_went_live(struct snapshot_cache *sc, struct child *c);
/* A process forked from a snapshot is known: that snapshot may be evicted
 * again if the caps need it. */
void sbx_snapshot_fork_born(struct snapshot_cache *sc);
/* c no longer waits for the snapshot it was to come from. */
void sbx_snapshot_detach(struct child *c);
/* Give up on a record whose process will not come (or not be used): its
 * request runs again from scratch. */
void sbx_snapshot_abandon(struct snapshot_cache *sc, struct child *c);
/* A record is about to be freed, or a snapshot's process is gone: undo what
 * snapshots and forks in flight expected of it; a dead snapshot's pending
 * job is queued again. */
void sbx_snapshot_gone(struct snapshot_cache *sc, struct child *c);
void sbx_snapshot_stats(const struct snapshot_cache *sc, uint32_t *count, double *mb);

#endif
