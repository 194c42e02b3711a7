#!/usr/bin/env bash
# Set up everything on a fresh Debian/Ubuntu machine: system packages for the
# sandbox's C core, a virtual environment in .venv, the package (editable)
# with its test and benchmark extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
pkg-config --exists libseccomp 2>/dev/null || missing+=(libseccomp-dev pkg-config)
command -v gcc >/dev/null || missing+=(gcc)
python3 -c "import venv, ensurepip" 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}" python3-dev
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip "setuptools>=68" wheel "Cython>=3.0"
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/python -c "import sandbox._core" && echo "setup: ok (.venv)"
