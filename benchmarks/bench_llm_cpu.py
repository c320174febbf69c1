"""SmolLM2-135M-Instruct Q4_1 greedy generation on ONE thread, measured in CPU time
(``time.process_time``): tfcore int4 (the file's own 4-bit weights, dtype="int4"), int8 and
float32 against llama.cpp (llama-cpp-python, n_threads=1) on the same file.

    python benchmarks/bench_llm_cpu.py [--rounds 7] [--new 16]

For a shared machine: CPU time of one thread does not count the time other processes hold
the cores (wall-clock ratios swing 2x under load). Each call is a 32-token prompt plus
--new greedy tokens (prefill included, as a user's generate call). Validation before
timing: every engine's greedy tokens are compared with tfcore float32's (printed; a
mismatch is reported, not fatal: 4-bit engines may legitimately diverge). Rounds are
interleaved; medians and ratios are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
from bench_llm import smollm2_path  # noqa: E402
from common import isa_line  # noqa: E402

import tfcore  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--new", type=int, default=16)
    args = ap.parse_args()
    try:
        import llama_cpp
    except ImportError:
        llama_cpp = None
        print("llama.cpp: llama-cpp-python is not installed; tfcore measured alone")

    tfcore.set_num_threads(1)
    path, n = smollm2_path(), args.new
    print(isa_line() + "; 1 thread, CPU time; machine shared")
    tok = tfcore.text.load_tokenizer(path)
    prompt = (tok.encode("The history of the printing press begins", add_special_tokens=False).ids * 8)[:32]
    models = {
        dt: tfcore.AutoModelForCausalLM.from_pretrained(path, dtype=dt) for dt in ("int4", "int8", "float32")
    }
    llm = (
        llama_cpp.Llama(model_path=path, n_ctx=256, n_batch=64, n_threads=1, n_threads_batch=1, verbose=False)
        if llama_cpp is not None
        else None
    )

    def llama_cpp_generate():
        out = []
        for t in llm.generate(prompt, top_k=1, temp=0.0, reset=True):
            out.append(t)
            if len(out) == n:
                break
        return out

    def tf_generate(dt):
        return lambda: (
            models[dt].generate(np.array([prompt]), max_new_tokens=n, eos_token_id=[])[0, 32:].tolist()
        )

    peer = {"llama.cpp": llama_cpp_generate} if llm is not None else {}
    fns = {**peer, **{dt: tf_generate(dt) for dt in models}}
    ref = fns["float32"]()
    print("greedy tokens equal to tfcore float32:", {k: f() == ref for k, f in fns.items()})
    times = {k: [] for k in fns}
    for _ in range(args.rounds):
        for k, f in fns.items():
            c = time.process_time()
            f()
            times[k].append(time.process_time() - c)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"CPU s per call (32-token prompt + {n} new), median of {args.rounds}:")
    for k, v in med.items():
        ratio = f"  (llama.cpp / this: {med['llama.cpp'] / v:.2f})" if "llama.cpp" in med else ""
        print(f"  {k:10s} {v:.3f}{ratio}")
    print(f"int4 vs int8 (int8 / int4 CPU time): {med['int8'] / med['int4']:.2f}")


if __name__ == "__main__":
    main()
