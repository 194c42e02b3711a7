#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

void sbx_request_free(struct request *r)
{
    if (r) {
        free(r->code);
        free(r->step_end);
        free(r->key);
        free(r->key_end);
        free(r);
    }
}

static bool trailing_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* The snapshot key of a program of steps (see struct request). */
static int key_steps(struct request *r)
{
    uint32_t n = r->hdr.n_steps;
    /* Each record grows by 4 bytes: a first line instead of nothing. */
    r->key = malloc(r->hdr.code_len + (size_t)n * 4);
    r->key_end = malloc(n * sizeof *r->key_end);
    if (!r->key || !r->key_end)
        return -ENOMEM;
    size_t pos = 0, out = 0;
    uint32_t line = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *text = r->code + pos + 4;
        uint32_t len = r->step_end[i] - (uint32_t)pos - 4, kept = len;
        while (kept > 0 && trailing_space(text[kept - 1]))
            kept--;
        memcpy(r->key + out, &line, 4);
        memcpy(r->key + out + 4, &kept, 4);
        memcpy(r->key + out + 8, text, kept);
        out += 8 + kept;
        r->key_end[i] = (uint32_t)out;
        line += 1;
        for (uint32_t j = 0; j < len; j++)
            line += text[j] == '\n';
        pos = r->step_end[i];
    }
    return 0;
}

uint32_t sbx_step_first_line(const struct request *r, uint32_t step)
{
    uint32_t line;
    memcpy(&line, r->key + (step ? r->key_end[step - 1] : 0), 4);
    return line;
}

/* Index the step records of a program of steps; -EPROTO if they do not fill
 * the payload exactly. */
static int index_steps(struct request *r)
{
    if (!r->hdr.n_steps)
        return 0;
    r->step_end = malloc(r->hdr.n_steps * sizeof *r->step_end);
    if (!r->step_end)
        return -ENOMEM;
    size_t pos = 0;
    for (uint32_t i = 0; i < r->hdr.n_steps; i++) {
        uint32_t len;
        if (r->hdr.code_len - pos < sizeof len)
            return -EPROTO;
        memcpy(&len, r->code + pos, sizeof len);
        if (r->hdr.code_len - pos - sizeof len < len)
            return -EPROTO;
        pos += sizeof len + len;
        r->step_end[i] = (uint32_t)pos;
    }
    return pos == r->hdr.code_len ? key_steps(r) : -EPROTO;
}

static void push_back(struct request_queue *q, struct request *r)
{
    if (q->tail)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
}

int sbx_wire_parse(struct sbx_buf *in, struct request_queue *q)
{
    while (in->len >= sizeof(struct sbx_request)) {
        struct sbx_request hdr;
        memcpy(&hdr, in->data, sizeof hdr);
        if (hdr.magic != SBX_REQUEST_MAGIC)
            return -EPROTO;
        size_t total = sizeof hdr + hdr.code_len;
        if (in->len < total)
            return 0;
        struct request *r = calloc(1, sizeof *r);
        char *code = malloc(hdr.code_len + 1);
        if (!r || !code) {
            free(r);
            free(code);
            return -ENOMEM;
        }
        memcpy(code, in->data + sizeof hdr, hdr.code_len);
        code[hdr.code_len] = '\0';
        r->hdr = hdr;
        r->hdr.first_step = r->hdr.first_line = 0;
        r->code = code;
        int rc = index_steps(r);
        if (rc < 0) {
            sbx_request_free(r);
            return rc;
        }
        push_back(q, r);
        sbx_buf_consume(in, total);
    }
    return 0;
}

void sbx_queue_push_front(struct request_queue *q, struct request *r, bool scratch)
{
    r->scratch = r->scratch || scratch;
    r->next = q->head;
    q->head = r;
    if (!q->tail)
        q->tail = r;
}

struct request *sbx_queue_unlink(struct request_queue *q, struct request *prev, struct request *r)
{
    struct request *next = r->next;
    if (prev)
        prev->next = next;
    else
        q->head = next;
    if (q->tail == r)
        q->tail = prev;
    r->next = NULL;
    return next;
}

void sbx_queue_clear(struct request_queue *q)
{
    while (q->head) {
        struct request *r = q->head;
        q->head = r->next;
        sbx_request_free(r);
    }
    q->tail = NULL;
}

int sbx_wire_frame(struct sbx_buf *out, const struct sbx_response *hdr, const struct sbx_buf *so,
                   const struct sbx_buf *se, const char *error, size_t error_len)
{
    int rc = sbx_buf_append(out, hdr, sizeof *hdr);
    if (rc == 0 && so)
        rc = sbx_buf_append(out, so->data, so->len);
    if (rc == 0 && se)
        rc = sbx_buf_append(out, se->data, se->len);
    if (rc == 0 && error_len)
        rc = sbx_buf_append(out, error, error_len);
    return rc;
}

int sbx_wire_flush(struct sbx_buf *out, int fd)
{
    while (out->len) {
        ssize_t n = SBX_RETRY(write(fd, out->data, out->len));
        if (n < 0)
            return errno == EAGAIN ? 0 : -errno;
        sbx_buf_consume(out, (size_t)n);
    }
    return 0;
}
