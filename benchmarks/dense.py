"""Linear and FeedForward on BERT-base shapes: tfcore vs torch (imported by bench_ops.py).

BERT-base: hidden 768, intermediate 3072; rows M = batch * sequence."""

from __future__ import annotations

import numpy as np
import torch
from common import interleaved

import tfcore

# (label, M, K, N): attention projections, FFN up, FFN down, and decode-size M.
LINEAR_SHAPES = [
    ("qkv B=1 S=128", 128, 768, 2304),
    ("ffn-up B=8 S=128", 1024, 768, 3072),
    ("ffn-down B=8 S=128", 1024, 3072, 768),
    ("out-proj B=1 S=1", 1, 768, 768),
    ("ffn-up B=8 S=1", 8, 768, 3072),
]


def _check(name, got, want, tol):
    err = float(np.abs(got - want).max())
    if not err < tol:
        raise SystemExit(f"{name}: output differs from torch by {err:.3g} (tolerance {tol:g})")


def bench_linear(threads: int, quick: bool = False):
    rng = np.random.default_rng(0)
    rows = []
    for label, M, K, N in LINEAR_SHAPES:
        W = (rng.standard_normal((N, K)) * K**-0.5).astype(np.float32)
        b = rng.standard_normal(N).astype(np.float32)
        x = rng.standard_normal((M, K)).astype(np.float32)
        ours = tfcore.Linear(W, b, "gelu")
        ref = torch.nn.Linear(K, N)
        with torch.no_grad():
            ref.weight.copy_(torch.from_numpy(W))
            ref.bias.copy_(torch.from_numpy(b))
        tx = torch.from_numpy(x)
        out = np.empty((M, N), np.float32)
        gelu = torch.nn.functional.gelu
        with torch.inference_mode():
            _check(label, ours(x, out=out), gelu(ref(tx)).numpy(), 1e-4)
            t = interleaved(
                {"tfcore": lambda: ours(x, out=out), "torch": lambda: gelu(ref(tx))},
                repeat=5 if quick else 15,
                min_time=0.01 if quick else 0.05,
            )
        flops = 2.0 * M * K * N
        rows.append(
            [
                f"Linear+GELU {label} ({M}x{K}x{N})",
                threads,
                f"{t['tfcore'] * 1e3:.3f}",
                f"{t['torch'] * 1e3:.3f}",
                f"{t['torch'] / t['tfcore']:.2f}",
                f"{flops / t['tfcore'] / 1e9:.0f}",
            ]
        )
    return rows


def bench_feed_forward(threads: int, quick: bool = False):
    rng = np.random.default_rng(1)
    rows = []
    C, F = 768, 3072
    up = (rng.standard_normal((F, C)) * C**-0.5).astype(np.float32)
    down = (rng.standard_normal((C, F)) * F**-0.5).astype(np.float32)
    ub, db = rng.standard_normal(F).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    ours = tfcore.FeedForward(up, down, up_bias=ub, down_bias=db, activation="gelu")
    l1, l2 = torch.nn.Linear(C, F), torch.nn.Linear(F, C)
    with torch.no_grad():
        l1.weight.copy_(torch.from_numpy(up)), l1.bias.copy_(torch.from_numpy(ub))
        l2.weight.copy_(torch.from_numpy(down)), l2.bias.copy_(torch.from_numpy(db))

    def ref(t, r):
        return l2(torch.nn.functional.gelu(l1(t))) + r

    for label, M in [("B=8 S=128", 1024), ("B=1 S=128", 128), ("B=1 S=1", 1)]:
        x = rng.standard_normal((M, C)).astype(np.float32)
        tx = torch.from_numpy(x)
        out = np.empty_like(x)
        with torch.inference_mode():
            _check(label, ours(x, x, out=out), ref(tx, tx).numpy(), 1e-4)
            t = interleaved(
                {"tfcore": lambda: ours(x, x, out=out), "torch": lambda: ref(tx, tx)},
                repeat=5 if quick else 15,
                min_time=0.01 if quick else 0.05,
            )
        flops = 4.0 * M * C * F
        rows.append(
            [
                f"FeedForward GELU+residual {label} (768->3072->768)",
                threads,
                f"{t['tfcore'] * 1e3:.3f}",
                f"{t['torch'] * 1e3:.3f}",
                f"{t['torch'] / t['tfcore']:.2f}",
                f"{flops / t['tfcore'] / 1e9:.0f}",
            ]
        )
    return rows
