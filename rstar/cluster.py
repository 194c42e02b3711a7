"""Search and evaluation on a Ray cluster.

This process (the driver) streams batches of problems to workers and is the
only writer of a run's files, so a run resumes as it does on one machine. A
worker is a Ray actor that owns one engine, one sandbox and (when used) one
PPM scorer: a `KeptEngine`, placed by resources (GPUs per worker on a cluster
with GPUs, a CPU share otherwise). A problem's tree depends only on its own
seed and the config (`expand.node_seed`), never on the worker or batch it
lands in, so a dead worker's batch searched again after Ray restarts it
gives the same trees. Ray is imported here only, and only when a cluster is
named (`cluster.ray`, `--ray`).
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from rstar.config import ClusterConfig, RunConfig
from rstar.runs.workers import KeptEngine

# What a worker on another node must see of this process's environment.
_TOKEN_FILE = Path.home() / ".ray" / "auth_token"  # where `ray start` writes its token
_PASSED_ENV = ("RSTAR_CACHE", "HF_HUB_OFFLINE", "HF_HOME", "TOKENIZERS_PARALLELISM")


class ClusterError(ValueError):
    """A cluster setting that cannot be met; raised before anything is written."""


class Worker:
    """What runs inside one Ray actor: a `KeptEngine` and the calls on it."""

    def __init__(self) -> None:
        self.kept = KeptEngine()

    def prepare(self, config: RunConfig, ppm: str | None) -> float:
        return self.kept.prepare(config, ppm)

    def run(self, shared: tuple, ppm: str | None, payload):
        task, config = shared
        return self.kept.run(task, config, ppm, payload)

    def close(self) -> None:
        self.kept.close()

    def pid(self) -> int:
        return os.getpid()


class RayWorkers:
    """Workers on a Ray cluster, with the methods of a `KeptEngine` that the
    runs use (`prepare`, `map`, `close`); `shutdown()` ends them."""

    def __init__(self, settings: ClusterConfig):
        joining = settings.ray != "" and not settings.ray.startswith("local:")
        if joining and "RAY_AUTH_MODE" not in os.environ and (os.environ.get("RAY_AUTH_TOKEN") or _TOKEN_FILE.exists()):
            # `ray start` (2.5x) turns token authentication on and writes the
            # token there, but a client joining sends it only when told to
            # before ray is imported.
            os.environ["RAY_AUTH_MODE"] = "token"
        import ray

        self._ray = ray
        count = _connect(ray, settings)
        try:
            resources = ray.cluster_resources()
            cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
            gpus_each = settings.gpus_per_worker if gpus else 0.0
            if not count:
                count = int(gpus // gpus_each) if gpus_each else int(cpus // settings.cpus_per_worker)
            if count < 1:
                raise ClusterError(f"the Ray cluster has room for no worker ({cpus:g} CPUs, {gpus:g} GPUs)")
            if count * gpus_each > gpus:
                raise ClusterError(
                    f"{count} workers x {gpus_each:g} GPUs need {count * gpus_each:g} GPUs; the cluster has "
                    f"{gpus:g} (set cluster.workers or cluster.gpus_per_worker)"
                )
            if count * settings.cpus_per_worker > cpus:
                raise ClusterError(
                    f"{count} workers x {settings.cpus_per_worker:g} CPUs need more than the cluster's {cpus:g}"
                )
            env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
            actor = ray.remote(Worker).options(
                num_cpus=settings.cpus_per_worker,
                num_gpus=gpus_each,
                max_restarts=settings.max_restarts,
                max_task_retries=-1,  # a call on a restarted worker runs again there
                runtime_env={"env_vars": env},
            )
            self.actors = [actor.remote() for _ in range(count)]
            self.in_flight = settings.in_flight
            ray.get([a.pid.remote() for a in self.actors])  # every worker is up
        except BaseException:
            self.shutdown()
            raise

    def prepare(self, config: RunConfig, ppm: str | None) -> float:
        """Start every worker's engine (a bad PPM fails here); the seconds it took."""
        t0 = time.perf_counter()
        self._get([a.prepare.remote(config, ppm) for a in self.actors])
        return time.perf_counter() - t0

    def map(self, task, config: RunConfig, ppm: str | None, payloads: list) -> Iterator[tuple[int, object, dict]]:
        """`task(ctx, payload)` for every payload on the workers, `in_flight`
        queued on each; yields (index, result, seconds) as they finish."""
        todo = deque(enumerate(payloads))
        running: dict = {}
        shared = self._ray.put((task, config))  # sent to each worker once, not with every batch

        def submit(actor) -> None:
            if todo:
                i, payload = todo.popleft()
                running[actor.run.remote(shared, ppm, payload)] = (i, actor)

        for actor in self.actors:
            for _ in range(self.in_flight):
                submit(actor)
        while running:
            (ref,), _ = self._ray.wait(list(running), num_returns=1)
            i, actor = running.pop(ref)
            result, seconds = self._get(ref)
            submit(actor)
            yield i, result, seconds

    def close(self) -> None:
        """Free every worker's engine (training needs the memory); they stay."""
        self._get([a.close.remote() for a in self.actors])

    def shutdown(self) -> None:
        """End the workers (their engines closed, their sandboxes' processes
        gone) and leave the cluster; a cluster started here stops."""
        ray = self._ray
        actors, self.actors = getattr(self, "actors", []), []
        try:
            ray.get([a.close.remote() for a in actors], timeout=120)
        except Exception:  # a dead worker has nothing left to close
            pass
        for a in actors:
            ray.kill(a)
        ray.shutdown()

    def __enter__(self) -> RayWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def pids(self) -> list[int]:
        return self._get([a.pid.remote() for a in self.actors])

    def _get(self, refs):
        from ray.exceptions import RayActorError

        try:
            return self._ray.get(refs)
        except RayActorError as exc:
            raise ClusterError(
                f"a Ray worker died more often than cluster.max_restarts allows ({exc}); what finished is "
                "written: run the same command again to continue"
            ) from None


def _connect(ray, settings: ClusterConfig) -> int:
    """Join or start the cluster; returns the worker count named (0: from resources)."""
    if ray.is_initialized():
        ray.shutdown()
    quiet = dict(logging_level="WARNING", log_to_driver=False)
    target = settings.ray
    if target.startswith("local:"):
        count = int(target.removeprefix("local:"))
        ray.init(
            address="local",  # a new cluster, even where another one runs on this machine
            num_cpus=max(1, round(count * settings.cpus_per_worker)),
            object_store_memory=256 * 2**20,
            **quiet,
        )
        return count
    if target != "auto":
        _check_reachable(target)  # Ray itself retries an unreachable address for minutes
    try:
        ray.init(address=target, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {target!r}: {exc}") from None
    return settings.workers


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None


def open_workers(config: RunConfig) -> KeptEngine | RayWorkers:
    """The workers of a run, a context manager that ends them: this process
    (a `KeptEngine`), or Ray workers when `cluster.ray` names a cluster."""
    return RayWorkers(config.cluster) if config.cluster.ray else KeptEngine()
