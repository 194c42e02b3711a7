"""`python -m sandbox serve` as its users meet it: the real `sandbox-fusion`
client (and plain HTTP) against a server started on loopback."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
from sandbox_fusion import RunCodeRequest, run_code

from sandbox.__main__ import SELF_TEST
from tests.helpers import descendants, wait_gone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmp_path, *args: str):
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN + "\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "sandbox", "serve", "--port", str(self.port), "--token-file", str(token_file)]
        self.log = tmp_path / "server.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([*cmd, "--memory-mb", "512", *args], cwd=ROOT, stdout=log, stderr=log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/health", headers=self.auth, timeout=1).json()["status"] == "ok":
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("the server did not come up")

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {TOKEN}"}

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, headers=self.auth, timeout=60, **kwargs)

    def stop(self) -> bool:
        """SIGTERM; True if it drained and exited as uvicorn does (0, or the
        signal raised again after shutdown)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60) in (0, -signal.SIGTERM)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("serve"))
    yield s
    s.stop()


def fusion(server, code: str, **kw):
    # The stock client sends no headers: the token rides in the endpoint's path.
    return run_code(
        RunCodeRequest(code=code, language="python", **kw), endpoint=f"{server.url}/t/{TOKEN}", max_attempts=1
    )


def test_the_sandbox_fusion_client_gets_each_outcome(server):
    ok = fusion(server, "print(6 * 7)")
    assert (ok.status, ok.run_result.status, ok.run_result.return_code, ok.run_result.stdout) == (
        "Success",
        "Finished",
        0,
        "42\n",
    )
    err = fusion(server, "1 / 0")
    assert (err.status, err.run_result.status, err.run_result.return_code) == ("Failed", "Finished", 1)
    assert "ZeroDivisionError" in err.run_result.stderr and "ZeroDivisionError" in err.message
    slow = fusion(server, "while True: pass", run_timeout=1)
    assert (slow.status, slow.run_result.status) == ("Failed", "TimeLimitExceeded")
    assert 0.9 < slow.run_result.execution_time < 3
    flood = fusion(server, "print('x' * 10**6)")
    assert (flood.status, flood.run_result.status, flood.message) == ("Failed", "Error", "output limit exceeded")


def test_a_chain_of_run_code_strings_runs_from_snapshots(server):
    """Each program the previous one and a step more, as a search sends its
    nodes: the server cuts them along their parents and keeps their ends."""
    before = requests.get(server.url + "/health", headers=server.auth).json()["snapshots"]["live"]
    steps = ["a = 6", "# times\nb = a * 7", "print(b)", "print(b + undefined)"]
    answers = [fusion(server, "\n".join(steps[:k])) for k in range(1, 5)]
    assert [a.run_result.stdout for a in answers] == ["", "", "42\n", "42\n"]
    assert 'File "<program>", line 5, in <module>\nNameError' in answers[3].run_result.stderr
    after = requests.get(server.url + "/health", headers=server.auth).json()["snapshots"]["live"]
    assert after >= before + 2  # the ends of steps 2 and 3 (step 4 failed: not kept)


def test_whole_strings_run_whole(tmp_path):
    s = Server(tmp_path, "--whole-strings")
    try:
        steps = ["a = 6", "b = a * 7", "print(b)"]
        answers = [s.post("/run_code", json={"code": "\n".join(steps[:k]), "language": "python"}) for k in (1, 2, 3)]
        assert answers[-1].json()["run_result"]["stdout"] == "42\n"
        assert requests.get(s.url + "/health", headers=s.auth).json()["snapshots"]["live"] == 0
    finally:
        assert s.stop()


def test_the_batch_endpoint_answers_in_order(server):
    programs = [f"print({i})" if i % 2 else [f"x = {i}", "print(x)"] for i in range(40)]
    r = server.post("/run_batch", json={"programs": programs, "limits": {"wall_s": 2}})
    assert r.status_code == 200
    assert [x["stdout"] for x in r.json()["results"]] == [f"{i}\n" for i in range(40)]


def test_hostile_programs_through_http(server):
    r = server.post("/run_batch", json={"programs": [code for _, code, _ in SELF_TEST], "limits": {"wall_s": 2}})
    got = [x["status"] for x in r.json()["results"]]
    assert got == [expected.value for _, _, expected in SELF_TEST]


@pytest.mark.parametrize(
    "case", ["not json", "50 MB", "cpp", "no token", "wrong token", "over the limit", "files", "bad limits", "too many"]
)
def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(server, case):
    body = {"code": "print(1)", "language": "python"}
    kwargs: dict = {"json": body}
    path, headers, expected = "/run_code", server.auth, 400
    if case == "not json":
        kwargs = {"data": b"{not json"}
    elif case == "50 MB":
        kwargs, expected = {"data": b"x" * (50 << 20)}, 413
    elif case == "cpp":
        body["language"] = "cpp"
    elif case == "no token":
        headers, expected = {}, 401
    elif case == "wrong token":
        headers, expected = {"Authorization": "Bearer " + "x" * 26}, 401
    elif case == "over the limit":
        body["run_timeout"] = 100
    elif case == "files":
        body["files"] = {"a.txt": "aGk="}
    elif case == "bad limits":
        path, kwargs = "/run_batch", {"json": {"programs": ["print(1)"], "limits": {"memory_mb": 1 << 20}}}
    elif case == "too many":
        path, kwargs, expected = "/run_batch", {"json": {"programs": ["1"] * 5000}}, 413
    r = requests.post(server.url + path, headers=headers, timeout=60, **kwargs)
    assert r.status_code == expected, r.text
    assert r.json()["detail"]
    assert fusion(server, "print('still here')").run_result.stdout == "still here\n"


def test_a_client_that_hangs_up_disturbs_no_one(server):
    body = json.dumps({"code": "import time; time.sleep(1); print('late')", "language": "python"}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(
            b"POST /run_code HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        time.sleep(0.2)
    others = [fusion(server, f"print({i})") for i in range(3)]
    assert [o.run_result.stdout for o in others] == ["0\n", "1\n", "2\n"]
    time.sleep(1.2)
    health = requests.get(server.url + "/health", headers=server.auth, timeout=5).json()
    assert (health["status"], health["in_flight"]) == ("ok", 0)


def test_past_the_in_flight_cap_a_429_with_retry_after(tmp_path):
    s = Server(tmp_path, "--max-in-flight", "2")
    try:
        codes = []

        def call():
            codes.append(s.post("/run_code", json={"code": "import time; time.sleep(1)", "language": "python"}))

        threads = [threading.Thread(target=call) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r.status_code for r in codes)
        assert statuses.count(200) >= 2 and 429 in statuses, statuses
        assert all(r.headers["Retry-After"] == "1" for r in codes if r.status_code == 429)
    finally:
        assert s.stop()


def test_sigterm_answers_requests_in_flight_and_leaves_nothing(tmp_path):
    s = Server(tmp_path)
    zygotes = descendants(s.proc.pid)
    answer = {}

    def call():
        answer["r"] = s.post(
            "/run_code", json={"code": "import time; time.sleep(1); print('done')", "language": "python"}
        )

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.4)
    assert s.stop()
    t.join()
    assert answer["r"].json()["run_result"]["stdout"] == "done\n"
    assert zygotes and wait_gone(zygotes)


def test_off_loopback_needs_a_token():
    r = subprocess.run(
        [sys.executable, "-m", "sandbox", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "needs a token" in r.stderr
