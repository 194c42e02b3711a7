/* The seccomp policy: one table of syscalls and actions (policy.c), compiled
 * once per zygote into a BPF program that children load with one syscall. */
#ifndef SBX_POLICY_H
#define SBX_POLICY_H

#include <linux/filter.h>
#include <stdbool.h>
#include <sys/types.h>

/* Stands for "the child's own pid" in the compiled policy until the child
 * binds it; above any pid the kernel hands out (PID_MAX_LIMIT is 2^22). */
#define SBX_SELF_PID_MARK 0x5EEDF00Du

/* The policy's variants. */
enum sbx_filter {
    SBX_FILTER_PLAIN,   /* no process or thread creation */
    SBX_FILTER_THREADS, /* threads allowed */
    /* Process creation goes to the zygote as a seccomp user notification
     * (it lets through only the forks it asked for); a forked process may
     * make itself a process group and ask for death with its parent. */
    SBX_FILTER_NOTIFY,
};

/* Compile the policy; on success *out holds a malloc'ed BPF program.
 * 0 or -errno. */
int sbx_policy_compile(enum sbx_filter variant, struct sock_fprog *out);
/* Write the human-readable (PFC) form of the policy to fd; 0 or -errno. */
int sbx_policy_dump(enum sbx_filter variant, int fd);
/* In a freshly forked child's own copy of a compiled plain or threads
 * program: make the self-signal rules name `pid`. Returns the rules bound. */
int sbx_policy_bind_pid(struct sock_fprog *prog, pid_t pid);
/* Load a compiled program into the calling thread; 0 or -errno. */
int sbx_policy_load(const struct sock_fprog *prog);
/* Load a SBX_FILTER_NOTIFY program; returns its listener fd or -errno. */
int sbx_policy_load_notify(const struct sock_fprog *prog);
/* Whether this kernel and libseccomp support what snapshots need (user
 * notification with CONTINUE, adding descriptors, pidfd_getfd): NULL if
 * so, else the reason. */
const char *sbx_policy_notify_unsupported(void);
/* This architecture's number of a syscall, or -1 if it has none. */
int sbx_syscall_number(const char *name);
/* The table itself, for review and for tests: name and action of each entry.
 * Returns the number of entries; action is "allow", "allow-if", "errno" or "kill",
 * "self-only" (signals: to the process itself only), or "errno/notify",
 * "errno/allow-if" for what SBX_FILTER_NOTIFY treats apart. */
int sbx_policy_entry(int index, const char **name, const char **action, int *err);

#endif
