"""BERT-base B=8 S=128 in float32, bfloat16 and int8: tfcore against CTranslate2 (fp32, int8),
the encoder rows of bench_precision.py without its slow peers, for A/B work on the dtype paths.

    python benchmarks/bench_encoder_dtypes.py [--quick] [--threads 2] [--repeat 9] [--avx2]
                                              [--no-ct2]

--avx2 holds tfcore (kernels and oneDNN) and CTranslate2 (MKL, its own switch) to AVX2 + FMA
on a CPU with AVX-512 (common.AVX2_ENV): the case of issue 15's two remaining targets, int8
faster than CTranslate2 int8 and bf16 not slower than fp32 on a CPU without AVX512_BF16 /
VNNI. Outputs are checked against HF transformers fp32 first (fp32: max abs error < 1e-3;
bf16 / int8: the cosine printed beside the times), then every run is timed interleaved in one
process, medians, with the in-run fp32 GEMM rate.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_models import bert_base, encoder_flops  # noqa: E402
from common import gemm_peak_gflops, interleaved, isa_line, print_table, reexec_at_avx2_if_asked  # noqa: E402

import tfcore  # noqa: E402


def cosine(a, b):
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--quick", action="store_true", help="3 timed rounds (a smoke run)")
    ap.add_argument("--no-ct2", dest="ct2", action="store_false", help="skip CTranslate2")
    ap.add_argument(
        "--avx2", action="store_true", help="hold tfcore and CTranslate2 to AVX2 (common.AVX2_ENV)"
    )
    reexec_at_avx2_if_asked()
    args = ap.parse_args()
    if args.quick:
        args.repeat = 3
    tfcore.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    print(isa_line())
    print("tfcore dtypes:", tfcore.supported_dtypes())
    gemm = gemm_peak_gflops()
    print(f"in-run fp32 GEMM {gemm:.0f} GFLOP/s, {args.threads} threads\n")
    from transformers import BertModel

    B, T = 8, 128
    ids = np.random.default_rng(0).integers(1000, 30000, size=(B, T))
    flops = encoder_flops(12, 768, 3072, B, T)
    with tempfile.TemporaryDirectory() as tmp:
        path = bert_base(tmp)
        with torch.inference_mode():
            want = BertModel.from_pretrained(path).eval()(torch.from_numpy(ids)).last_hidden_state.numpy()
        runs = {}
        for dt, short in (("float32", "fp32"), ("bfloat16", "bf16"), ("int8", "int8")):
            model = tfcore.models.BertModel.from_pretrained(path, dtype=dt)
            runs[f"tfcore-{short}"] = lambda m=model: m(ids).last_hidden_state
        if args.ct2:
            from ct2_peer import encoder_runners

            runs.update(
                {k: (lambda r=r: r(ids)) for k, r in encoder_runners(path, tmp, args.threads).items()}
            )
        accuracy = {}
        for k, f in runs.items():
            out = np.asarray(f())
            err = float(np.abs(out - want).max())
            if k == "tfcore-fp32" and not err < 1e-3:
                raise SystemExit(f"tfcore fp32 differs from HF by {err:.3g}")
            accuracy[k] = (err, cosine(out, want))
        t = interleaved(runs, repeat=args.repeat, warmup=2)
    rows = []
    for k, v in t.items():
        rate = flops / v / 1e9
        rows.append(
            [
                k,
                f"{v * 1e3:.1f} ms",
                f"{rate:.0f} GFLOP/s = {100 * rate / gemm:.0f}% of GEMM",
                f"{accuracy[k][0]:.4f}",
                f"{accuracy[k][1]:.6f}",
                f"{t['tfcore-fp32'] / v:.3f}",
                f"{t['tfcore-int8'] / v:.3f}",
            ]
        )
    print(f"BERT-base B={B} S={T}, {args.threads} threads, interleaved medians of {args.repeat}\n")
    print_table(
        [
            "run",
            "time",
            "rate",
            "max abs err vs HF fp32",
            "min cosine",
            "tfcore fp32 / this",
            "tfcore int8 / this",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
