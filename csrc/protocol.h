/* Wire format between the caller (Python, sandbox/_protocol.py) and a zygote.
 * Little-endian packed structs followed by their variable-length payloads.
 * Keep in sync with the struct formats in sandbox/_protocol.py. */
#ifndef SBX_PROTOCOL_H
#define SBX_PROTOCOL_H

#include <stdint.h>

#define SBX_REQUEST_MAGIC 0x53425831u /* "SBX1" */

/* Request flags. */
#define SBX_FLAG_ALLOW_THREADS 1u
/* A program of steps that is the last its caller has for its prefix (all but
 * its last step): it may run in that prefix's snapshot itself instead of a
 * fork of it, and the snapshot is gone afterwards. Not part of the limits. */
#define SBX_FLAG_RELEASE_PREFIX 2u
/* A program of steps whose end state its caller expects to extend: keep it
 * as a snapshot. Without it the process ends with its program, so a batch
 * whose prefixes are never reused pays for no snapshot. Not part of the
 * limits. */
#define SBX_FLAG_KEEP_END 4u
/* Zygote -> snapshot only: run this job in the snapshot's own process, on
 * its descriptors, without forking (the last program for that prefix). */
#define SBX_FLAG_IN_PLACE 8u

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
    /* 0: the payload is one program's source. Otherwise the payload is
     * n_steps records (uint32 length, then the step's source): a program
     * given as steps, which may run from and leave prefix snapshots. */
    uint32_t n_steps;
    /* In a job sent to a snapshot: the steps that snapshot already ran. */
    uint32_t first_step;
    /* A program of steps: keep the state after each of its first snap_at
     * steps (0: none) as a snapshot, because other programs of the caller
     * share that prefix (each one, in case a later step of it fails). */
    uint32_t snap_at;
    /* In a job sent to a snapshot: the lines of this program before its
     * first step, so that tracebacks number lines as in the whole program
     * (the snapshot's own prefix may differ in trailing blank lines). */
    uint32_t first_line;
    /* followed by code_len bytes of payload */
};

/* What a child tells the zygote on its report pipe: a sequence of marks,
 * each maybe followed by `len` payload bytes. A setup failure is plain text
 * instead ("S<step>:<error>"). */
#define SBX_MARK_MAGIC 0x4D584253u /* "SBXM" */
enum sbx_mark_kind {
    /* The program ended; payload: its report ("E<error line>", "M..." or
     * nothing). Written after its output is flushed: the zygote answers on
     * it without waiting for the kernel to tear the process down. */
    SBX_MARK_END = 1,
    /* A step ended normally; the child waits for SBX_CMD_FORK or _CONTINUE. */
    SBX_MARK_STEP = 2,
    /* A spare installed the filter that notifies the zygote of process
     * creation; its listener is at SBX_CHILD_LISTENER_FD until SBX_CMD_GO. */
    SBX_MARK_LISTENER = 3,
    /* A process forked through the zygote says who it is (first thing). */
    SBX_MARK_PID = 4,
};
/* SBX_MARK_END flags. */
/* Every step ran and ended normally: the process may be kept. Its stdout
 * and stderr stay open (a program may continue in it); everything it
 * printed was written to them before this mark. */
#define SBX_END_CLEAN   1u
#define SBX_END_UNSPLIT 2u /* these steps cannot run one by one: run from scratch */

struct __attribute__((packed)) sbx_mark {
    uint32_t magic;
    uint32_t kind;
    int32_t exit_code;
    uint32_t flags;
    double cpu_s;
    int64_t peak_rss_kb;
    int32_t pid;
    uint32_t len;
    /* Pages this process made its own since it was forked (minor faults):
     * what it costs as a snapshot, without reading /proc. */
    uint64_t private_kb;
};

/* One-byte commands on a child's job pipe, besides jobs (an sbx_request). */
#define SBX_CMD_GO       'G' /* the listener is taken: run the program */
#define SBX_CMD_FORK     'F' /* keep a snapshot of this step's end state */
#define SBX_CMD_CONTINUE 'C' /* go on without one */

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
    uint32_t snapshot_steps; /* leading steps that came from a snapshot */
    uint32_t live_snapshots; /* snapshots this zygote holds now */
    double snapshot_mb;      /* their private memory */
    /* followed by stdout, stderr and the error line */
};

#endif
