#include "landlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

/* Declared here so that the build does not depend on the installed kernel
 * headers knowing the newest ABI. Values from include/uapi/linux/landlock.h. */
#define LL_SYS_CREATE_RULESET     444
#define LL_SYS_ADD_RULE           445
#define LL_SYS_RESTRICT_SELF      446
#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_RULE_PATH_BENEATH      1

#define FS_EXECUTE          (1ULL << 0)
#define FS_WRITE_FILE       (1ULL << 1)
#define FS_READ_FILE        (1ULL << 2)
#define FS_READ_DIR         (1ULL << 3)
#define FS_REMOVE_DIR       (1ULL << 4)
#define FS_REMOVE_FILE      (1ULL << 5)
#define FS_MAKE_CHAR        (1ULL << 6)
#define FS_MAKE_DIR         (1ULL << 7)
#define FS_MAKE_REG         (1ULL << 8)
#define FS_MAKE_SOCK        (1ULL << 9)
#define FS_MAKE_FIFO        (1ULL << 10)
#define FS_MAKE_BLOCK       (1ULL << 11)
#define FS_MAKE_SYM         (1ULL << 12)
#define FS_REFER            (1ULL << 13) /* ABI 2 */
#define FS_TRUNCATE         (1ULL << 14) /* ABI 3 */
#define FS_IOCTL_DEV        (1ULL << 15) /* ABI 5 */
#define NET_BIND_TCP        (1ULL << 0)  /* ABI 4 */
#define NET_CONNECT_TCP     (1ULL << 1)
#define SCOPE_ABSTRACT_UNIX (1ULL << 0) /* ABI 6 */
#define SCOPE_SIGNAL        (1ULL << 1)

struct ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

struct __attribute__((packed)) ll_path_beneath {
    uint64_t allowed_access;
    int32_t parent_fd;
};

int sbx_landlock_abi(void)
{
    long abi = syscall(LL_SYS_CREATE_RULESET, NULL, 0, LL_CREATE_RULESET_VERSION);
    return abi < 0 ? -errno : (int)abi;
}

int sbx_landlock_ruleset_new(const char *const *paths, size_t n_paths)
{
    int abi = sbx_landlock_abi();
    if (abi < 0)
        return abi;
    struct ll_ruleset_attr attr = {
        .handled_access_fs = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_READ_DIR |
                             FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_CHAR | FS_MAKE_DIR |
                             FS_MAKE_REG | FS_MAKE_SOCK | FS_MAKE_FIFO | FS_MAKE_BLOCK |
                             FS_MAKE_SYM,
    };
    size_t attr_size = sizeof attr.handled_access_fs;
    if (abi >= 2)
        attr.handled_access_fs |= FS_REFER;
    if (abi >= 3)
        attr.handled_access_fs |= FS_TRUNCATE;
    if (abi >= 5)
        attr.handled_access_fs |= FS_IOCTL_DEV;
    if (abi >= 4) {
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP;
        attr_size = offsetof(struct ll_ruleset_attr, scoped);
    }
    if (abi >= 6) {
        attr.scoped = SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL;
        attr_size = sizeof attr;
    }
    int ruleset = (int)syscall(LL_SYS_CREATE_RULESET, &attr, attr_size, 0u);
    if (ruleset < 0)
        return -errno;
    for (size_t i = 0; i < n_paths; i++) {
        sbx_cleanup_fd int fd = open(paths[i], O_PATH | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
            continue;
        struct ll_path_beneath rule = {
            .allowed_access = FS_EXECUTE | FS_READ_FILE,
            .parent_fd = fd,
        };
        if (S_ISDIR(st.st_mode))
            rule.allowed_access |= FS_READ_DIR;
        if (syscall(LL_SYS_ADD_RULE, ruleset, LL_RULE_PATH_BENEATH, &rule, 0u) < 0) {
            int err = errno;
            close(ruleset);
            return -err;
        }
    }
    return ruleset;
}

int sbx_landlock_enforce(int ruleset_fd)
{
    return syscall(LL_SYS_RESTRICT_SELF, ruleset_fd, 0u) < 0 ? -errno : 0;
}
