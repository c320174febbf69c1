"""BLOOM (ALiBi) greedy decoding: a bloom-560m-shaped model (hidden 1024, 16 heads, vocab
250,880, 24 layers unless --layers says fewer; random weights), tfcore vs Hugging Face
``generate`` on torch, same process, same threads, alternating runs, after validating the
prefill logits against HF. Decoding is memory-bound: achieved GB/s = weight bytes read per
step x steps per second, against the read bandwidth measured in the same run (the helpers
are bench_decode's).

    python benchmarks/bench_bloom.py [--quick] [--threads 2] [--layers 24]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_decode import decode_row, measured_bandwidth  # noqa: E402
from common import isa_line, print_table  # noqa: E402

import tfcore  # noqa: E402

PROMPT = 32


def make_model(tmp: str, layers: int) -> str:
    from transformers import BloomConfig, BloomForCausalLM

    torch.manual_seed(0)
    path = os.path.join(tmp, f"bloom-560m-shaped-{layers}l")
    BloomForCausalLM(
        BloomConfig(vocab_size=250880, hidden_size=1024, n_layer=layers, n_head=16)
    ).save_pretrained(path)
    return path


def validate(ours, ref, ids) -> float:
    """Max |logit difference| relative to the logits' scale over a prefill; exits if above 1e-4
    (float32 on both sides)."""
    with torch.inference_mode():
        want = ref(torch.from_numpy(ids)).logits.numpy()
    got = ours(ids).logits
    err = float(np.abs(got - want).max() / np.abs(want).max())
    if not err < 1e-4:
        sys.exit(f"validation failed: prefill logits differ from HF by {err:.2e} of their scale")
    return err


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 layers, 16 new tokens, batch 1 only")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layers", type=int, default=None, help="transformer layers (bloom-560m: 24)")
    args = ap.parse_args()
    layers = args.layers or (4 if args.quick else 24)
    tfcore.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    tfcore.show_config()
    bandwidth = measured_bandwidth(args.threads)
    print(isa_line())
    print(f"read bandwidth measured now: {bandwidth:.1f} GB/s ({args.threads} threads)\n")
    from transformers import BloomForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        path = make_model(tmp, layers)
        ours = tfcore.AutoModelForCausalLM.from_pretrained(path)
        ref = BloomForCausalLM.from_pretrained(path).eval()
        err = validate(ours, ref, np.random.default_rng(1).integers(100, 250000, size=(2, 37)))
        print(
            f"bloom-560m-shaped, {layers} layers (of 24), fp32: prefill logits within {err:.1e} of HF's scale\n"
        )
        rows = [
            [
                f"B={batch}",
                *decode_row(
                    ours,
                    ref,
                    batch,
                    16 if args.quick else 64,
                    1 if args.quick else 3,
                    bandwidth,
                    prompt=PROMPT,
                ),
            ]
            for batch in ((1,) if args.quick else (1, 8))
        ]
    print_table(
        [
            "batch",
            "tfcore tok/s",
            "HF tok/s",
            "HF/tfcore time",
            "tfcore GB/s (% of measured)",
            "bound tok/s",
            "greedy agreement",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
