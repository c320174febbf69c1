#!/usr/bin/env bash
# Build tfcore with AddressSanitizer + UndefinedBehaviorSanitizer in place and run the whole
# test suite against that build. Needs the venv from the README's test command (.venv).
#   bash tools/sanitize.sh [test files or pytest args: a subset; default: the whole suite]
# Leak detection is off (CPython keeps memory at exit); ASan's quarantine is off so the
# tests' "memory stays flat" bounds still hold; any UBSan report aborts the run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# the build requirements (oneDNN headers etc.), read from pyproject.toml so the pins live in one place
"$PY" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
    > .venv/build-requirements.txt
"$PY" -m pip install -q -r .venv/build-requirements.txt
TFCORE_SANITIZE=1 "$PY" setup.py build_ext --inplace --force -q
trap 'rm -rf tfcore/_C*.so build/temp.* build/lib.*' EXIT   # never leave sanitizer objects where imports or the next build find them
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:quarantine_size_mb=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# --capture=sys: a sanitizer report is written to fd 2 just before the process dies; fd-level
# capture would swallow it with the process
# with arguments (test files, -k ...) they choose the tests; without, the whole suite runs
PYTHONPATH=. "$PY" -m pytest -q -p no:cacheprovider --capture=sys "${@:-tests}"
