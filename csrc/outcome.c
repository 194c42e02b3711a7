#include "outcome.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "child.h"

static void constant(struct sbx_outcome *o, const char *text)
{
    o->error = text;
    o->error_len = strlen(text);
}

static void formatted(struct sbx_outcome *o, int n)
{
    o->error = o->line;
    o->error_len = n <= 0 ? 0 : (size_t)n < sizeof o->line ? (size_t)n : sizeof o->line - 1;
}

static enum sbx_status classify(const struct sbx_facts *f, struct sbx_outcome *o)
{
    char kind = f->report_len ? f->report[0] : 0;
    if (f->report_len > 1 && (kind == 'E' || kind == 'M' || kind == 'S')) {
        o->error = f->report + 1;
        o->error_len = f->report_len - 1;
    }
    int ws = o->wstatus;
    if (kind == 'S' && WIFEXITED(ws) && WEXITSTATUS(ws) == SBX_EXIT_SETUP)
        return SBX_SANDBOX_ERROR;
    if (f->killed == SBX_KILL_OUTPUT) {
        constant(o, "output limit exceeded");
        return SBX_OUTPUT_LIMIT;
    }
    if (f->killed == SBX_KILL_TIMEOUT) {
        constant(o, "wall-clock limit exceeded");
        return SBX_TIMEOUT;
    }
    if (WIFSIGNALED(ws)) {
        int sig = WTERMSIG(ws);
        if (sig == SIGXCPU ||
            (sig == SIGKILL && f->cpu_limit_s > 0 && f->cpu_s >= f->cpu_limit_s)) {
            constant(o, "CPU-time limit exceeded");
            return SBX_TIMEOUT;
        }
        const char *name = sigabbrev_np(sig);
        formatted(o, snprintf(o->line, sizeof o->line, "killed by signal %d (SIG%s)%s", sig,
                              name ? name : "?", sig == SIGSYS ? ": forbidden system call" : ""));
        return SBX_KILLED;
    }
    if (!f->waited && !f->ended) { /* a forked child that never started */
        constant(o, "sandbox: a forked child did not start");
        return SBX_SANDBOX_ERROR;
    }
    if (kind == 'M')
        return SBX_MEMORY;
    if (WEXITSTATUS(ws) == 0)
        return SBX_OK;
    if (!o->error)
        formatted(o, snprintf(o->line, sizeof o->line, "exit status %d", WEXITSTATUS(ws)));
    return SBX_ERROR;
}

void sbx_classify(const struct sbx_facts *f, struct sbx_outcome *o)
{
    o->error = NULL;
    o->error_len = 0;
    o->wstatus = f->waited ? f->wstatus : (f->end_exit & 0xff) << 8; /* as if it exited */
    o->status = classify(f, o);
    while (o->error_len &&
           (o->error[o->error_len - 1] == '\n' || o->error[o->error_len - 1] == '\r'))
        o->error_len--;
}
