"""Decoder wave 2 (Qwen2, Qwen3, Phi-3, Gemma 2, GPT-NeoX, Falcon): fp32 greedy decoding at
B=1, 128 new tokens after a 32-token prompt, tfcore vs Hugging Face ``generate`` (SDPA; eager
for Gemma 2, whose soft-capped attention HF runs only there) on torch,
same process, same threads, interleaved runs (bench_decode.decode_row: output checked as
greedy agreement first, medians, HF/tfcore time ratio, GB/s against the read bandwidth
measured in the same run). Random ~60M-parameter models of each family's shape (GQA where
the family has it).

    python benchmarks/bench_decoders_wave2.py [--quick] [--threads 2] [--avx2] [--only gemma]

--avx2 re-runs itself with TFCORE_ISA=avx2 ONEDNN_MAX_CPU_ISA=AVX2 (what a CPU without
AVX-512 gets).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

if "--avx2" in sys.argv and os.environ.get("TFCORE_ISA") != "avx2":
    os.environ.update(TFCORE_ISA="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
    os.execv(sys.executable, [sys.executable, *sys.argv])

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_decode import decode_row, measured_bandwidth  # noqa: E402
from common import isa_line, print_table  # noqa: E402

import tfcore  # noqa: E402

# shared shape: vocab 32000, hidden 512, 8 layers, 8 heads of 64
COMMON = dict(
    vocab_size=32000,
    hidden_size=512,
    num_hidden_layers=8,
    num_attention_heads=8,
    bos_token_id=1,
    eos_token_id=2,
)


def make_models(tmp, only=None):
    import transformers as T

    specs = {
        "Qwen2 (GQA 8/2, qkv bias)": (
            T.Qwen2ForCausalLM,
            T.Qwen2Config(**COMMON, num_key_value_heads=2, intermediate_size=1408),
        ),
        "Qwen3 (GQA 8/2, q/k norm)": (
            T.Qwen3ForCausalLM,
            T.Qwen3Config(**COMMON, num_key_value_heads=2, head_dim=64, intermediate_size=1408),
        ),
        "Phi-3 (fused qkv/gate-up)": (
            T.Phi3ForCausalLM,
            T.Phi3Config(**COMMON, num_key_value_heads=8, intermediate_size=1408, pad_token_id=0),
        ),
        "Gemma 2 (GQA 8/4, soft-caps, window 64)": (
            T.Gemma2ForCausalLM,
            T.Gemma2Config(
                **COMMON,
                num_key_value_heads=4,
                head_dim=64,
                intermediate_size=1408,
                query_pre_attn_scalar=64,
                sliding_window=64,  # layers 0, 2, ... slide: the 160 positions go past it
                pad_token_id=0,
            ),
        ),
        "GPT-NeoX (parallel, rotary 25%)": (
            T.GPTNeoXForCausalLM,
            T.GPTNeoXConfig(**COMMON, intermediate_size=2048, rotary_pct=0.25),
        ),
        "Falcon (multi-query, parallel)": (
            T.FalconForCausalLM,
            T.FalconConfig(**COMMON, ffn_hidden_size=2048),
        ),
        "Falcon new arch (GQA 8/2)": (
            T.FalconForCausalLM,
            T.FalconConfig(**COMMON, num_kv_heads=2, new_decoder_architecture=True, ffn_hidden_size=2048),
        ),
    }
    out = {}
    for i, (name, (cls, cfg)) in enumerate(specs.items()):
        if only and only.lower() not in name.lower():
            continue
        torch.manual_seed(0)
        path = os.path.join(tmp, f"m{i}")
        cls(cfg).save_pretrained(path)
        out[name] = (path, cls)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--avx2", action="store_true", help="TFCORE_ISA=avx2 ONEDNN_MAX_CPU_ISA=AVX2")
    ap.add_argument("--only", default=None, help="the models whose name contains this (e.g. gemma)")
    args = ap.parse_args()
    tfcore.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    print(isa_line())
    bandwidth = measured_bandwidth(args.threads)
    print(f"read bandwidth measured now: {bandwidth:.1f} GB/s ({args.threads} threads)\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (path, cls) in make_models(tmp, args.only).items():
            ours = tfcore.AutoModelForCausalLM.from_pretrained(path)
            impl = "eager" if cls.__name__.startswith("Gemma2") else "sdpa"
            ref = cls.from_pretrained(path, attn_implementation=impl).eval()
            new_tokens, reps = (32, 1) if args.quick else (128, 3)
            rows.append([f"{name} B=1", *decode_row(ours, ref, 1, new_tokens, reps, bandwidth)])
            del ours, ref
    print_table(
        [
            "model (fp32)",
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
