/* The zygote's side of the wire (protocol.h): requests parsed off the
 * caller's byte stream into a queue, and response frames appended to the
 * bytes that go back. Knows nothing of children. */
#ifndef SBX_WIRE_H
#define SBX_WIRE_H

#include <stdbool.h>
#include <stdint.h>

#include "capture.h"
#include "protocol.h"

struct request {
    struct sbx_request hdr;
    char *code;
    uint32_t *step_end; /* for a program of steps: where each step's record ends */
    /* The steps as snapshots are keyed: each step's first line, its length
     * without trailing whitespace, and that text. Steps that differ only in
     * trailing whitespace share snapshots when they start on the same lines. */
    char *key;
    uint32_t *key_end;
    bool scratch; /* run it from scratch: no snapshot may take it */
    struct request *next;
};

/* Requests waiting for a child, in arrival order (reruns go first). */
struct request_queue {
    struct request *head, *tail;
};

/* Move every complete request at the front of `in` to the back of q;
 * 0, or -EPROTO / -ENOMEM. */
int sbx_wire_parse(struct sbx_buf *in, struct request_queue *q);
void sbx_request_free(struct request *r);
/* The line a program's step starts on, counted from 0. */
uint32_t sbx_step_first_line(const struct request *r, uint32_t step);

/* Put r at the front of q again; `scratch`: no snapshot may take it. */
void sbx_queue_push_front(struct request_queue *q, struct request *r, bool scratch);
/* Unlink r (whose predecessor is prev, or NULL at the head); returns what
 * followed it. */
struct request *sbx_queue_unlink(struct request_queue *q, struct request *prev, struct request *r);
void sbx_queue_clear(struct request_queue *q);

/* Append a frame: its header, then stdout, stderr (either may be NULL) and
 * the error line; 0 or -ENOMEM. */
int sbx_wire_frame(struct sbx_buf *out, const struct sbx_response *hdr, const struct sbx_buf *so,
                   const struct sbx_buf *se, const char *error, size_t error_len);
/* Write what `out` holds to a non-blocking fd; 0 (also when it would
 * block) or -errno. */
int sbx_wire_flush(struct sbx_buf *out, int fd);

#endif
