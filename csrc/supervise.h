/* The zygote's loop: read requests from the caller, fork one child per
 * program, supervise many at once (pidfds, capture pipes, deadlines), and
 * send each outcome back, classified. */
#ifndef SBX_SUPERVISE_H
#define SBX_SUPERVISE_H

#include "config.h"

/* Serve requests from in_fd, answer on out_fd.
 * Returns 0 in the zygote at end of input (every child killed and reaped),
 * -errno on a fatal error, and 1 in a spare: a prepared child that should
 * make itself ready and then call sbx_child_receive(&job->plan, ...). */
int sbx_serve(int in_fd, int out_fd, const struct sbx_config *cfg, struct sbx_job *job);

#endif
