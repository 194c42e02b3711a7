/* Wire format between the caller (Python, sandbox/_protocol.py) and a zygote.
 * Little-endian packed structs followed by their variable-length payloads.
 * Keep in sync with the struct formats in sandbox/_protocol.py. */
#ifndef SBX_PROTOCOL_H
#define SBX_PROTOCOL_H

#include <stdint.h>

#define SBX_REQUEST_MAGIC 0x53425831u /* "SBX1" */

/* Request flags. */
#define SBX_FLAG_ALLOW_THREADS 1u

/* Outcome classes; the numbering is mirrored by sandbox.Status. */
enum sbx_status {
    SBX_OK = 0,
    SBX_ERROR = 1,
    SBX_TIMEOUT = 2,
    SBX_MEMORY = 3,
    SBX_OUTPUT_LIMIT = 4,
    SBX_KILLED = 5,
    SBX_SANDBOX_ERROR = 6,
};

/* Frame kinds sent by the zygote. */
enum sbx_frame_kind {
    SBX_FRAME_RESULT = 1,  /* a program finished */
    SBX_FRAME_DEMOTED = 2, /* a program ran long and was moved to low priority */
};

struct __attribute__((packed)) sbx_request {
    uint32_t magic;
    uint32_t code_len;
    uint64_t id;
    double wall_s;
    double cpu_s;
    uint64_t memory_bytes;
    uint64_t output_bytes;
    uint32_t flags;
    /* followed by code_len bytes of program source */
};

/* The last bytes a child writes to its report pipe, after its output is
 * flushed and just before it closes its pipes and exits: the zygote answers on
 * seeing it, without waiting for the kernel to tear the process down. */
#define SBX_TRAILER_MAGIC 0x44584253u /* "SBXD" */
struct __attribute__((packed)) sbx_trailer {
    uint32_t magic;
    int32_t exit_code;
    double cpu_s;
    int64_t peak_rss_kb;
};

struct __attribute__((packed)) sbx_response {
    uint32_t kind;
    int32_t status;
    uint64_t id;
    double wall_s;
    double cpu_s;
    double peak_rss_mb;
    int32_t exit_code;   /* -1 when killed by a signal */
    int32_t term_signal; /* 0 when it exited */
    uint32_t truncated;
    uint32_t stdout_len;
    uint32_t stderr_len;
    uint32_t error_len;
    /* followed by stdout, stderr and the error line */
};

#endif
