/* Landlock: children may read (and map) the interpreter's files and write
 * nothing; signals out of their own domain are refused where the kernel
 * scopes them (ABI 6). The ruleset is built once per zygote. */
#ifndef SBX_LANDLOCK_H
#define SBX_LANDLOCK_H

#include <stddef.h>

/* The kernel's Landlock ABI version, or -errno when it has none. */
int sbx_landlock_abi(void);
/* Build a ruleset granting read access beneath each of `paths` (missing
 * paths are skipped). Returns the ruleset fd or -errno. */
int sbx_landlock_ruleset_new(const char *const *paths, size_t n_paths);
/* Enforce the ruleset on the calling thread (needs no_new_privs); 0 or -errno. */
int sbx_landlock_enforce(int ruleset_fd);

#endif
