"""T5-small encoder-decoder generation: tfcore vs HF transformers on torch, same threads.

    python benchmarks/bench_t5.py [--quick] [--threads 2]

T5-small shape (d_model 512, 6 + 6 layers, 8 heads, d_ff 2048, ReLU, 32,128 vocabulary)
with random weights (HF's T5 initialisation; larger random weights make T5's unscaled
attention so sharp that float32 rounding flips greedy tokens between any two
implementations, HF's own float32 and float64 included). For a 64-token
input and 32 new tokens at batch 1 and 4: validates that greedy tokens equal HF's, then
times generate() of both, interleaved, after a warm-up, and reports tokens/s medians and
the ratio; also the encoder forward alone. tfcore encodes once, projects the decoder's
cross-attention keys/values once, and decodes with a KVCache; HF uses its
EncoderDecoderCache (cross keys/values computed on the first step).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

import tfcore

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fmt_ms, interleaved, isa_line, print_table  # noqa: E402

INPUT, NEW = 64, 32


def make_model(tmp: str):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=32128,
        d_model=512,
        d_kv=64,
        d_ff=2048,
        num_layers=6,
        num_heads=8,
        feed_forward_proj="relu",
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    T5ForConditionalGeneration(cfg).save_pretrained(tmp)  # HF's own T5 initialisation
    return T5ForConditionalGeneration.from_pretrained(tmp, attn_implementation="sdpa").eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    tfcore.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    tfcore.show_config()
    repeat = 3 if args.quick else 7
    gen_rows, enc_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        ref = make_model(tmp)
        ours = tfcore.AutoModelForSeq2SeqLM.from_pretrained(tmp)
        rng = np.random.default_rng(0)
        for batch in (1, 4):
            ids = rng.integers(2, 32000, size=(batch, INPUT))
            tids = torch.from_numpy(ids)

            def run_ours():
                return ours.generate(ids, max_new_tokens=NEW, eos_token_id=[])

            def run_hf():
                return ref.generate(
                    tids, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, eos_token_id=None
                )

            with torch.inference_mode():
                a, b = run_ours(), run_hf().numpy()
                if a.shape != b.shape or not np.array_equal(a, b):
                    agree = float((a == b).mean()) if a.shape == b.shape else 0.0
                    raise SystemExit(
                        f"validation failed at batch {batch}: greedy tokens differ from HF "
                        f"({100 * agree:.1f}% equal)"
                    )
                # the generated sequence teacher-forced through both: every decoder position's logits
                lo = ours(input_ids=ids, decoder_input_ids=a).logits
                lh = ref(input_ids=tids, decoder_input_ids=torch.from_numpy(a)).logits.numpy()
                logit_err = np.abs(lo - lh).max() / np.abs(lh).max()
                if logit_err > 1e-4:
                    raise SystemExit(
                        f"validation failed: decoder logits differ from HF by {logit_err:.2e} (relative)"
                    )
                # the first generate() calls of a fresh process run far slower at 2 threads (seen
                # with GPT-2 too): warm up well before timing
                t = interleaved({"tfcore": run_ours, "hf": run_hf}, repeat=repeat, warmup=3)
                gen_rows.append(
                    [
                        f"B={batch}, {INPUT} in, {NEW} new",
                        f"{batch * NEW / t['tfcore']:.1f}",
                        f"{batch * NEW / t['hf']:.1f}",
                        f"{t['hf'] / t['tfcore']:.2f}",
                        f"{logit_err:.1e}",
                    ]
                )

                out = ours.encode(ids)[0]
                want = ref.encoder(input_ids=tids).last_hidden_state.numpy()
                err = np.abs(out - want).max() / np.abs(want).max()
                if err > 1e-4:
                    raise SystemExit(
                        f"validation failed: encoder output differs from HF by {err:.2e} (relative)"
                    )
                t = interleaved(
                    {"tfcore": lambda: ours.encode(ids), "hf": lambda: ref.encoder(input_ids=tids)},
                    repeat=repeat * 2,
                    warmup=2,
                )
                enc_rows.append(
                    [
                        f"B={batch}, {INPUT} tokens",
                        fmt_ms(t["tfcore"]),
                        fmt_ms(t["hf"]),
                        f"{t['hf'] / t['tfcore']:.2f}",
                        f"{err:.1e}",
                    ]
                )
    print(isa_line())
    print(f"\nT5-small (random weights) greedy generate, {args.threads} threads; tokens equal HF's\n")
    print_table(["case", "tfcore tok/s", "HF tok/s", "HF/tfcore time", "logits max rel. diff"], gen_rows)
    print("\nEncoder forward\n")
    print_table(["case", "tfcore ms", "HF ms", "HF/tfcore time", "max rel. diff"], enc_rows)


if __name__ == "__main__":
    main()
