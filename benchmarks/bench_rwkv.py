"""RWKV-4 (issue 17): an rwkv-4-169m-pile-shaped model (hidden 768, 12 layers, vocab 50277,
random weights), tfcore vs Hugging Face's RwkvForCausalLM on torch (its CPU path: WKV as a
Python loop over time), same process, same threads, alternating runs, after checking logits
and greedy tokens agree.

- decode B=1 at contexts 128 .. 8k: one token per call continuing a state prefilled with the
  context (a recurrent model reads the same weights and a constant-size state whatever the
  context, so tokens/s should be flat). Bytes per step = every Linear weight (float32) + the
  state, as achieved GB/s against the read bandwidth measured in the same run.
- prefill 2k tokens: one forward pass, logits of the last token.

    python benchmarks/bench_rwkv.py [--quick] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_decode import measured_bandwidth  # noqa: E402
from common import interleaved, isa_line, print_table  # noqa: E402

import tfcore  # noqa: E402

RWKV_169M = dict(
    vocab_size=50277,
    context_length=1024,
    hidden_size=768,
    num_hidden_layers=12,
    intermediate_size=3072,
    rescale_every=6,
    bos_token_id=0,
    eos_token_id=0,
)


def make_rwkv(tmp):
    from transformers import RwkvConfig, RwkvForCausalLM

    torch.manual_seed(0)
    ref = RwkvForCausalLM(RwkvConfig(**RWKV_169M))
    path = os.path.join(tmp, "rwkv-169m")
    ref.save_pretrained(path)
    return path


def step_bytes(model) -> int:
    """float32 bytes one decode step reads: every Linear weight, the LM head, the state."""

    def lin(x):
        return x.in_features * x.out_features * 4

    n = lin(model.head)
    for b in model.blocks:
        for layer in (
            b.att_key,
            b.att_value,
            b.att_receptance,
            b.att_output,
            b.ffn_key,
            b.ffn_receptance,
            b.ffn_value,
        ):
            n += lin(layer)
    return n + model.new_cache(1).nbytes


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    tfcore.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    tfcore.show_config()
    bandwidth = measured_bandwidth(args.threads)
    print(isa_line())
    print(f"read bandwidth measured now: {bandwidth:.1f} GB/s ({args.threads} threads)\n")
    contexts = (128, 1024) if args.quick else (128, 1024, 8192)
    steps, reps = (8, 3) if args.quick else (16, 5)
    prefill_T = 512 if args.quick else 2048
    rows = []
    from transformers import RwkvForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        path = make_rwkv(tmp)
        ours = tfcore.AutoModelForCausalLM.from_pretrained(path)
        ref = RwkvForCausalLM.from_pretrained(path).eval()
        nbytes = step_bytes(ours)
        rng = np.random.default_rng(0)
        # validate: logits of a prompt, and 16 greedy tokens (B=1: HF's batched RWKV generate
        # disagrees with its own forward, see tests/test_rwkv.py)
        ids = rng.integers(100, 50000, size=(1, 64))
        with torch.inference_mode():
            want = ref(torch.from_numpy(ids), use_cache=False).logits.numpy()
            err = float(np.abs(ours(ids).logits - want).max() / np.abs(want).max())
            hf_tok = ref.generate(
                torch.from_numpy(ids), max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0
            ).numpy()
        agree = float(
            (ours.generate(ids, max_new_tokens=16, eos_token_id=[])[:, 64:] == hf_tok[:, 64:]).mean()
        )
        print(f"validation: max rel. logit diff {err:.1e}, greedy tokens agree {100 * agree:.0f}%\n")
        for ctx in contexts:
            ctx_ids = rng.integers(100, 50000, size=(1, ctx))
            state = ours.new_cache(1)
            t0 = time.perf_counter()
            ours(ctx_ids, past_key_values=state, logits_to_keep=1)
            t_ours_prefill = time.perf_counter() - t0
            with torch.inference_mode():
                t0 = time.perf_counter()
                hf_state = ref(torch.from_numpy(ctx_ids), use_cache=True).state
                t_hf_prefill = time.perf_counter() - t0
            tok = np.array([[1234]])
            ttok = torch.from_numpy(tok)

            def run_ours():
                for _ in range(steps):
                    ours(tok, past_key_values=state)

            def run_hf():
                s = hf_state
                for _ in range(steps):
                    s = ref(ttok, state=s, use_cache=True).state

            with torch.inference_mode():
                t = interleaved({"tfcore": run_ours, "hf": run_hf}, repeat=reps, warmup=1)
            gbs = nbytes * steps / t["tfcore"] / 1e9
            rows.append(
                [
                    f"decode B=1, context {ctx}",
                    f"{steps / t['tfcore']:.1f} tok/s",
                    f"{steps / t['hf']:.1f} tok/s",
                    f"{t['hf'] / t['tfcore']:.2f}",
                    f"{gbs:.1f} ({100 * gbs / bandwidth:.0f}%)",
                    f"prefill once: {t_ours_prefill:.2f} s vs HF {t_hf_prefill:.1f} s",
                ]
            )
        long_ids = rng.integers(100, 50000, size=(1, prefill_T))
        with torch.inference_mode():
            got = ours(long_ids, logits_to_keep=1).logits
            want = ref(torch.from_numpy(long_ids), use_cache=False).logits[:, -1:].numpy()
            err = float(np.abs(got - want).max() / np.abs(want).max())
            t = interleaved(
                {
                    "tfcore": lambda: ours(long_ids, logits_to_keep=1),
                    "hf": lambda: ref(torch.from_numpy(long_ids), use_cache=False),
                },
                repeat=3,
                warmup=0,
            )
        rows.append(
            [
                f"prefill {prefill_T} tokens",
                f"{t['tfcore'] * 1e3:.0f} ms",
                f"{t['hf'] * 1e3:.0f} ms",
                f"{t['hf'] / t['tfcore']:.2f}",
                "-",
                f"max rel. logit diff {err:.1e}",
            ]
        )
    print(f"weights + state read per decode step: {nbytes / 1e6:.0f} MB (float32)")
    print_table(
        ["RWKV-4 169M-shaped", "tfcore", "HF", "HF/tfcore time", "tfcore GB/s (% of measured)", "notes"], rows
    )


if __name__ == "__main__":
    main()
