#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "landlock.h"
#include "policy.h"
#include "util.h"

static int step_process_group(const struct sbx_child_plan *p)
{
    (void)p;
    return setpgid(0, 0) < 0 ? -errno : 0;
}

static int step_parent_death(const struct sbx_child_plan *p)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        return -errno;
    /* The supervisor may have died before the prctl took effect. */
    return getppid() == p->supervisor ? 0 : -ESRCH;
}

/* 0,1,2 = /dev/null and the capture pipes, 3 = report, 4 = job pipe,
 * 5 = Landlock ruleset (closed after use); everything else is closed. */
static int step_descriptors(const struct sbx_child_plan *p)
{
    /* Move the sources out of the way first: the targets may be their numbers. */
    int rep = fcntl(p->report_fd, F_DUPFD_CLOEXEC, 10);
    int job = fcntl(p->job_fd, F_DUPFD_CLOEXEC, 10);
    int rules = p->ruleset_fd >= 0 ? fcntl(p->ruleset_fd, F_DUPFD_CLOEXEC, 10) : -1;
    if (rep < 0 || job < 0 || (p->ruleset_fd >= 0 && rules < 0))
        return -errno;
    if (dup2(p->stdin_fd, 0) < 0 || dup2(p->stdout_fd, 1) < 0 || dup2(p->stderr_fd, 2) < 0 ||
        dup3(rep, SBX_CHILD_REPORT_FD, O_CLOEXEC) < 0 || dup3(job, SBX_CHILD_JOB_FD, O_CLOEXEC) < 0)
        return -errno;
    if (rules >= 0 && dup3(rules, SBX_CHILD_RULESET_FD, O_CLOEXEC) < 0)
        return -errno;
    unsigned first_closed = rules >= 0 ? SBX_CHILD_RULESET_FD + 1 : SBX_CHILD_RULESET_FD;
    if (syscall(SYS_close_range, first_closed, ~0U, 0) < 0)
        return -errno;
    return 0;
}

static int set_limit(int resource, rlim_t soft, rlim_t hard)
{
    struct rlimit rl = {.rlim_cur = soft, .rlim_max = hard};
    return setrlimit(resource, &rl) < 0 ? -errno : 0;
}

static int step_rlimits(const struct sbx_child_plan *p, const struct sbx_request *job)
{
    int rc = 0;
    if (job->cpu_s > 0) {
        /* The soft limit sends SIGXCPU; the hard one a second later SIGKILL,
         * for programs that ignore SIGXCPU. */
        rlim_t soft = (rlim_t)ceil(job->cpu_s);
        rc = set_limit(RLIMIT_CPU, soft, soft + 1);
    }
    if (rc == 0 && job->memory_bytes) {
        rlim_t as = p->base_address_space + job->memory_bytes;
        rc = set_limit(RLIMIT_AS, as, as);
    }
    if (rc == 0)
        rc = set_limit(RLIMIT_FSIZE, 0, 0);
    if (rc == 0)
        rc = set_limit(RLIMIT_CORE, 0, 0);
    if (rc == 0)
        rc = set_limit(RLIMIT_MEMLOCK, 0, 0);
    if (rc == 0 && p->nofile > 0)
        rc = set_limit(RLIMIT_NOFILE, (rlim_t)p->nofile, (rlim_t)p->nofile);
    return rc;
}

static int keep_only_dac_read(void)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2] = {{0}};
    data[0].effective = data[0].permitted = 1u << CAP_DAC_READ_SEARCH;
    return syscall(SYS_capset, &hdr, data) < 0 ? -errno : 0;
}

static int step_privileges(const struct sbx_child_plan *p)
{
    if (p->drop_uid < 0)
        return 0;
    if (setgroups(0, NULL) < 0 || setresgid(p->drop_gid, p->drop_gid, p->drop_gid) < 0)
        return -errno;
    if (p->keep_dac_read && prctl(PR_SET_KEEPCAPS, 1) < 0)
        return -errno;
    if (setresuid(p->drop_uid, p->drop_uid, p->drop_uid) < 0)
        return -errno;
    return p->keep_dac_read ? keep_only_dac_read() : 0;
}

static int step_no_new_privs(const struct sbx_child_plan *p)
{
    (void)p;
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ? -errno : 0;
}

static int step_landlock(const struct sbx_child_plan *p)
{
    if (p->ruleset_fd < 0)
        return 0;
    int rc = sbx_landlock_enforce(SBX_CHILD_RULESET_FD);
    close(SBX_CHILD_RULESET_FD);
    return rc;
}

static const struct sock_fprog *filter_for(const struct sbx_child_plan *p,
                                           const struct sbx_request *job)
{
    if (job->flags & SBX_FLAG_ALLOW_THREADS)
        return p->filter_threads;
    if (job->n_steps && p->filter_notify)
        return p->filter_notify;
    return p->filter;
}

static int step_seccomp(const struct sbx_child_plan *p, const struct sbx_request *job)
{
    const struct sock_fprog *f = filter_for(p, job);
    if (!f)
        return 0;
    if (f != p->filter_notify) {
        /* This child's copy-on-write copy of the zygote's program. */
        sbx_policy_bind_pid((struct sock_fprog *)f, getpid());
        return sbx_policy_load(f);
    }
    int listener = sbx_policy_load_notify(f);
    if (listener < 0)
        return listener;
    if (listener != SBX_CHILD_LISTENER_FD) {
        if (dup2(listener, SBX_CHILD_LISTENER_FD) < 0)
            return -errno;
        close(listener);
    }
    return 0;
}

static _Noreturn void fail(int fd, const char *step, int rc)
{
    char msg[96];
    int n = snprintf(msg, sizeof msg, "S%s:%s", step, strerror(-rc));
    if (n > 0)
        (void)sbx_write_all(fd, msg, (size_t)n);
    _exit(SBX_EXIT_SETUP);
}

struct step {
    const char *name;
    int (*run)(const struct sbx_child_plan *p);
};

/* One step per line, in order. */
/* clang-format off */
static const struct step PREPARE_STEPS[] = {
    {"process_group", step_process_group},
    {"parent_death", step_parent_death},
    {"descriptors", step_descriptors},
    {"privileges", step_privileges},
    {"no_new_privs", step_no_new_privs},
    {"landlock", step_landlock},
};
/* clang-format on */

void sbx_child_prepare(const struct sbx_child_plan *plan)
{
    for (size_t i = 0; i < sizeof PREPARE_STEPS / sizeof PREPARE_STEPS[0]; i++) {
        int rc = PREPARE_STEPS[i].run(plan);
        /* Before step_descriptors the report pipe still has its old number. */
        if (rc < 0)
            fail(i < 3 ? plan->report_fd : SBX_CHILD_REPORT_FD, PREPARE_STEPS[i].name, rc);
    }
}

static int read_exact(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = SBX_RETRY(read(fd, p, len));
        if (n <= 0)
            return n == 0 ? -EPIPE : -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_mark(uint32_t kind, int32_t exit_code, uint32_t flags, double cpu_s,
                      int64_t peak_rss_kb, uint64_t private_kb, const char *payload, size_t len)
{
    struct sbx_mark m = {
        .magic = SBX_MARK_MAGIC,
        .kind = kind,
        .exit_code = exit_code,
        .flags = flags,
        .cpu_s = cpu_s,
        .peak_rss_kb = peak_rss_kb,
        .pid = getpid(),
        .len = (uint32_t)len,
        .private_kb = private_kb,
    };
    int rc = sbx_write_all(SBX_CHILD_REPORT_FD, &m, sizeof m);
    if (rc == 0 && len)
        rc = sbx_write_all(SBX_CHILD_REPORT_FD, payload, len);
    return rc;
}

/* Read a job (header and payload) from the job pipe; NULL at end of input. */
static char *read_job(struct sbx_request *job)
{
    if (read_exact(SBX_CHILD_JOB_FD, job, sizeof *job) < 0)
        return NULL;
    char *code = malloc((size_t)job->code_len + 1);
    if (!code)
        fail(SBX_CHILD_REPORT_FD, "receive", -ENOMEM);
    int rc = read_exact(SBX_CHILD_JOB_FD, code, job->code_len);
    if (rc < 0)
        fail(SBX_CHILD_REPORT_FD, "receive", rc);
    code[job->code_len] = '\0';
    return code;
}

/* Hand the listener to the zygote (it takes a copy with pidfd_getfd) and
 * close ours before any user code runs: whoever holds it decides which
 * process creation goes through. */
static int hand_over_listener(void)
{
    char go = 0;
    int rc = write_mark(SBX_MARK_LISTENER, 0, 0, 0, 0, 0, NULL, 0);
    if (rc == 0)
        rc = read_exact(SBX_CHILD_JOB_FD, &go, 1);
    close(SBX_CHILD_LISTENER_FD);
    if (rc == 0 && go != SBX_CMD_GO)
        rc = -EPROTO;
    return rc;
}

char *sbx_child_receive(const struct sbx_child_plan *plan, struct sbx_request *job)
{
    char *code = read_job(job);
    if (!code)
        _exit(0); /* the zygote retired this spare */
    int rc = step_rlimits(plan, job);
    if (rc < 0)
        fail(SBX_CHILD_REPORT_FD, "rlimits", rc);
    /* Last: everything above needs syscalls the filter denies. */
    if ((rc = step_seccomp(plan, job)) < 0)
        fail(SBX_CHILD_REPORT_FD, "seccomp", rc);
    if (filter_for(plan, job) == plan->filter_notify && plan->filter_notify &&
        (rc = hand_over_listener()) < 0)
        fail(SBX_CHILD_REPORT_FD, "listener", rc);
    return code;
}

/* ---- snapshots ------------------------------------------------------- */

/* Fork a sibling through the zygote. It answers the clone's notification by
 * putting the child's descriptors at SBX_GIVEN_FD.. in this process first;
 * the parent closes them again. Returns as fork() does. */
static pid_t mediated_fork(void)
{
    pid_t pid = (pid_t)syscall(SYS_clone, SBX_FORK_FLAGS, 0, NULL, NULL, 0);
    if (pid != 0)
        for (int fd = SBX_GIVEN_FD; fd < SBX_GIVEN_FD + SBX_GIVEN_COUNT; fd++)
            close(fd);
    return pid;
}

/* In the new sibling: its own process group, death with the zygote, the
 * descriptors it was given, then say who it is. */
static void settle_forked(const struct sbx_child_plan *plan)
{
    int rc = 0;
    if (setpgid(0, 0) < 0 || prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        rc = -errno;
    else if (getppid() != plan->supervisor)
        rc = -ESRCH;
    if (rc < 0)
        _exit(SBX_EXIT_SETUP);
    if (dup2(SBX_GIVEN_FD, 1) < 0 || dup2(SBX_GIVEN_FD + 1, 2) < 0 ||
        dup2(SBX_GIVEN_FD + 2, SBX_CHILD_REPORT_FD) < 0 ||
        dup2(SBX_GIVEN_FD + 3, SBX_CHILD_JOB_FD) < 0)
        _exit(SBX_EXIT_SETUP);
    for (int fd = SBX_GIVEN_FD; fd < SBX_GIVEN_FD + SBX_GIVEN_COUNT; fd++)
        close(fd);
    if (write_mark(SBX_MARK_PID, 0, 0, 0, 0, 0, NULL, 0) < 0)
        _exit(SBX_EXIT_SETUP);
}

/* The CPU limit of a process about to run a job from a snapshot: what it
 * used so far (nothing if just forked, the prefix if it runs in place) plus
 * the job's share, which the zygote sent as the job's cpu_s. */
static int limit_cpu(double left)
{
    struct rusage ru;
    struct rlimit rl;
    if (left <= 0)
        return 0;
    if (getrusage(RUSAGE_SELF, &ru) < 0 || getrlimit(RLIMIT_CPU, &rl) < 0)
        return -errno;
    rlim_t soft = (rlim_t)ceil(sbx_rusage_cpu(&ru) + left);
    if (soft + 1 < rl.rlim_max)
        rl.rlim_max = soft + 1;
    rl.rlim_cur = soft < rl.rlim_max ? soft : rl.rlim_max;
    return setrlimit(RLIMIT_CPU, &rl) < 0 ? -errno : 0;
}

/* A snapshot: wait for jobs and fork a child for each; returns in that
 * child with the job's payload, or in the snapshot itself for a job sent to
 * run in place (the snapshot's descriptors become that program's: nothing
 * is forked or handed over). Exits when the zygote closes the job pipe. */
static char *serve_jobs(const struct sbx_child_plan *plan, struct sbx_request *job)
{
    for (;;) {
        char *code = read_job(job);
        if (!code)
            _exit(0);
        bool run_here = job->flags & SBX_FLAG_IN_PLACE;
        if (!run_here && mediated_fork() == 0) {
            settle_forked(plan);
            run_here = true;
        }
        if (run_here) {
            if (limit_cpu(job->cpu_s) < 0)
                _exit(SBX_EXIT_SETUP);
            return code;
        }
        free(code); /* refused or forked: the zygote knows which */
    }
}

char *sbx_child_step_done(const struct sbx_child_plan *plan, double cpu_s, int64_t peak_rss_kb,
                          uint64_t private_kb, struct sbx_request *job)
{
    char answer = 0;
    if (write_mark(SBX_MARK_STEP, 0, 0, cpu_s, peak_rss_kb, private_kb, NULL, 0) < 0 ||
        read_exact(SBX_CHILD_JOB_FD, &answer, 1) < 0 || answer != SBX_CMD_FORK)
        return NULL;
    if (mediated_fork() != 0)
        return NULL;
    settle_forked(plan);
    return serve_jobs(plan, job);
}

char *sbx_child_finish(const struct sbx_child_plan *plan, int exit_code, uint32_t flags,
                       double cpu_s, int64_t peak_rss_kb, uint64_t private_kb, const char *report,
                       size_t report_len, struct sbx_request *job)
{
    /* On a clean end the output pipes stay open (see SBX_END_CLEAN): the
     * zygote answers on the mark, and a program may continue here. */
    (void)write_mark(SBX_MARK_END, exit_code, flags, cpu_s, peak_rss_kb, private_kb, report,
                     report_len);
    if (!(flags & SBX_END_CLEAN)) {
        for (int fd = 0; fd <= SBX_CHILD_JOB_FD; fd++)
            close(fd);
        _exit(exit_code);
    }
    return serve_jobs(plan, job);
}
