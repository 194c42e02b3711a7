/* The syscall policy of a sandboxed child, as data.
 *
 * Default: ERRNO(EPERM), so that a syscall nobody thought of fails the way
 * Python reports best (PermissionError) instead of killing the program.
 * Syscalls that only an escape attempt would use kill the process (the
 * caller then sees status `killed`). Network calls fail with EACCES. */
#include "policy.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "util.h"

enum rule_kind {
    R_ALLOW,
    R_ERRNO,
    R_KILL,
    R_OPEN_RDONLY, /* open/openat/openat2: only without write/create flags */
    R_CLONE,       /* clone: threads if allowed; notified in SBX_FILTER_NOTIFY */
    R_FORK,        /* fork, vfork: notified in SBX_FILTER_NOTIFY */
    R_PDEATHSIG,   /* prctl: only PR_SET_PDEATHSIG(SIGKILL), in SBX_FILTER_NOTIFY */
    R_OWN_GROUP,   /* setpgid: only (0, 0), in SBX_FILTER_NOTIFY */
    R_PRLIMIT_GET, /* prlimit64: only reading (new limit == NULL); in
                    * SBX_FILTER_NOTIFY also its own CPU limit (see below) */
    R_SELF_SIGNAL, /* kill and kin: only to the process itself (first
                    * argument = its pid); in SBX_FILTER_NOTIFY the zygote
                    * checks that, since a snapshot's children share its
                    * filter but not its pid */
};

struct rule {
    const char *name;
    enum rule_kind kind;
    int err;
};

/* The table reads as a table. */
/* clang-format off */
#define ALLOW(n) {n, R_ALLOW, 0}
#define DENY(n, e) {n, R_ERRNO, e}
#define KILL(n) {n, R_KILL, 0}

static const struct rule POLICY[] = {
    /* memory */
    ALLOW("brk"), ALLOW("mmap"), ALLOW("munmap"), ALLOW("mremap"),
    ALLOW("mprotect"), ALLOW("madvise"), ALLOW("mincore"), ALLOW("msync"),
    /* I/O on descriptors the child already holds or opens read-only */
    ALLOW("read"), ALLOW("write"), ALLOW("readv"), ALLOW("writev"),
    ALLOW("pread64"), ALLOW("preadv"), ALLOW("close"), ALLOW("lseek"),
    ALLOW("fstat"), ALLOW("newfstatat"), ALLOW("stat"), ALLOW("lstat"),
    ALLOW("statx"), ALLOW("fstatfs"), ALLOW("statfs"), ALLOW("access"),
    ALLOW("faccessat"), ALLOW("faccessat2"), ALLOW("readlink"),
    ALLOW("readlinkat"), ALLOW("getdents64"), ALLOW("getcwd"),
    ALLOW("chdir"), ALLOW("fchdir"), ALLOW("fcntl"), ALLOW("dup"),
    ALLOW("dup2"), ALLOW("dup3"), ALLOW("ioctl"), ALLOW("umask"),
    ALLOW("poll"), ALLOW("ppoll"), ALLOW("select"), ALLOW("pselect6"),
    {"open", R_OPEN_RDONLY, 0}, {"openat", R_OPEN_RDONLY, 0},
    /* openat2 carries its flags in a struct seccomp cannot read */
    DENY("openat2", ENOSYS),
    /* signals: as plain Python to itself (raise, os.kill(os.getpid()),
     * pause), never to another process (EPERM) */
    ALLOW("rt_sigaction"), ALLOW("rt_sigprocmask"), ALLOW("rt_sigreturn"),
    ALLOW("sigaltstack"), ALLOW("rt_sigpending"), ALLOW("rt_sigsuspend"),
    ALLOW("rt_sigtimedwait"), ALLOW("pause"),
    ALLOW("alarm"), ALLOW("setitimer"), ALLOW("getitimer"),
    {"kill", R_SELF_SIGNAL, EPERM}, {"tkill", R_SELF_SIGNAL, EPERM},
    {"tgkill", R_SELF_SIGNAL, EPERM}, {"rt_sigqueueinfo", R_SELF_SIGNAL, EPERM},
    {"rt_tgsigqueueinfo", R_SELF_SIGNAL, EPERM},
    DENY("pidfd_send_signal", EPERM), DENY("pidfd_open", EPERM),
    /* identity, time, scheduling: read-only queries */
    ALLOW("getpid"), ALLOW("gettid"), ALLOW("getppid"), ALLOW("getuid"),
    ALLOW("geteuid"), ALLOW("getgid"), ALLOW("getegid"), ALLOW("getgroups"),
    ALLOW("getresuid"), ALLOW("getresgid"), ALLOW("getpgrp"), ALLOW("getpgid"),
    ALLOW("getsid"), ALLOW("capget"), ALLOW("uname"), ALLOW("sysinfo"),
    ALLOW("getrandom"), ALLOW("getrusage"), ALLOW("times"),
    ALLOW("clock_gettime"), ALLOW("clock_getres"), ALLOW("gettimeofday"),
    ALLOW("time"), ALLOW("nanosleep"), ALLOW("clock_nanosleep"),
    ALLOW("sched_yield"), ALLOW("sched_getaffinity"), ALLOW("sched_getparam"),
    ALLOW("sched_getscheduler"), ALLOW("getpriority"), ALLOW("getrlimit"),
    {"prlimit64", R_PRLIMIT_GET, 0},
    /* threads (clone is conditional), futexes, exit */
    ALLOW("futex"), ALLOW("set_robust_list"), ALLOW("get_robust_list"),
    ALLOW("set_tid_address"), ALLOW("rseq"), ALLOW("membarrier"),
    ALLOW("arch_prctl"), ALLOW("exit"), ALLOW("exit_group"), ALLOW("wait4"),
    ALLOW("waitid"),
    /* process creation: never, except threads when the limits allow them, and
     * the forks the zygote asks a snapshot for (user notification). clone3
     * passes its flags in memory, so answer ENOSYS and let the thread library
     * fall back to clone, whose flags the filter can check. */
    {"clone", R_CLONE, EPERM}, DENY("clone3", ENOSYS),
    {"fork", R_FORK, EPERM}, {"vfork", R_FORK, EPERM},
    /* no raising of limits, no identity changes */
    DENY("setrlimit", EPERM), DENY("setpriority", EPERM),
    DENY("setuid", EPERM), DENY("setgid", EPERM), DENY("setreuid", EPERM),
    DENY("setregid", EPERM), DENY("setresuid", EPERM), DENY("setresgid", EPERM),
    DENY("setgroups", EPERM), DENY("setfsuid", EPERM), DENY("setfsgid", EPERM),
    DENY("capset", EPERM), {"prctl", R_PDEATHSIG, EPERM}, DENY("setsid", EPERM),
    {"setpgid", R_OWN_GROUP, EPERM},
    /* network */
    DENY("socket", EACCES), DENY("socketpair", EACCES), DENY("connect", EACCES),
    DENY("bind", EACCES), DENY("listen", EACCES), DENY("accept", EACCES),
    DENY("accept4", EACCES), DENY("sendto", EACCES), DENY("recvfrom", EACCES),
    DENY("sendmsg", EACCES), DENY("recvmsg", EACCES), DENY("sendmmsg", EACCES),
    DENY("recvmmsg", EACCES), DENY("shutdown", EACCES),
    DENY("getsockopt", EACCES), DENY("setsockopt", EACCES),
    DENY("getsockname", EACCES), DENY("getpeername", EACCES),
    /* only an escape attempt uses these: kill the process */
    KILL("execve"), KILL("execveat"), KILL("ptrace"),
    KILL("process_vm_readv"), KILL("process_vm_writev"), KILL("pidfd_getfd"),
    KILL("mount"), KILL("umount2"), KILL("pivot_root"), KILL("chroot"),
    KILL("move_mount"), KILL("open_tree"), KILL("fsopen"), KILL("fsconfig"),
    KILL("fsmount"), KILL("fspick"), KILL("mount_setattr"),
    KILL("unshare"), KILL("setns"), KILL("bpf"), KILL("perf_event_open"),
    KILL("userfaultfd"), KILL("keyctl"), KILL("add_key"), KILL("request_key"),
    KILL("kexec_load"), KILL("kexec_file_load"), KILL("init_module"),
    KILL("finit_module"), KILL("delete_module"), KILL("reboot"),
    KILL("swapon"), KILL("swapoff"), KILL("open_by_handle_at"),
    KILL("name_to_handle_at"), KILL("io_uring_setup"), KILL("io_uring_enter"),
    KILL("io_uring_register"), KILL("fanotify_init"), KILL("quotactl"),
    KILL("acct"), KILL("iopl"), KILL("ioperm"), KILL("settimeofday"),
    KILL("clock_settime"), KILL("clock_adjtime"), KILL("adjtimex"),
    KILL("syslog"), KILL("vhangup"), KILL("personality"),
};

/* clang-format on */

#define DEFAULT_ERRNO EPERM
#define POLICY_LEN    ((int)(sizeof POLICY / sizeof POLICY[0]))

/* Flags that let open() create, truncate or write a file. */
#define OPEN_WRITE_FLAGS (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND)

static int add_rule(scmp_filter_ctx ctx, const struct rule *r, enum sbx_filter variant)
{
    bool notify = variant == SBX_FILTER_NOTIFY;
    int nr = seccomp_syscall_resolve_name(r->name);
    if (nr == __NR_SCMP_ERROR)
        return 0; /* not a syscall on this architecture */
    switch (r->kind) {
    case R_ALLOW:
        return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    case R_ERRNO:
        /* libseccomp refuses a rule equal to the default action; the table
         * still lists such syscalls so that a review sees them. */
        if (r->err == DEFAULT_ERRNO)
            return 0;
        return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(r->err), nr, 0);
    case R_KILL:
        return seccomp_rule_add(ctx, SCMP_ACT_KILL_PROCESS, nr, 0);
    case R_OPEN_RDONLY: {
        unsigned arg = strcmp(r->name, "open") == 0 ? 1 : 2;
        return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
                                SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, OPEN_WRITE_FLAGS, 0));
    }
    case R_CLONE:
        if (notify)
            return seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, nr, 0);
        if (variant != SBX_FILTER_THREADS)
            return 0; /* the default action answers EPERM */
        return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
                                SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    case R_FORK:
        return notify ? seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, nr, 0) : 0;
    case R_PDEATHSIG:
        return notify ? seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 2,
                                         SCMP_A0(SCMP_CMP_EQ, PR_SET_PDEATHSIG),
                                         SCMP_A1(SCMP_CMP_EQ, SIGKILL))
                      : 0;
    case R_OWN_GROUP:
        return notify ? seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 2, SCMP_A0(SCMP_CMP_EQ, 0),
                                         SCMP_A1(SCMP_CMP_EQ, 0))
                      : 0;
    case R_PRLIMIT_GET: {
        int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1, SCMP_A2(SCMP_CMP_EQ, 0));
        /* A process forked from a snapshot sets its own CPU limit to what its
         * program has left (the zygote may lack the capability to). Without
         * CAP_SYS_RESOURCE a hard limit only goes down, and moving the soft
         * one up to it is no more than ignoring SIGXCPU already gives. */
        if (rc == 0 && notify)
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 2, SCMP_A0(SCMP_CMP_EQ, 0),
                                  SCMP_A1(SCMP_CMP_EQ, RLIMIT_CPU));
        return rc;
    }
    case R_SELF_SIGNAL:
        /* The mark becomes the child's pid when it loads the filter
         * (sbx_policy_bind_pid); only the low 32 bits carry a pid_t. */
        return notify
                   ? seccomp_rule_add(ctx, SCMP_ACT_NOTIFY, nr, 0)
                   : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
                                      SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, SBX_SELF_PID_MARK));
    }
    return -EINVAL;
}

static bool is_pid_mark(const struct sock_filter *insn)
{
    return insn->code == (BPF_JMP | BPF_JEQ | BPF_K) && insn->k == SBX_SELF_PID_MARK;
}

int sbx_policy_bind_pid(struct sock_fprog *prog, pid_t pid)
{
    int n = 0;
    for (unsigned short i = 0; i < prog->len; i++)
        if (is_pid_mark(&prog->filter[i])) {
            prog->filter[i].k = (uint32_t)pid;
            n++;
        }
    return n;
}

static int build(enum sbx_filter variant, scmp_filter_ctx *out)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(DEFAULT_ERRNO));
    if (!ctx)
        return -ENOMEM;
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    /* The child sets no_new_privs itself, in its ordered setup. */
    if (rc == 0)
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    for (int i = 0; rc == 0 && i < POLICY_LEN; i++)
        rc = add_rule(ctx, &POLICY[i], variant);
    if (rc < 0) {
        seccomp_release(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

int sbx_policy_compile(enum sbx_filter variant, struct sock_fprog *out)
{
    scmp_filter_ctx ctx = NULL;
    sbx_cleanup_fd int fd = -1;
    int rc = build(variant, &ctx);
    if (rc < 0)
        return rc;
    /* libseccomp 2.5 exports BPF only to an fd: go through a memfd. */
    fd = (int)syscall(SYS_memfd_create, "sbx-bpf", 0u);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0)
        goto out;
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || size % sizeof(struct sock_filter) != 0) {
        rc = -EINVAL;
        goto out;
    }
    struct sock_filter *insns = malloc((size_t)size);
    if (!insns) {
        rc = -ENOMEM;
        goto out;
    }
    if (SBX_RETRY(pread(fd, insns, (size_t)size, 0)) != size) {
        free(insns);
        rc = -EIO;
        goto out;
    }
    out->filter = insns;
    out->len = (unsigned short)(size / sizeof(struct sock_filter));
    /* The self-signal rules must have left their marks for the children. */
    int marks = 0;
    for (unsigned short i = 0; i < out->len; i++)
        marks += is_pid_mark(&insns[i]);
    if (variant != SBX_FILTER_NOTIFY && marks == 0) {
        free(insns);
        out->filter = NULL;
        rc = -EINVAL;
    }
out:
    seccomp_release(ctx);
    return rc;
}

int sbx_policy_dump(enum sbx_filter variant, int fd)
{
    scmp_filter_ctx ctx = NULL;
    int rc = build(variant, &ctx);
    if (rc < 0)
        return rc;
    rc = seccomp_export_pfc(ctx, fd);
    seccomp_release(ctx);
    return rc;
}

int sbx_policy_load(const struct sock_fprog *prog)
{
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog, 0, 0) < 0 ? -errno : 0;
}

int sbx_policy_load_notify(const struct sock_fprog *prog)
{
    long fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, prog);
    return fd < 0 ? -errno : (int)fd;
}

const char *sbx_policy_notify_unsupported(void)
{
    /* API level 5: user notification; 6 adds what CONTINUE needs. */
    if (seccomp_api_get() < 6)
        return "libseccomp or the kernel lacks seccomp user notification (API level < 6)";
    struct utsname u;
    int major = 0, minor = 0;
    if (uname(&u) == 0 && sscanf(u.release, "%d.%d", &major, &minor) == 2 &&
        (major < 5 || (major == 5 && minor < 9)))
        return "the kernel is older than 5.9 (no SECCOMP_IOCTL_NOTIF_ADDFD)";
    if (syscall(SYS_pidfd_getfd, -1, 0, 0) < 0 && errno == ENOSYS)
        return "the kernel has no pidfd_getfd";
    return NULL;
}

int sbx_syscall_number(const char *name)
{
    int nr = seccomp_syscall_resolve_name(name);
    return nr == __NR_SCMP_ERROR || nr < 0 ? -1 : nr;
}

int sbx_policy_entry(int index, const char **name, const char **action, int *err)
{
    static const char *const KIND_NAMES[] = {
        [R_ALLOW] = "allow",
        [R_ERRNO] = "errno",
        [R_KILL] = "kill",
        [R_OPEN_RDONLY] = "allow-if",
        [R_CLONE] = "allow-if",
        /* errno, except in SBX_FILTER_NOTIFY: */
        [R_FORK] = "errno/notify",
        [R_PDEATHSIG] = "errno/allow-if",
        [R_OWN_GROUP] = "errno/allow-if",
        [R_PRLIMIT_GET] = "allow-if",
        /* allowed only with the process's own pid; notify in SBX_FILTER_NOTIFY */
        [R_SELF_SIGNAL] = "self-only",
    };
    if (index < 0 || index >= POLICY_LEN)
        return POLICY_LEN;
    *name = POLICY[index].name;
    *action = KIND_NAMES[POLICY[index].kind];
    *err = POLICY[index].err;
    return POLICY_LEN;
}
