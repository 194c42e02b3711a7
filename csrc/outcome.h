/* How a finished program is classified: a pure function from what the
 * zygote observed (its wait status or end mark, why it was killed, its
 * report, its CPU use and limit) to a status and the error line that goes
 * with it. No process, descriptor or clock is touched. */
#ifndef SBX_OUTCOME_H
#define SBX_OUTCOME_H

#include <stdbool.h>
#include <stddef.h>

#include "protocol.h"

/* Why the zygote killed a program, if it did. */
enum sbx_kill_reason { SBX_KILL_NONE, SBX_KILL_TIMEOUT, SBX_KILL_OUTPUT };

struct sbx_facts {
    /* Its process was reaped: wstatus is the kernel's. Otherwise it is
     * judged by its end mark (if `ended`), as if it exited with end_exit. */
    bool waited;
    bool ended;
    int wstatus;
    int end_exit;
    enum sbx_kill_reason killed;
    double cpu_s;       /* CPU seconds the program used */
    double cpu_limit_s; /* what it was allowed (0: no limit) */
    /* What it wrote on its report pipe: "E<error line>", "M<...>" (out of
     * memory), "S<step>:<error>" (setup failed), or nothing. */
    const char *report;
    size_t report_len;
};

struct sbx_outcome {
    enum sbx_status status;
    int wstatus; /* the wait status the result reports */
    /* Points into the facts' report, at a constant, or at `line`; trailing
     * newlines are not part of it. */
    const char *error;
    size_t error_len;
    char line[128];
};

void sbx_classify(const struct sbx_facts *f, struct sbx_outcome *o);

#endif
