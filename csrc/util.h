/* Small helpers shared by the sandbox's C units: EINTR retry, scoped fd
 * cleanup, full writes, a monotonic clock, CPU seconds of an rusage. Library code returns 0 or
 * -errno. */
#ifndef SBX_UTIL_H
#define SBX_UTIL_H

#include <errno.h>
#include <stddef.h>
#include <sys/resource.h>
#include <unistd.h>

#define SBX_RETRY(expr)                                                                            \
    ({                                                                                             \
        long sbx_r_;                                                                               \
        do                                                                                         \
            sbx_r_ = (long)(expr);                                                                 \
        while (sbx_r_ == -1 && errno == EINTR);                                                    \
        sbx_r_;                                                                                    \
    })

static inline void sbx_close_fdp(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}
#define sbx_cleanup_fd __attribute__((cleanup(sbx_close_fdp)))

/* Write all of buf to a blocking fd; 0 or -errno. */
int sbx_write_all(int fd, const void *buf, size_t len);
/* Seconds on CLOCK_MONOTONIC. */
double sbx_now(void);
/* Set or clear O_NONBLOCK; 0 or -errno. */
int sbx_set_nonblock(int fd, int on);
/* User plus system CPU seconds. */
double sbx_rusage_cpu(const struct rusage *ru);

#endif
