"""Swin-T benchmark: tfcore vs Hugging Face transformers on torch, same process, same
threads, interleaved, medians and ratios.

    python benchmarks/bench_swin.py [--quick] [--threads 2]

Swin-T (embed_dim 96, depths [2, 2, 6, 2], heads [3, 6, 12, 24], window 7, 224x224,
random weights at real size) at batch 1 and 8. HF runs with its eager and sdpa attention;
the faster one is the peer. Every case first checks tfcore's last_hidden_state and
pooler_output against HF's. Then a breakdown of tfcore's time at batch 1 by part
(window-attention kernel, GEMMs, norms, the rest), from forwards run step by step with
a clock around each call.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import gemm_peak_gflops, interleaved, isa_line, print_table  # noqa: E402

import tfcore  # noqa: E402


def swin_tiny(tmp):
    from transformers import SwinConfig, SwinModel

    torch.manual_seed(0)
    model = SwinModel(SwinConfig())  # the defaults are Swin-T at 224
    with torch.no_grad():  # HF initialises the bias tables to zero; make them matter
        for name, p in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                p.normal_(0, 0.5)
    path = os.path.join(tmp, "swin-t")
    model.save_pretrained(path)
    return path


def swin_flops(B):
    """Multiply-adds x 2 of Swin-T's GEMMs and window attention at 224 (patch 4, window 7)."""
    total = 2 * B * 56 * 56 * 96 * 48  # patch embedding: (3 * 4 * 4) -> 96
    side, C = 56, 96
    for s, depth in enumerate([2, 2, 6, 2]):
        T = side * side
        per_layer = 2 * B * T * (3 * C * C + C * C + 8 * C * C) + 2 * 2 * B * T * 49 * C
        total += depth * per_layer
        if s < 3:
            total += 2 * B * (T // 4) * 4 * C * 2 * C  # patch merging
            side, C = side // 2, 2 * C
    return total


def check(ours, peer, px):
    with torch.inference_mode():
        want = peer(torch.from_numpy(px))
    got = ours(px)
    err = max(
        float(np.abs(got.last_hidden_state - want.last_hidden_state.numpy()).max()),
        float(np.abs(got.pooler_output - want.pooler_output.numpy()).max()),
    )
    scale = float(np.abs(want.last_hidden_state.numpy()).max())
    if not err < 1e-4 * max(scale, 1.0):
        raise SystemExit(f"Swin-T B={px.shape[0]}: differs from HF by {err:.3g} (output scale {scale:.3g})")
    return err


def breakdown(ours, px, quick):
    """Seconds per forward spent in each part: forwards are re-run step by step — each
    SwinLayer as its parts (norms, WindowAttention, FeedForward) — with a clock around every
    call (the median of each part over the runs is reported). The window kernel's share is
    its WindowAttention call minus the call's two GEMMs, run again right after on the same
    inputs."""
    import statistics
    import time

    m = ours
    parts = (
        "window attention kernel",
        "qkv + output GEMMs",
        "MLP GEMMs (GELU fused)",
        "LayerNorms",
        "patch embedding + merging + pooling",
    )
    runs = {k: [] for k in parts}

    def clock(fn):
        t0 = time.perf_counter()
        r = fn()
        return r, time.perf_counter() - t0

    for _ in range(3 if quick else 7):
        acc = dict.fromkeys(parts, 0.0)
        (h, nh, nw), t = clock(lambda: m._patches(px))
        acc[parts[4]] += t
        h, t = clock(lambda: m.embed_norm(h, out=h))
        acc[parts[3]] += t
        dims = (nh, nw)
        for stage in m.stages:
            for layer in stage.layers:
                # the parts of one SwinLayer call, run one by one
                B, T, C = h.shape
                n, t = clock(lambda: layer.norm1(h))
                acc[parts[3]] += t
                attn = layer.attention
                a, t_attn = clock(lambda: attn(n.reshape(B, *dims, C), h.reshape(B, *dims, C)))
                a = a.reshape(B, T, C)
                _, t_qkv = clock(lambda: attn.qkv_proj(n))
                _, t_o = clock(lambda: attn.o_proj(a, h))
                acc[parts[1]] += t_qkv + t_o
                acc[parts[0]] += max(t_attn - t_qkv - t_o, 0.0)
                n2, t = clock(lambda: layer.norm2(a, out=n))
                acc[parts[3]] += t
                h, t = clock(lambda: layer.feed_forward(n2, a))
                acc[parts[2]] += t
            if stage.downsample is not None:
                h, t = clock(lambda: stage.downsample(h, dims))
                acc[parts[4]] += t
                dims = ((dims[0] + 1) // 2, (dims[1] + 1) // 2)
        last, t = clock(lambda: m.layernorm(h))
        acc[parts[3]] += t
        _, t = clock(lambda: last.mean(axis=1, dtype=np.float32))
        acc[parts[4]] += t
        for k in parts:
            runs[k].append(acc[k])
    return {k: statistics.median(v) for k, v in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batch 1 only, fewer repetitions")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    tfcore.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    tfcore.show_config()
    print(isa_line())
    print(f"torch {torch.__version__}\n")
    from transformers import SwinModel

    peak = gemm_peak_gflops()
    print(f"fp32 GEMM peak on {args.threads} threads now: {peak:.0f} GFLOP/s\n")
    rows, parts = [], None
    with tempfile.TemporaryDirectory() as tmp:
        path = swin_tiny(tmp)
        ours = tfcore.models.SwinModel.from_pretrained(path)
        peers = {
            impl: SwinModel.from_pretrained(path, attn_implementation=impl).eval()
            for impl in ("eager", "sdpa")
        }
        rng = np.random.default_rng(0)
        for B in [1] if args.quick else [1, 8]:
            px = rng.standard_normal((B, 3, 224, 224)).astype(np.float32)
            tpx = torch.from_numpy(px)
            err = check(ours, peers["eager"], px)
            with torch.inference_mode():
                fns = {"tfcore": lambda: ours(px)}
                fns.update({f"hf-{k}": (lambda m=m: m(tpx)) for k, m in peers.items()})
                t = interleaved(fns, repeat=3 if args.quick else 9, warmup=2)
            best = min(("hf-eager", "hf-sdpa"), key=t.get)
            flops = swin_flops(B)
            rows.append(
                [
                    f"Swin-T 224 B={B}",
                    args.threads,
                    f"{t['tfcore'] * 1e3:.2f}",
                    f"{t[best] * 1e3:.2f} ({best[3:]})",
                    f"{t[best] / t['tfcore']:.2f}",
                    f"{flops / t['tfcore'] / 1e9:.0f}",
                    f"{100 * flops / t['tfcore'] / 1e9 / peak:.0f}%",
                    f"{err:.1e}",
                ]
            )
            if B == 1:
                parts = breakdown(ours, px, args.quick), t["tfcore"]
    print_table(
        [
            "model",
            "threads",
            "tfcore ms",
            "HF ms (best attention)",
            "HF/tfcore",
            "tfcore GFLOP/s",
            "of GEMM peak",
            "max abs diff",
        ],
        rows,
    )
    if parts is not None:
        times, whole = parts
        print(
            f"\ntfcore Swin-T B=1 by part (medians over step-by-step forwards: {sum(times.values()) * 1e3:.2f} ms; "
            f"the timed forward above: {whole * 1e3:.2f} ms)\n"
        )
        print_table(
            ["part", "ms", "share"],
            [[k, f"{v * 1e3:.2f}", f"{100 * v / sum(times.values()):.0f}%"] for k, v in times.items()],
        )


if __name__ == "__main__":
    main()
