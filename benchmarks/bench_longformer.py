"""Longformer: tfcore vs Hugging Face LongformerModel on torch, same process, same threads,
interleaved, medians and ratios; then peak memory vs length.

    python benchmarks/bench_longformer.py [--quick] [--threads 2] [--layers 2]

The model is longformer-base-shaped (hidden 768, 12 heads, FFN 3072, attention_window 512,
random weights) with --layers layers (default 2 instead of 12: HF takes seconds per layer at
4,096 tokens; both sides run the same layers, so the ratio is per layer too and the table
also gives ms per layer). The [CLS] token is global, as for classification. Every length is
first validated (tfcore's last_hidden_state against HF's), then timed.

Peak memory: for each length a fresh child process loads the model, runs a warm-up forward
at 512 tokens, resets the peak-RSS watermark (/proc/self/clear_refs = 5) and reports VmHWM -
VmRSS over one forward — the memory the forward adds (activations and kernel temporaries),
which should grow linearly with the length; HF's is measured the same way for contrast.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import PEAK_RSS_PRELUDE, gemm_peak_gflops, interleaved, isa_line, print_table  # noqa: E402

import tfcore  # noqa: E402

C, HEADS, FFN, WINDOW = 768, 12, 3072, 512


def make_checkpoint(tmp: str, layers: int, max_len: int) -> str:
    from transformers import LongformerConfig, LongformerModel

    torch.manual_seed(0)
    cfg = LongformerConfig(
        hidden_size=C,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        num_hidden_layers=layers,
        attention_window=WINDOW,
        max_position_embeddings=max_len + 2,
        vocab_size=1000,
        type_vocab_size=1,
    )
    path = os.path.join(tmp, "longformer-base-shaped")
    LongformerModel(cfg).save_pretrained(path)
    return path


def inputs(T: int):
    rng = np.random.default_rng(T)
    ids = rng.integers(3, 1000, size=(1, T))
    glob = np.zeros((1, T), np.int64)
    glob[0, 0] = 1  # [CLS]
    return ids, glob


def layer_flops(T: int, G: int = 1) -> float:
    """Useful FLOPs of one layer: projections, FFN, global projections, banded + global attention."""
    gemms = 2 * T * (4 * C * C + 2 * C * FFN) + 2 * T * 2 * C * C + 2 * G * C * C
    attention = 2 * 2 * T * (WINDOW + 1 + G) * C + 2 * 2 * G * T * C
    return gemms + attention


def bench(path: str, layers: int, lengths, threads: int, quick: bool):
    from transformers import LongformerModel

    ours = tfcore.models.LongformerModel.from_pretrained(path)
    theirs = LongformerModel.from_pretrained(path).eval()
    rows = []
    for T in lengths:
        ids, glob = inputs(T)
        tids, tglob = torch.from_numpy(ids), torch.from_numpy(glob)
        with torch.inference_mode():
            want = theirs(tids, global_attention_mask=tglob).last_hidden_state.numpy()
            got = ours(ids, global_attention_mask=glob).last_hidden_state
            err = float(np.abs(got - want).max())
            if not err < 1e-3:  # LayerNorm'd outputs of scale ~1; float32 on both sides gives ~1e-5
                raise SystemExit(f"T={T}: tfcore differs from HF by {err:.3g}")
            t = interleaved(
                {
                    "tfcore": lambda: ours(ids, global_attention_mask=glob),
                    "hf": lambda: theirs(tids, global_attention_mask=tglob),
                },
                repeat=3 if quick else 5,
                warmup=1,
            )
        gflops = layers * layer_flops(T) / t["tfcore"] / 1e9
        rows.append(
            [
                f"{T}",
                threads,
                f"{t['tfcore'] * 1e3:.0f}",
                f"{t['tfcore'] * 1e3 / layers:.0f}",
                f"{t['hf'] * 1e3:.0f}",
                f"{t['hf'] * 1e3 / layers:.0f}",
                f"**{t['hf'] / t['tfcore']:.2f}**",
                f"{gflops:.0f}",
                f"{err:.1e}",
            ]
        )
    return rows


_CHILD = """
import json, sys
import numpy as np
side, path, T, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def ids_glob(n):
    ids = np.random.default_rng(n).integers(3, 1000, size=(1, n))
    glob = np.zeros((1, n), np.int64); glob[0, 0] = 1
    return ids, glob
if side == "tfcore":
    import tfcore
    tfcore.set_num_threads(threads)
    model = tfcore.models.LongformerModel.from_pretrained(path)
    run = lambda ids, glob: model(ids, global_attention_mask=glob)
else:
    import torch
    from transformers import LongformerModel
    torch.set_num_threads(threads)
    model = LongformerModel.from_pretrained(path).eval()
    def run(ids, glob):
        with torch.inference_mode():
            return model(torch.from_numpy(ids), global_attention_mask=torch.from_numpy(glob))
run(*ids_glob(512))  # warm-up: primitives, thread pools, allocator arenas
ids, glob = ids_glob(T)
before = reset_peak()
out = run(ids, glob)
print(json.dumps({"added": peak_added(before)}))
"""


def peak_memory(side: str, path: str, T: int, threads: int) -> int:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TFCORE_PROGRESS="0")
    res = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_PRELUDE + _CHILD, side, path, str(T), str(threads)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])["added"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4,096 tokens only, fewer repetitions, no HF memory")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=2)
    args = ap.parse_args()
    tfcore.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    tfcore.show_config()
    print(isa_line())
    print(f"torch {torch.__version__}")
    print(f"fp32 GEMM peak on {args.threads} threads now: {gemm_peak_gflops():.0f} GFLOP/s\n")
    lengths = [4096] if args.quick else [1024, 2048, 4096]
    mem_lengths = [1024, 2048, 4096, 8192]
    with tempfile.TemporaryDirectory() as tmp:
        path = make_checkpoint(tmp, args.layers, max(mem_lengths))
        print(
            f"LongformerModel, hidden {C}, {HEADS} heads, FFN {FFN}, attention_window {WINDOW}, "
            f"{args.layers} layers, batch 1, [CLS] global\n"
        )
        print_table(
            [
                "tokens",
                "threads",
                "tfcore ms",
                "tfcore ms/layer",
                "HF ms",
                "HF ms/layer",
                "HF/tfcore",
                "tfcore GFLOP/s",
                "max |diff|",
            ],
            bench(path, args.layers, lengths, args.threads, args.quick),
        )
        print()
        rows = []
        for T in mem_lengths:
            ours = peak_memory("tfcore", path, T, args.threads)
            row = [f"{T}", f"{ours / 2**20:.0f}", f"{ours / 2**20 / (T / 1024):.0f}"]
            if not args.quick:
                hf = peak_memory("hf", path, T, args.threads)
                row += [f"{hf / 2**20:.0f}", f"{hf / 2**20 / (T / 1024):.0f}"]
            rows.append(row)
        headers = ["tokens", "tfcore peak MiB added", "tfcore MiB per 1k tokens"]
        if not args.quick:
            headers += ["HF peak MiB added", "HF MiB per 1k tokens"]
        print(
            f"Peak memory added by one forward ({args.layers} layers; child process per length, "
            f"VmHWM - VmRSS after a warm-up):\n"
        )
        print_table(headers, rows)


if __name__ == "__main__":
    main()
