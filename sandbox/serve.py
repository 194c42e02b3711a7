"""The sandbox over HTTP: SandboxFusion's `POST /run_code` (Python only), a
batch endpoint of our own and a health check.

    python -m sandbox serve [--host 127.0.0.1] [--port 8080] [--workers N] [--token-file F]

Clients of SandboxFusion (its `sandbox-fusion` package, verl's reward
functions, ...) switch by pointing their endpoint here. Every program runs
under the sandbox's full isolation and the server's limits: a request may
lower them, never raise them. Each request's programs join the sandbox's
running batch as they arrive (`Sandbox.submit`, see _bridge.py). A token, when set, is read from `Authorization: Bearer
TOKEN` or from the path (`/t/TOKEN/run_code`, for clients that send no
headers: give them `http://HOST:PORT/t/TOKEN` as the endpoint).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox._bridge import AsyncRunner, Busy, Runner
from sandbox._lineage import Lineage
from sandbox._sandbox import Program, Sandbox
from sandbox._types import Limits, Result, Status


@dataclass(frozen=True)
class ServeConfig:
    """What the server accepts. Limits are the most a request may ask for."""

    workers: int = 2
    limits: Limits = Limits(wall_s=10.0, cpu_s=10.0)  # SandboxFusion's default run_timeout is 10 s
    token: str | None = None
    max_body_bytes: int = 16 << 20
    max_code_bytes: int = 1 << 20
    max_batch: int = 1024
    max_in_flight: int = 4096
    # run_code strings cut along the programs run before them (see _lineage.py)
    cut_strings: bool = True


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# -- SandboxFusion's shapes (sandbox_fusion.models: RunCodeRequest/Response) --

UNSUPPORTED_FIELDS = ("files", "fetch_files", "stdin")


def fusion_request(body: dict[str, Any], ceiling: Limits) -> tuple[str, Limits]:
    """The program and limits of a SandboxFusion run_code request."""
    language = body.get("language")
    if language != "python":
        raise BadRequest(400, f"language {language!r} is not supported: this sandbox runs python only")
    code = body.get("code")
    if not isinstance(code, str):
        raise BadRequest(400, "code must be a string")
    for name in UNSUPPORTED_FIELDS:
        if body.get(name):
            raise BadRequest(400, f"{name} is not supported: programs run without files or stdin")
    timeout = body.get("run_timeout", ceiling.wall_s)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise BadRequest(400, f"run_timeout must be a positive number, got {timeout!r}")
    if timeout > ceiling.wall_s:
        raise BadRequest(400, f"run_timeout {timeout} is above this server's limit of {ceiling.wall_s} s")
    return code, Limits(
        wall_s=float(timeout),
        cpu_s=min(float(timeout), ceiling.cpu_s),
        memory_mb=ceiling.memory_mb,
        output_bytes=ceiling.output_bytes,
    )


RUN_STATUS = {  # our status -> SandboxFusion's CommandRunStatus
    Status.OK: "Finished",
    Status.ERROR: "Finished",
    Status.MEMORY: "Finished",
    Status.TIMEOUT: "TimeLimitExceeded",
    Status.OUTPUT_LIMIT: "Error",
    Status.KILLED: "Error",
}


def fusion_response(r: Result) -> dict[str, Any]:
    if r.status is Status.SANDBOX_ERROR:  # the client retries these
        return {"status": "SandboxError", "message": r.error or "", "run_result": None, "files": {}}
    if r.status is Status.OK:
        code: int | None = 0
    elif r.signal:
        code = -r.signal  # as subprocess reports a process killed by a signal
    elif r.status in (Status.ERROR, Status.MEMORY):
        code = r.exit_code or 1
    else:
        code = None
    return {
        "status": "Success" if r.ok else "Failed",
        "message": r.error or "",
        "compile_result": None,
        "run_result": {
            "status": RUN_STATUS[r.status],
            "execution_time": r.wall_s,
            "cpu_time": r.cpu_s,
            "return_code": code,
            "stdout": r.stdout,
            "stderr": r.stderr,
        },
        "files": {},
    }


# -- our batch endpoint ---------------------------------------------------------


def batch_request(body: dict[str, Any], ceiling: Limits, max_batch: int) -> tuple[list[Program], Limits]:
    programs = body.get("programs")
    if not isinstance(programs, list) or not programs:
        raise BadRequest(400, "programs must be a non-empty list of strings or lists of step strings")
    if len(programs) > max_batch:
        raise BadRequest(413, f"{len(programs)} programs; this server takes at most {max_batch} per request")
    for p in programs:
        if not (isinstance(p, str) or (isinstance(p, list) and p and all(isinstance(s, str) for s in p))):
            raise BadRequest(400, "each program must be a string or a non-empty list of step strings")
    asked = body.get("limits") or {}
    if not isinstance(asked, dict):
        raise BadRequest(400, "limits must be an object")
    unknown = set(asked) - {"wall_s", "cpu_s", "memory_mb", "output_bytes"}
    if unknown:
        raise BadRequest(400, f"unknown limits: {', '.join(sorted(unknown))}")
    values = {k: getattr(ceiling, k) for k in ("wall_s", "cpu_s", "memory_mb", "output_bytes")}
    for key, value in asked.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise BadRequest(400, f"limits.{key} must be a positive number, got {value!r}")
        if value > values[key]:
            raise BadRequest(400, f"limits.{key} = {value} is above this server's limit of {values[key]}")
        values[key] = value
    return [p if isinstance(p, str) else list(p) for p in programs], Limits(**values)


def result_json(r: Result) -> dict[str, Any]:
    out = asdict(r)
    out["status"] = r.status.value
    return out


# -- the app ----------------------------------------------------------------------


def build_app(config: ServeConfig, runner_factory: Callable[[], Runner] | None = None) -> Starlette:
    """The ASGI app. The sandbox (or what `runner_factory` makes) starts with
    the app (lifespan) and stops with it, after the requests in flight are
    answered."""
    state: dict[str, AsyncRunner] = {}
    lineage = Lineage()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        sandbox = (runner_factory or (lambda: Sandbox(workers=config.workers, limits=config.limits)))()
        state["runner"] = AsyncRunner(sandbox, config.max_in_flight)
        try:
            yield
        finally:
            await asyncio.to_thread(sandbox.close)

    async def read_json(request: Request) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > config.max_body_bytes:
            raise BadRequest(413, f"body of {declared} bytes; this server takes at most {config.max_body_bytes}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > config.max_body_bytes:
                raise BadRequest(413, f"body over {config.max_body_bytes} bytes")
        try:
            parsed = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(400, f"body is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise BadRequest(400, "body must be a JSON object")
        return parsed

    def check_code_size(programs: list[Program]) -> None:
        for p in programs:
            size = len(p.encode("utf-8", "surrogatepass")) if isinstance(p, str) else sum(map(len, p))
            if size > config.max_code_bytes:
                raise BadRequest(413, f"a program of {size} bytes; this server takes at most {config.max_code_bytes}")

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if config.token is not None and not _authorized(request, config.token):
                return JSONResponse({"detail": "missing or wrong token"}, status_code=401)
            try:
                return await handler(request)
            except BadRequest as exc:
                return JSONResponse({"detail": str(exc)}, status_code=exc.status)
            except Busy as exc:
                return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": "1"})

        return endpoint

    async def run_code(request: Request) -> Response:
        code, limits = fusion_request(await read_json(request), config.limits)
        check_code_size([code])
        # Another request's node may come back to this one's program: keep it.
        program = lineage.split(code) if config.cut_strings else code
        [result] = await state["runner"].run([program], limits, release_prefixes=False)
        return JSONResponse(fusion_response(result))

    async def run_batch(request: Request) -> Response:
        programs, limits = batch_request(await read_json(request), config.limits, config.max_batch)
        check_code_size(programs)
        results = await state["runner"].run(programs, limits)
        return JSONResponse({"results": [result_json(r) for r in results]})

    async def health(request: Request) -> Response:
        runner = state.get("runner")
        if runner is None:
            return JSONResponse({"status": "starting", "in_flight": 0})
        return JSONResponse(
            {"status": "ok", "in_flight": runner.in_flight, "snapshots": runner.runner.snapshot_stats()}
        )

    routes = []
    for prefix in ("", "/t/{token}"):
        routes += [
            Route(prefix + "/run_code", guarded(run_code), methods=["POST"]),
            Route(prefix + "/run_batch", guarded(run_batch), methods=["POST"]),
            Route(prefix + "/health", guarded(health), methods=["GET"]),
        ]
    return Starlette(routes=routes, lifespan=lifespan)


def _authorized(request: Request, token: str) -> bool:
    given = request.path_params.get("token")
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        given = header[7:].strip()
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: str | None) -> str | None:
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        token = f.read().strip()
    if len(token) < 16:
        raise ValueError(f"{path}: a token needs at least 16 characters")
    return token


def serve(host: str, port: int, config: ServeConfig) -> None:
    """Run until SIGTERM or SIGINT: uvicorn stops taking connections, answers
    the requests in flight, and the sandbox closes (no process left)."""
    import uvicorn

    if not is_loopback(host) and config.token is None:
        raise ValueError(f"binding {host} (not loopback) needs a token: --token-file")
    uvicorn.run(build_app(config), host=host, port=port, log_level="warning", timeout_graceful_shutdown=60)
