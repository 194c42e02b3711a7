/* The seccomp policy: one table of syscalls and actions (policy.c), compiled
 * once per zygote into a BPF program that children load with one syscall. */
#ifndef SBX_POLICY_H
#define SBX_POLICY_H

#include <linux/filter.h>
#include <stdbool.h>

/* Compile the policy; on success *out holds a malloc'ed BPF program.
 * 0 or -errno. */
int sbx_policy_compile(bool allow_threads, struct sock_fprog *out);
/* Write the human-readable (PFC) form of the policy to fd; 0 or -errno. */
int sbx_policy_dump(bool allow_threads, int fd);
/* Load a compiled program into the calling thread; 0 or -errno. */
int sbx_policy_load(const struct sock_fprog *prog);
/* The table itself, for review and for tests: name and action of each entry.
 * Returns the number of entries; action is "allow", "allow-if", "errno" or "kill". */
int sbx_policy_entry(int index, const char **name, const char **action, int *err);

#endif
