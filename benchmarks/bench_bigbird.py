"""BigBird benchmark: tfcore vs Hugging Face transformers (torch), block-sparse attention.

    python benchmarks/bench_bigbird.py [--quick] [--threads 2] [--layers 12]

A bigbird-roberta-base-shaped BigBirdModel (hidden 768, 12 heads, FFN 3072, block_size 64,
num_random_blocks 3, random weights, max_position_embeddings 8192) at batch 1 and 1,024 /
2,048 / 4,096 tokens — all above HF's full-attention fallback threshold (704 tokens), so both
sides run block-sparse attention. Both run the same layer count (--layers, default 12 = the
real model; --quick uses 2 layers and fewer repetitions, stated in the table) with the same
thread count, interleaved after warm-up; HF runs eval mode with eager attention. Every
length is first validated (tfcore's last_hidden_state against HF's).

Peak memory vs length (1k, 2k, 4k, 8k tokens), tfcore only: for each length a fresh child
process loads the model, builds the input, resets the peak-RSS watermark (VmHWM via
/proc/self/clear_refs) and runs one forward pass; the table reports VmHWM minus the RSS
before the call, i.e. the activations and scratch the forward pass needed (the weights are
already resident). Linear growth shows as a constant MiB per 1k tokens; a dense L x L
attention map per layer would add 12 * L * L * 4 bytes (shown for comparison).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import PEAK_RSS_PRELUDE, gemm_peak_gflops, interleaved, isa_line, print_table  # noqa: E402

import tfcore  # noqa: E402

C, H, F, BLOCK, RAND = 768, 12, 3072, 64, 3


def save_model(tmp: str, layers: int) -> str:
    from transformers import BigBirdConfig, BigBirdModel

    torch.manual_seed(0)
    cfg = BigBirdConfig(
        hidden_size=C,
        num_attention_heads=H,
        intermediate_size=F,
        num_hidden_layers=layers,
        block_size=BLOCK,
        num_random_blocks=RAND,
        max_position_embeddings=8192,
        attention_type="block_sparse",
    )
    path = os.path.join(tmp, f"bigbird-{layers}l")
    BigBirdModel(cfg).save_pretrained(path)
    return path


def flops(layers: int, T: int) -> float:
    """2 x multiply-adds of the projections, FFN and the block-sparse attention actually
    computed (global rows see all T keys; rows 1 and -2 see 4 + r blocks; the middle 5 + r)."""
    nb = T // BLOCK
    keys = BLOCK * (2 * T + 2 * (4 + RAND) * BLOCK + (nb - 4) * (5 + RAND) * BLOCK)  # summed over queries
    per_layer = 2 * T * (4 * C * C + 2 * C * F) + 2 * 2 * keys * C
    return layers * per_layer


def bench_speed(path: str, layers: int, threads: int, quick: bool, peak: float):
    from transformers import BigBirdModel

    ours = tfcore.models.BigBirdModel.from_pretrained(path)
    theirs = BigBirdModel.from_pretrained(path, attn_implementation="eager").eval()
    rng = np.random.default_rng(0)
    rows = []
    for T in [1024, 2048, 4096]:
        ids = rng.integers(5, 50000, size=(1, T))
        tids = torch.from_numpy(ids)
        assert ours.uses_block_sparse(T)
        with torch.inference_mode():
            want = theirs(tids).last_hidden_state.numpy()
            err = float(np.abs(ours(ids).last_hidden_state - want).max())
            if not err < 1e-3:  # LayerNorm outputs are O(1); float32 through `layers` layers
                raise SystemExit(f"BigBird T={T}: differs from HF by {err:.3g}")
            if theirs.attention_type != "block_sparse":
                raise SystemExit("HF fell back to full attention; the comparison would be unfair")
            t = interleaved(
                {"tfcore": lambda: ours(ids), "hf": lambda: theirs(tids)}, repeat=2 if quick else 5, warmup=1
            )
        gflops = flops(layers, T) / t["tfcore"] / 1e9
        rows.append(
            [
                f"BigBird T={T} ({layers} layers)",
                threads,
                f"{t['tfcore'] * 1e3:.1f}",
                f"{t['hf'] * 1e3:.1f}",
                f"{t['hf'] / t['tfcore']:.2f}",
                f"{gflops:.0f} ({100 * gflops / peak:.0f}%)",
                f"{err:.1e}",
            ]
        )
    return rows


_PEAK_CHILD = """
import numpy as np, tfcore
tfcore.set_num_threads({threads})
model = tfcore.models.BigBirdModel.from_pretrained({path!r})
ids = np.random.default_rng(0).integers(5, 50000, size=(1, {T}))
model(ids[:, :1024])  # first call: primitives, thread pools
current = reset_peak()
out = model(ids).last_hidden_state
print(peak_added(current))
"""


def peak_memory(path: str, T: int, threads: int) -> int:
    """Peak RSS added by one forward pass at T tokens, in a fresh child process."""
    res = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_PRELUDE + _PEAK_CHILD.format(path=path, T=T, threads=threads)],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )
    return int(res.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 layers, fewer repetitions")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=None, help="encoder layers (default 12; 2 with --quick)")
    args = ap.parse_args()
    layers = args.layers or (2 if args.quick else 12)
    tfcore.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    tfcore.show_config()
    print(isa_line())
    print(f"torch {torch.__version__}")
    peak = gemm_peak_gflops()
    print(f"fp32 GEMM peak now (tfcore Linear, {args.threads} threads): {peak:.0f} GFLOP/s\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(tmp, layers)
        print_table(
            [
                "case",
                "threads",
                "tfcore ms",
                "HF ms",
                "HF/tfcore",
                "tfcore GFLOP/s (% of GEMM peak)",
                "max abs diff vs HF",
            ],
            bench_speed(path, layers, args.threads, args.quick, peak),
        )
        print(
            f"\nPeak memory of one forward pass (tfcore, batch 1, {layers} layers; RSS high-water mark above the "
            "loaded model, fresh process per length):\n"
        )
        rows = []
        for T in [1024, 2048, 4096, 8192]:
            added = peak_memory(path, T, args.threads)
            rows.append(
                [T, f"{added / 2**20:.1f}", f"{added / T * 1024 / 2**20:.2f}", f"{H * T * T * 4 / 2**20:.0f}"]
            )
        print_table(
            ["tokens", "peak MiB added", "MiB per 1k tokens", "one dense L x L map (12 heads) MiB"], rows
        )


if __name__ == "__main__":
    main()
