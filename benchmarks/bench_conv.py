"""Convolution layers: tfcore.Conv2d / Conv1d vs torch.nn.functional.conv2d / conv1d, same
process, same threads, interleaved, medians; GFLOP/s as a fraction of the in-run fp32 GEMM
rate (FLOPs = 2 B OC prod(out) IC/G prod(k)).

    python benchmarks/bench_conv.py [--quick] [--threads 2] [--batch 1 8] [--avx2]

Shapes are the convolutions of the vision and speech families (patch embeddings, PVT /
SegFormer spatial reduction, CvT's embeddings and depthwise projections, ConvNeXt depthwise,
ResNet-style 3x3 and 1x1, Whisper's and wav2vec2's stems and positional convolution). Rows that
run as GEMMs over im2col rows (layers/conv.c) also time the same layer on oneDNN's convolution
(TFCORE_CONV_ROUTE=onednn), interleaved. tfcore runs channels last (zero-copy) and channels first (reordered in and
out); torch runs its default (channels first) memory format. Every case checks its output
against torch before timing.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import fmt_ms, gemm_peak_gflops, interleaved, isa_line, print_table, reexec_at_avx2_if_asked  # noqa: E402

import tfcore  # noqa: E402

# name, in, out, kernel, stride, padding, groups, spatial size
CASES = [
    ("CLIP B/32 patch embed", 3, 768, 32, 32, 0, 1, (224, 224)),
    ("PVT-v2 stem 7x7/4", 3, 64, 7, 4, 3, 1, (224, 224)),
    ("SegFormer SR 8x8/8", 64, 64, 8, 8, 0, 1, (128, 128)),
    ("3x3 64->64", 64, 64, 3, 1, 1, 1, (56, 56)),
    ("1x1 256->64", 256, 64, 1, 1, 0, 1, (56, 56)),
    ("3x3/2 128->256", 128, 256, 3, 2, 1, 1, (56, 56)),
    ("depthwise 3x3 (CvT, Mix-FFN) 256", 256, 256, 3, 1, 1, 256, (56, 56)),
    ("depthwise 7x7 (ConvNeXt) 96", 96, 96, 7, 1, 3, 96, (56, 56)),
    ("Whisper conv1 80->384 k3", 80, 384, 3, 1, 1, 1, (3000,)),
    ("Whisper conv2 384->384 k3/2", 384, 384, 3, 2, 1, 1, (3000,)),
    ("wav2vec2 conv0 1->512 k10/5", 1, 512, 10, 5, 0, 1, (16000,)),
    ("BEiT-base / ViT-B/16 patch embed", 3, 768, 16, 16, 0, 1, (224, 224)),
    ("CvT-13 stem 7x7/4 3->64", 3, 64, 7, 4, 2, 1, (224, 224)),
    ("CvT-13 embed 3x3/2 64->192", 64, 192, 3, 2, 1, 1, (56, 56)),
    ("wav2vec2 positional k128 g16", 768, 768, 128, 1, 64, 16, (500,)),
]


def run(threads: int, batches, quick: bool):
    torch.set_num_threads(threads)
    tfcore.set_num_threads(threads)
    peak = gemm_peak_gflops()
    print(f"in-run fp32 GEMM rate (tfcore/oneDNN, 1024x2048x2048): {peak:.0f} GFLOP/s, {threads} threads\n")
    rng = np.random.default_rng(0)
    rows = []
    cases = CASES[::2] if quick else CASES
    for name, ic, oc, k, s, p, g, sp in cases:
        nsp = len(sp)
        kern = (k,) * nsp
        w = (rng.standard_normal((oc, ic // g, *kern)) * (ic // g * k**nsp) ** -0.5).astype(np.float32)
        b = rng.standard_normal(oc).astype(np.float32)
        layer = (tfcore.Conv2d if nsp == 2 else tfcore.Conv1d)(w, b, s, p, 1, g)
        # geometries conv.c runs as GEMMs: the same layer on oneDNN's convolution, timed too
        routed = layer.implementation.startswith("gemm")
        os.environ["TFCORE_CONV_ROUTE"] = "onednn"
        try:
            onednn = (tfcore.Conv2d if nsp == 2 else tfcore.Conv1d)(w, b, s, p, 1, g)
        finally:
            del os.environ["TFCORE_CONV_ROUTE"]
        tconv = torch.nn.functional.conv2d if nsp == 2 else torch.nn.functional.conv1d
        tw, tb = torch.from_numpy(w), torch.from_numpy(b)
        for B in batches:
            if nsp == 1 and B > 1 and sp[0] > 10000:
                continue
            x = rng.standard_normal((B, ic, *sp)).astype(np.float32)
            xl = np.ascontiguousarray(np.moveaxis(x, 1, -1))
            tx = torch.from_numpy(x)
            with torch.inference_mode():
                ref = tconv(tx, tw, tb, s, p, 1, g).numpy()
                first = layer(x)
                last = np.moveaxis(layer(xl, channels_last=True), -1, 1)
                scale = max(1.0, float(np.abs(ref).max()))
                for label, got in (("channels first", first), ("channels last", last)):
                    err = float(np.abs(got - ref).max()) / scale
                    if not err < 1e-4:
                        raise SystemExit(f"{name} B={B} {label}: differs from torch by {err:.3g} (relative)")
                if routed:
                    err = (
                        float(np.abs(np.moveaxis(onednn(xl, channels_last=True), -1, 1) - ref).max()) / scale
                    )
                    if not err < 1e-4:
                        raise SystemExit(
                            f"{name} B={B} oneDNN route: differs from torch by {err:.3g} (relative)"
                        )
                out_first, out_last = (
                    np.empty_like(first),
                    np.empty(np.moveaxis(first, 1, -1).shape, np.float32),
                )
                fns = {
                    "last": lambda: layer(xl, channels_last=True, out=out_last),
                    "first": lambda: layer(x, out=out_first),
                    "torch": lambda: tconv(tx, tw, tb, s, p, 1, g),
                }
                if routed:
                    fns["onednn"] = lambda: onednn(xl, channels_last=True, out=out_last)
                t = interleaved(
                    fns,
                    repeat=5 if quick else 11,
                    warmup=2,
                    min_time=0.05,
                )
            flops = 2.0 * B * oc * int(np.prod(ref.shape[2:])) * (ic // g) * k**nsp
            gf = {key: flops / v / 1e9 for key, v in t.items()}
            rows.append(
                [
                    name,
                    B,
                    fmt_ms(t["last"]),
                    fmt_ms(t["first"]),
                    fmt_ms(t["torch"]),
                    f"{gf['last']:.0f} ({100 * gf['last'] / peak:.0f}%)",
                    f"{t['torch'] / t['last']:.2f}x",
                    f"{t['torch'] / t['first']:.2f}x",
                    f"{t['onednn'] / t['last']:.2f}x" if routed else "-",
                    layer.implementation,
                ]
            )
    print_table(
        [
            "conv",
            "B",
            "tfcore NHWC ms",
            "tfcore NCHW ms",
            "torch ms",
            "tfcore NHWC GFLOP/s (% GEMM)",
            "vs torch (NHWC)",
            "vs torch (NCHW)",
            "GEMM route vs oneDNN conv (NHWC)",
            "implementation",
        ],
        rows,
    )


def main():
    reexec_at_avx2_if_asked()
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--avx2", action="store_true", help="run as a CPU without AVX-512 would")
    args = ap.parse_args()
    print(isa_line())
    print("(a shared 2-core VM: absolute times swing; the ratios are interleaved in one run)\n")
    for threads in args.threads:
        run(threads, args.batch, args.quick)


if __name__ == "__main__":
    main()
