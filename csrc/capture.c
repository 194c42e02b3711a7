#include "capture.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

static int reserve(struct sbx_buf *b, size_t need)
{
    if (b->cap >= need)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int sbx_buf_append(struct sbx_buf *b, const void *p, size_t n)
{
    if (b->limit && b->len + n > b->limit) {
        n = b->limit - b->len;
        b->truncated = true;
    }
    if (n == 0)
        return 0;
    int rc = reserve(b, b->len + n);
    if (rc < 0)
        return rc;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void sbx_buf_consume(struct sbx_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

long sbx_buf_read_fd(struct sbx_buf *b, int fd)
{
    char chunk[65536];
    ssize_t n = SBX_RETRY(read(fd, chunk, sizeof chunk));
    if (n < 0)
        return -errno;
    if (n > 0) {
        int rc = sbx_buf_append(b, chunk, (size_t)n);
        if (rc < 0)
            return rc;
    }
    return n;
}

void sbx_buf_free(struct sbx_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
