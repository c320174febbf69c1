#!/usr/bin/env bash
# Run tools/valgrind_workload.py under valgrind --leak-check=full and report the leaks whose
# allocation stack passes through tfcore's extension (CPython's own and oneDNN's global
# caches are not tfcore's). Needs the venv from the README's test command (.venv); the workload
# imports the tfcore installed there (PYTHONPATH=. to check an in-place build instead).
# Valgrind has no AVX-512: oneDNN and tfcore's kernels dispatch to their AVX2/reference code.
#   bash tools/valgrind.sh
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
model=$(mktemp -d)
# a tiny Llama checkpoint for the load / generate part (written outside valgrind)
.venv/bin/python -c "
import sys, torch; from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
LlamaForCausalLM(LlamaConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, intermediate_size=32)).save_pretrained(sys.argv[1])" "$model"
PYTHONMALLOC=malloc OMP_NUM_THREADS=1 valgrind --leak-check=full --show-leak-kinds=definite \
    --num-callers=40 --log-file="$log" .venv/bin/python tools/valgrind_workload.py "$model"
# valgrind separates records with "==PID== " lines: without that prefix they are blank-line
# separated paragraphs; tfcore's are those whose stack passes through _C.cpython
records=$(sed 's/^==[0-9]*== \{0,1\}//' "$log")
leaks=$(awk 'BEGIN{RS=""} /definitely lost/ && /_C\.cpython/' <<<"$records")
errors=$(awk 'BEGIN{RS=""} /(Invalid|uninitialised|Mismatched)/ && /_C\.cpython/' <<<"$records")
grep -E "definitely lost:|ERROR SUMMARY" "$log" | sed 's/^==[0-9]*== */valgrind (whole process): /'
status=0
if [ -n "$leaks" ]; then
    echo "definite leaks from tfcore's extension:"; echo "$leaks"; status=1
fi
if [ -n "$errors" ]; then
    echo "memory errors in tfcore's extension:"; sed -n 1,60p <<<"$errors"; status=1
fi
[ $status -eq 0 ] && echo "tfcore's extension: no definite leaks, no memory errors (the rest is CPython's and ld.so's; log: $log)"
rm -rf "$model"
exit $status
