"""Search and evolve on a real local Ray cluster: the same trees as one
process, a killed worker replaced with nothing lost or duplicated, bad cluster
settings refused before anything is written."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import descendants, wait_gone

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).with_name("ray"))


def rstar(*args):
    return subprocess.run([sys.executable, "-m", "rstar.cli", *args], cwd=ROOT, capture_output=True, text=True)


def toy_problems(path: Path, count: int) -> Path:
    lines = (ROOT / "rstar" / "data" / "toy_train.jsonl").read_text().splitlines()[:count]
    path.write_text("\n".join(lines) + "\n")
    return path


def tree_lines(out: Path) -> list[str]:
    return sorted((out / "trees.jsonl").read_text().splitlines())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _ray_agent(pid: int) -> bool:
    return any(name in _cmdline(pid) for name in ("ray::DashboardAgent", "ray::RuntimeEnvAgent"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """12 toy problems searched in this process, the trees every scale must give."""
    work = tmp_path_factory.mktemp("cluster")
    problems = toy_problems(work / "p.jsonl", 12)
    result = rstar("search", "--problems", str(problems), "--out", str(work / "local"), "--preset", "tiny")
    assert result.returncode == 0, result.stderr[-3000:]
    return problems, tree_lines(work / "local")


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster started as a user would (`ray start --head`): 2 CPUs and
    one declared GPU, the dashboard and its state API on."""
    port, dashboard = free_port(), free_port()
    start = [RAY, "start", "--head", f"--port={port}", "--num-cpus=2", "--num-gpus=1"]
    start += [f"--dashboard-port={dashboard}", "--include-dashboard=true", "--disable-usage-stats"]
    start += [f"--object-store-memory={256 * 2**20}"]
    subprocess.run(start, check=True, capture_output=True, timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


def test_two_local_workers_grow_the_trees_of_one_process(reference, tmp_path):
    problems, lines = reference
    out = tmp_path / "ray"
    result = rstar(
        "search", "--problems", str(problems), "--out", str(out), "--preset", "tiny", "--ray", "local:2",
        "batch_problems=2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert tree_lines(out) == lines
    summary = json.loads((out / "summary.json").read_text())["this_run"]
    assert summary["searched"] == 12 and summary["driver_cpu_s"] < summary["wall_s"]


def test_a_killed_worker_is_replaced_and_nothing_is_lost(reference, cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # read when ray is imported: send the token `ray start` wrote
    from ray.util.state import list_actors

    problems, lines = reference
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "rstar.cli", "search", "--problems", str(problems), "--out", str(out)]
    args += ["--preset", "tiny", "--ray", cluster, "cluster.gpus_per_worker=0", "batch_problems=1"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    trees = out / "trees.jsonl"
    deadline = time.monotonic() + 300
    while not (trees.exists() and trees.read_text().count("\n") >= 2):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    workers = [a for a in list_actors(address=cluster, filters=[("state", "=", "ALIVE")]) if a.class_name == "Worker"]
    assert len(workers) == 2
    victim = workers[0]
    sandbox_processes = descendants(victim.pid)
    os.kill(victim.pid, signal.SIGKILL)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
    assert tree_lines(out) == lines  # every problem exactly once, each tree as one process grows it
    restarted = list_actors(address=cluster, filters=[("actor_id", "=", victim.actor_id)], detail=True)
    assert restarted[0].num_restarts >= 1
    assert sandbox_processes and wait_gone(sandbox_processes)  # the dead worker's sandbox went with it


def test_a_driver_killed_with_minus_9_resumes(reference, tmp_path):
    problems, lines = reference
    out = tmp_path / "driver"
    args = ["search", "--problems", str(problems), "--out", str(out), "--preset", "tiny", "--ray", "local:2"]
    proc = subprocess.Popen([sys.executable, "-m", "rstar.cli", *args, "batch_problems=1"], cwd=ROOT)
    trees = out / "trees.jsonl"
    deadline = time.monotonic() + 300
    while not (trees.exists() and trees.read_text().count("\n") >= 3):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    spawned = {pid for pid in descendants(proc.pid) if not _ray_agent(pid)}
    assert any("ray::Worker" in _cmdline(pid) for pid in spawned)
    proc.kill()
    proc.wait()
    # the workers, their sandboxes and the cluster die with the driver (Ray's
    # two agents follow on their own timer, a minute or so later)
    assert wait_gone(spawned, timeout=30)
    result = rstar(*args, "batch_problems=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert tree_lines(out) == lines


def test_bad_cluster_settings_are_refused_before_anything_is_written(reference, cluster, tmp_path):
    problems, _ = reference
    out = tmp_path / "never"
    cases = [
        (["--ray", f"127.0.0.1:{free_port()}"], "cannot reach the Ray cluster"),
        (["--ray", "local:0"], "local:N needs N >= 1"),
        (["--ray", cluster, "cluster.workers=2"], "need 2 GPUs; the cluster has 1"),
        (["--ray", "nowhere"], "use '', auto, local:N or a cluster address"),
    ]
    for extra, message in cases:
        result = rstar("search", "--problems", str(problems), "--out", str(out), "--preset", "tiny", *extra)
        assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
        assert not out.exists()


def test_evolve_runs_a_round_on_the_cluster(tmp_path):
    """Search, evaluation and (in the driver) training of a round, the search
    and evaluations on two workers: the same round as in one process."""
    rounds = ["--preset", "tiny", "--rounds", "1", "evolve.pool_size=8", "evolve.eval_guided=''"]
    local = rstar("evolve", "--workdir", str(tmp_path / "local"), *rounds)
    assert local.returncode == 0, local.stderr[-3000:]
    on_ray = rstar("evolve", "--workdir", str(tmp_path / "ray"), *rounds, "--ray", "local:2")
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    for path in ("round-1/data/sft.jsonl", "round-1/data/ppm.jsonl"):
        assert (tmp_path / "ray" / path).read_bytes() == (tmp_path / "local" / path).read_bytes()
    assert tree_lines(tmp_path / "ray" / "round-1" / "search") == tree_lines(tmp_path / "local" / "round-1" / "search")
    for k in (0, 1):
        mine, theirs = (json.loads((tmp_path / w / f"round-{k}/metrics.json").read_text()) for w in ("ray", "local"))
        assert mine["eval"]["greedy"]["correct"] == theirs["eval"]["greedy"]["correct"]
