"""Framing between the caller and a zygote; mirrors csrc/protocol.h."""

from __future__ import annotations

import json
import struct

from sandbox._types import Limits, Result, Status

REQUEST_MAGIC = 0x53425831
ALLOW_THREADS = 1
RELEASE_PREFIX = 2
KEEP_END = 4
FRAME_RESULT = 1
FRAME_DEMOTED = 2

# struct sbx_request: magic, code_len, id, wall_s, cpu_s, memory_bytes, output_bytes, flags,
# n_steps, first_step, snap_at, first_line
REQUEST = struct.Struct("<IIQddQQIIIII")
STEP_LENGTH = struct.Struct("<I")
# struct sbx_response: kind, status, id, wall_s, cpu_s, peak_rss_mb, exit_code,
# term_signal, truncated, stdout_len, stderr_len, error_len, snapshot_steps,
# live_snapshots, snapshot_mb
RESPONSE = struct.Struct("<iiQdddiiIIIIIId")
# The zygote's first message: a length-prefixed JSON object.
READY = struct.Struct("<I")


def encode_steps(steps: list[bytes]) -> bytes:
    """A program of steps as its payload: each step's length, then its source."""
    return b"".join(STEP_LENGTH.pack(len(step)) + step for step in steps)


def encode_request(
    request_id: int,
    code: bytes,
    limits: Limits,
    n_steps: int = 0,
    release_prefix: bool = False,
    keep_end: bool = False,
    snap_at: int = 0,
) -> bytes:
    """`code` is one program's source, or (n_steps > 0) encode_steps' payload;
    `release_prefix`, `keep_end`, `snap_at`: see SBX_FLAG_RELEASE_PREFIX,
    SBX_FLAG_KEEP_END and sbx_request.snap_at in csrc/protocol.h."""
    header = REQUEST.pack(
        REQUEST_MAGIC,
        len(code),
        request_id,
        float(limits.wall_s),
        float(limits.cpu_s),
        int(limits.memory_mb) * 1024 * 1024,
        int(limits.output_bytes),
        (ALLOW_THREADS if limits.allow_threads else 0)
        | (RELEASE_PREFIX if release_prefix else 0)
        | (KEEP_END if keep_end else 0),
        n_steps,
        0,
        snap_at,
        0,
    )
    return header + code


def encode_ready(info: dict[str, object]) -> bytes:
    body = json.dumps(info).encode()
    return READY.pack(len(body)) + body


Frame = tuple[int, int, "Result | None", tuple[int, float]]


def decode_frames(buf: bytearray) -> list[Frame]:
    """Take every complete frame off the front of `buf`.

    Returns (kind, request id, result, (live snapshots, their MiB)) tuples;
    the result is None for FRAME_DEMOTED.
    """
    frames: list[Frame] = []
    offset = 0
    while len(buf) - offset >= RESPONSE.size:
        (
            kind,
            status,
            request_id,
            wall_s,
            cpu_s,
            rss,
            exit_code,
            term_signal,
            truncated,
            out_len,
            err_len,
            error_len,
            snapshot_steps,
            live,
            live_mb,
        ) = RESPONSE.unpack_from(buf, offset)
        end = offset + RESPONSE.size + out_len + err_len + error_len
        if len(buf) < end:
            break
        if kind == FRAME_DEMOTED:
            frames.append((kind, request_id, None, (live, live_mb)))
            offset = end
            continue
        pos = offset + RESPONSE.size
        stdout = bytes(buf[pos : pos + out_len]).decode("utf-8", "replace")
        pos += out_len
        stderr = bytes(buf[pos : pos + err_len]).decode("utf-8", "replace")
        pos += err_len
        error = bytes(buf[pos : pos + error_len]).decode("utf-8", "replace") or None
        result = Result(
            status=Status.from_code(status),
            stdout=stdout,
            stderr=stderr,
            error=error,
            wall_s=wall_s,
            cpu_s=cpu_s,
            peak_rss_mb=rss,
            truncated=bool(truncated),
            exit_code=exit_code if exit_code >= 0 else None,
            signal=term_signal or None,
            snapshot_steps=snapshot_steps,
        )
        frames.append((kind, request_id, result, (live, live_mb)))
        offset = end
    del buf[:offset]
    return frames
