#!/usr/bin/env bash
# Run every fuzz target of fuzz/harness.py for a fixed time with atheris and print the
# executions and findings of each. Needs the venv from the README's test command (.venv).
#   bash tools/fuzz.sh [seconds per target, default 60]      (or: make fuzz SECONDS=60)
#   bash tools/fuzz.sh --runs N     N inputs per target from a fixed seed (repeatable; CI uses this)
# A finding is written to fuzz/crashes/; once fixed, copy it to tests/fuzz_regressions/<target>/.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--runs" ]; then
    budget=(--runs "$2"); what="$2 inputs"
else
    budget=(--seconds "${1:-60}"); what="${1:-60} s"
fi
PY=.venv/bin/python
"$PY" -m pip install -q "atheris>=2.3"
status=0
for target in safetensors config ops linear_attention wav rwkv conv gguf gguf_int4 gptq_awq ctranslate2_whisper; do
    log="fuzz/crashes/$target.log"
    mkdir -p fuzz/crashes
    "$PY" fuzz/run.py "$target" "${budget[@]}" >"$log" 2>&1
    rc=$?
    runs=$(grep -oE '^stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$')
    rate=$(grep -oE '^stat::average_exec_per_sec: +[0-9]+' "$log" | grep -oE '[0-9]+$')
    if [ "$rc" -eq 0 ]; then
        echo "$target: ${runs:-?} executions ($what, ${rate:-?}/s), no findings"
    else
        status=1
        echo "$target: FINDING after ${runs:-?} executions (exit $rc); see $log and fuzz/crashes/"
        grep -A8 -E "Uncaught Python exception|ERROR: (AddressSanitizer|libFuzzer)" "$log" | head -20
    fi
done
exit $status
