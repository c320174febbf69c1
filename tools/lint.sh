#!/usr/bin/env bash
# Style checks run by .ci/run: clang-format (csrc/, .clang-format) and ruff (format + check,
# settings in pyproject.toml), at the versions pinned in tools/lint-requirements.txt.
#   bash tools/lint.sh         check only (exit 1 and the diff on any difference)
#   bash tools/lint.sh --fix   rewrite the files instead
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pip install -q -r tools/lint-requirements.txt
mapfile -t c_files < <(git ls-files 'csrc/*.c' 'csrc/*.h')
if [ "${1:-}" = "--fix" ]; then
    .venv/bin/clang-format -i "${c_files[@]}"
    .venv/bin/ruff check --fix .
    .venv/bin/ruff format .
else
    .venv/bin/clang-format --dry-run --Werror "${c_files[@]}"
    .venv/bin/ruff format --check --diff .
    .venv/bin/ruff check .
    echo "lint: clang-format and ruff clean"
fi
