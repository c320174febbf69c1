"""wav2vec 2.0 / HuBERT CTC on 10 s of audio: tfcore vs HF transformers on torch, same threads.

    python benchmarks/bench_wav2vec2.py [--quick] [--threads 2] [--avx2]

Base-shaped random models (HF's initialisation; 7 convolutions 512 wide, 12 layers of 768, 12
heads, ffn 3072, 32-character vocabulary): Wav2Vec2ForCTC and HubertForCTC, batch 1 and 4 of
10 s at 16 kHz (--quick: 4 s). Each case validates the logits within 1e-4 of HF's scale first,
then times both interleaved after a warm-up: medians, the ratio, the real-time factor (seconds of
compute per second of audio) and GFLOP/s counted on the convolutions and GEMMs against the
in-run fp32 GEMM rate. Target (issue 20): >= 2x HF for Wav2Vec2-base CTC on 10 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    fmt_ms,
    gemm_peak_gflops,
    interleaved,
    isa_line,
    print_table,
    reexec_at_avx2_if_asked,
)

import tfcore  # noqa: E402

CONV = dict(conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2))


def flops(n_samples: int, B: int, layers=12, C=768, F=3072) -> float:
    """Multiply-adds x 2 of the convolutions, projection, positional conv and layers."""
    total, length, c_in = 0.0, n_samples, 1
    for c, k, s in zip(CONV["conv_dim"], CONV["conv_kernel"], CONV["conv_stride"]):
        length = (length - k) // s + 1
        total += 2 * length * c * c_in * k
        c_in = c
    T = length
    total += 2 * T * 512 * C + 2 * T * C * (C // 16) * 128
    total += layers * (2 * T * C * 4 * C + 2 * T * C * 2 * F + 4 * T * T * C)
    return B * total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--avx2", action="store_true", help="hold every library to AVX2 (see common.py)")
    args = ap.parse_args()
    reexec_at_avx2_if_asked()
    import transformers

    tfcore.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    seconds = 4 if args.quick else 10
    peak = gemm_peak_gflops()
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg_cls in (("Wav2Vec2ForCTC", "Wav2Vec2Config"), ("HubertForCTC", "HubertConfig")):
            path = os.path.join(tmp, name)
            torch.manual_seed(0)
            getattr(transformers, name)(
                getattr(transformers, cfg_cls)(vocab_size=32, **CONV)
            ).save_pretrained(path)
            ref = getattr(transformers, name).from_pretrained(path).eval()
            ours = tfcore.AutoModelForCTC.from_pretrained(path)
            for B in (1, 4):
                x = (0.1 * rng.standard_normal((B, 16000 * seconds))).astype(np.float32)
                tx = torch.from_numpy(x)
                with torch.inference_mode():
                    want = ref(tx).logits.numpy()
                    err = np.abs(ours(x).logits - want).max() / np.abs(want).max()
                    if err > 1e-4:
                        raise SystemExit(f"{name} B={B}: logits differ from HF by {err:.2e} of their scale")
                    t = interleaved(
                        {"tfcore": lambda: ours(x), "hf": lambda: ref(tx)},
                        repeat=3 if args.quick else 7,
                        warmup=1,
                    )
                gf = flops(x.shape[1], B) / t["tfcore"] / 1e9
                rows.append(
                    [
                        f"{name} B={B}, {seconds} s",
                        fmt_ms(t["tfcore"]),
                        fmt_ms(t["hf"]),
                        f"{t['hf'] / t['tfcore']:.2f}",
                        f"{t['tfcore'] / (B * seconds):.3f}",
                        f"{gf:.0f} ({100 * gf / peak:.0f}%)",
                        f"{err:.1e}",
                    ]
                )
    print(isa_line())
    print(
        f"\nCTC speech encoders (random weights, float32), {args.threads} threads; in-run GEMM {peak:.0f} GFLOP/s\n"
    )
    print_table(
        [
            "case",
            "tfcore ms",
            "HF ms",
            "HF/tfcore",
            "real-time factor",
            "tfcore GFLOP/s (of GEMM)",
            "logits rel. diff",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
