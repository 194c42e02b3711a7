#!/usr/bin/env bash
# The sandbox's tests over a build of the C core under a sanitizer:
#   scripts/sanitize.sh undefined|address
# Builds a copy of the tree (the checkout's own build is left alone) with
# -fsanitize=KIND and runs tests/test_sandbox_*.py there. A sanitizer report
# in the zygote or a child fails the test that caused it.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:?usage: scripts/sanitize.sh undefined|address}
root=$PWD
python=$root/.venv/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git ls-files -z --cached --others --exclude-standard | tar --null -cf - -T - | tar -xf - -C "$work"
cd "$work"
SBX_CFLAGS="-fsanitize=$kind -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1" \
    "$python" setup.py -q build_ext --inplace 2>&1 | grep -Ev "^$|Deprecat|warnings.warn|!!|\*\*\*" || true
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# Instrumented processes start and exit slower: tests that wait for a whole
# process tree to end allow for it (tests/helpers.py: SLOWDOWN).
export SBX_TEST_SLOWDOWN=3
if [ "$kind" = address ]; then
    # The interpreter is not instrumented: the runtime must be loaded first.
    LD_PRELOAD=$(gcc -print-file-name=libasan.so)
    # Programs crash themselves on purpose (their signals stay theirs) and
    # ask for too much memory (MemoryError, as without ASan).
    export LD_PRELOAD ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:handle_segv=0:handle_sigbus=0:handle_abort=0:handle_sigfpe=0:allow_user_segv_handler=1
fi
"$python" -c "import sandbox, sys; sys.exit(not sandbox.__file__.startswith('$work'))" \
    || { echo "sanitize.sh: the copy's sandbox package is not the one imported" >&2; exit 1; }
"$python" -m pytest -q -p no:cacheprovider "${@:2}" tests/test_sandbox_*.py
