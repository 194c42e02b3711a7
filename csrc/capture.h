/* Bounded byte buffers: a child's stdout/stderr are drained into these.
 * Past `limit` bytes the rest is dropped and `truncated` is set. */
#ifndef SBX_CAPTURE_H
#define SBX_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>

struct sbx_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t limit; /* 0 = unbounded */
    bool truncated;
};

/* Append up to the limit; 0 or -ENOMEM. */
int sbx_buf_append(struct sbx_buf *b, const void *p, size_t n);
/* Drop the first n bytes (consumed by a parser or a writer). */
void sbx_buf_consume(struct sbx_buf *b, size_t n);
/* One non-blocking read from fd into b: bytes read (>0), 0 at EOF,
 * or -errno (-EAGAIN when nothing is ready). Bytes past the limit are read
 * and discarded so that the writer never blocks on a full pipe. */
long sbx_buf_read_fd(struct sbx_buf *b, int fd);
void sbx_buf_free(struct sbx_buf *b);

#endif
