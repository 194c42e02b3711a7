"""The guardrails, run with the suite: lint and format (ruff), types (mypy,
strict on sandbox/, rstar/search, rstar/llm), the C core's format
(clang-format) and a warning-free build (-Werror). Settings live in
pyproject.toml and .clang-format. With the slow tests: the sandbox's tests
over UBSan and ASan builds of the C core (`scripts/sanitize.sh`)."""

import glob
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C_FILES = sorted(glob.glob(os.path.join(ROOT, "csrc", "*.[ch]")))


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def tool(name: str) -> str:
    """A tool of the venv (or PATH); its absence is a setup error, not a skip."""
    found = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    assert found, f"{name} is missing: run scripts/setup.sh"
    return found


@pytest.mark.parametrize("args", [("check", "."), ("format", "--check", ".")], ids=["lint", "format"])
def test_ruff(args):
    r = run(tool("ruff"), *args)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_strict():
    r = run(sys.executable, "-m", "mypy")  # files and strictness from pyproject.toml
    assert r.returncode == 0, r.stdout + r.stderr


def test_c_core_is_clang_formatted():
    r = run(tool("clang-format"), "--dry-run", "-Werror", *C_FILES)
    assert r.returncode == 0, r.stderr


def test_c_core_builds_without_warnings():
    # Compiled with optimisation: some warnings (uninitialised use, overflows)
    # come only from the optimiser's analyses.
    flags = run("pkg-config", "--cflags", "libseccomp").stdout.split()
    for path in C_FILES:
        if path.endswith(".c"):
            r = run(
                "gcc",
                "-std=gnu11",
                "-D_GNU_SOURCE",
                "-O2",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-c",
                "-o",
                os.devnull,
                "-Icsrc",
                *flags,
                path,
            )
            assert r.returncode == 0, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["undefined", "address"])
def test_sandbox_tests_pass_under_a_sanitizer(kind):
    # A sanitizer report in the zygote or a child fails the test that caused it.
    r = subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "sanitize.sh"), kind],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert " passed" in r.stdout and " failed" not in r.stdout, r.stdout[-3000:]
