"""Decoding benchmarks: greedy generation of 128 new tokens after a 32-token prompt, tfcore
vs Hugging Face ``generate`` on torch, same process, same threads, alternating runs; plus a
2,048-token prefill. Decoding is memory-bound: achieved GB/s = weight bytes read per step
x steps per second, against the read bandwidth measured in the same run.

    python benchmarks/bench_decode.py [--quick] [--threads 2]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import interleaved, isa_line, print_table  # noqa: E402

import tfcore  # noqa: E402


def measured_bandwidth(threads: int, nbytes: int = 512 * 2**20, reps: int = 7) -> float:
    """GB/s of plain reads right now (the VM is shared: bandwidth varies from run to run):
    the fastest of torch's vectorised, threaded reductions (sum, max, dot) over a buffer far
    larger than the caches, median of `reps` runs each. (NumPy's pairwise sum reads only
    ~60% as fast and would make the bound look lower than it is.)"""
    torch.set_num_threads(threads)
    a = torch.ones(nbytes // 4)
    best = 0.0
    for f in (a.sum, a.max, functools.partial(torch.dot, a, a)):
        f()
        samples = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f()
            samples.append(nbytes / (time.perf_counter() - t0) / 1e9)
        best = max(best, statistics.median(samples))
    del a
    return best


def make_models(tmp):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    gpt2 = os.path.join(tmp, "gpt2")
    GPT2LMHeadModel(GPT2Config()).save_pretrained(gpt2)  # 124M
    llama = os.path.join(tmp, "llama-100m")
    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=32000,
            hidden_size=640,
            intermediate_size=1728,
            num_hidden_layers=10,
            num_attention_heads=10,
            num_key_value_heads=2,
            tie_word_embeddings=True,
        )
    ).save_pretrained(llama)
    return {
        "GPT-2 small (124M)": (gpt2, GPT2LMHeadModel),
        "Llama-style ~100M (GQA 10/2)": (llama, LlamaForCausalLM),
    }


def step_bytes(model) -> int:
    """Weight bytes a decode step reads: every layer's packed weights plus the LM head."""
    n = 0
    for blk in model.layers:
        for lin in (
            blk.attention.qkv_proj,
            blk.attention.o_proj,
            blk.feed_forward.up,
            blk.feed_forward.down,
            blk.feed_forward.gate,
        ):
            if lin is not None:
                n += lin.in_features * lin.out_features * 4
    return n + model.lm_head.in_features * model.lm_head.out_features * 4


def hf_greedy(model, tids, tmask, new_tokens):
    """HF generate, greedy, exactly new_tokens tokens (no early stop), like tfcore's run."""
    return model.generate(
        tids,
        attention_mask=tmask,
        max_new_tokens=new_tokens,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
        min_new_tokens=new_tokens,
    )


def decode_row(ours, ref, batch, new_tokens, reps, bandwidth, prompt=32):
    """Greedy decoding of `new_tokens` after a random `prompt`-token batch, tfcore and HF
    alternating `reps` times: [tfcore tok/s, HF tok/s, HF/tfcore time, tfcore GB/s (% of the
    measured bandwidth), bandwidth-bound tok/s, greedy agreement with HF]."""
    ids = np.random.default_rng(0).integers(100, ours.vocab_size - 100, size=(batch, prompt))
    tids, tmask = torch.from_numpy(ids), torch.ones(batch, prompt, dtype=torch.long)

    def run_ours():
        return ours.generate(ids, max_new_tokens=new_tokens, eos_token_id=[])

    def run_hf():
        return hf_greedy(ref, tids, tmask, new_tokens)

    with torch.inference_mode():
        a, b = run_ours(), run_hf().numpy()
        agree = float((a[:, prompt:] == b[:, prompt:]).mean())
        t = interleaved({"tfcore": run_ours, "hf": run_hf}, repeat=reps, warmup=0)
    tps = {k: batch * new_tokens / v for k, v in t.items()}
    nbytes = step_bytes(ours)
    gbs = nbytes * new_tokens / t["tfcore"] / 1e9
    return [
        f"{tps['tfcore']:.1f}",
        f"{tps['hf']:.1f}",
        f"{t['hf'] / t['tfcore']:.2f}",
        f"{gbs:.1f} ({100 * gbs / bandwidth:.0f}%)",
        f"{bandwidth * 1e9 / nbytes * batch:.0f}",
        f"{100 * agree:.0f}%",
    ]


def bench(name, path, hf_cls, batch, new_tokens, reps, bandwidth):
    ours = tfcore.AutoModelForCausalLM.from_pretrained(path)
    ref = hf_cls.from_pretrained(path, attn_implementation="sdpa").eval()
    return [f"{name} B={batch}", *decode_row(ours, ref, batch, new_tokens, reps, bandwidth)]


def prefill(name, path, hf_cls, T=2048):
    ours = tfcore.AutoModelForCausalLM.from_pretrained(path)
    T = min(T, getattr(ours, "max_positions", T))  # GPT-2 knows 1,024 positions
    ref = hf_cls.from_pretrained(path, attn_implementation="sdpa").eval()
    ids = np.random.default_rng(1).integers(100, ours.vocab_size - 100, size=(1, T))
    with torch.inference_mode():
        ours(ids, logits_to_keep=1)
        t0 = time.perf_counter()
        ours(ids, logits_to_keep=1)
        a = time.perf_counter() - t0
        ref(torch.from_numpy(ids), logits_to_keep=1)
        t0 = time.perf_counter()
        ref(torch.from_numpy(ids), logits_to_keep=1)
        b = time.perf_counter() - t0
    return [
        f"{name} prefill {T} tokens",
        f"{a * 1e3:.0f} ms",
        f"{b * 1e3:.0f} ms",
        f"{b / a:.2f}",
        "-",
        "-",
        "-",
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    tfcore.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    tfcore.show_config()
    rows = []
    bandwidth = measured_bandwidth(args.threads)
    print(isa_line())
    print(f"read bandwidth measured now: {bandwidth:.1f} GB/s ({args.threads} threads)\n")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (path, cls) in make_models(tmp).items():
            for batch in (1, 8):
                rows.append(
                    bench(
                        name, path, cls, batch, 32 if args.quick else 128, 1 if args.quick else 3, bandwidth
                    )
                )
            rows.append(prefill(name, path, cls))
    print_table(
        [
            "model",
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
