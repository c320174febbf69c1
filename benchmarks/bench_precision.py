"""Precision benchmark: tfcore float32 and bfloat16 against PyTorch (HF transformers) in the
same precisions, same process, same threads, interleaved, medians and ratios; plus the
accuracy bf16 costs, measured before timing.

    python benchmarks/bench_precision.py [--quick] [--threads 2]

Cases: BERT-base B=8 S=128, ViT-B/16 B=8 (random weights at real size), and greedy decoding
of 128 new tokens after 32 at batch 1 for GPT-2 small and a ~100M Llama-style model.
Accuracy: BERT/ViT max abs error and cosine of the outputs vs tfcore fp32; decoders: logit
max abs error, greedy agreement teacher-forced on the fp32 continuation (per-step argmax
agreement, no compounding), and free-running agreement (tokens equal to fp32's generate).
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

import tfcore  # noqa: E402
from bench_decode import hf_greedy, make_models  # noqa: E402
from bench_models import bert_base, vit_base  # noqa: E402
from common import interleaved, print_table  # noqa: E402


def cosine(a, b):
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def bench_encoder(name, path, cls, hf_cls, x, quick):
    ours = {dt: cls.from_pretrained(path, dtype=dt) for dt in ("float32", "bfloat16")}
    hf32 = hf_cls.from_pretrained(path, attn_implementation="sdpa").eval()
    hf16 = hf_cls.from_pretrained(path, attn_implementation="sdpa", torch_dtype=torch.bfloat16).eval()
    tx = torch.from_numpy(x)
    tx16 = tx.to(torch.bfloat16) if x.dtype == np.float32 else tx  # pixels in bf16; ids as they are
    with torch.inference_mode():
        want = hf32(tx).last_hidden_state.numpy()
        f32 = ours["float32"](x).last_hidden_state
        b16 = ours["bfloat16"](x).last_hidden_state
        t16 = hf16(tx16).last_hidden_state.float().numpy()
        if not np.abs(f32 - want).max() < 1e-3:
            raise SystemExit(f"{name}: tfcore fp32 differs from HF by {np.abs(f32 - want).max():.3g}")
        acc = (f"bf16 vs fp32: max abs {np.abs(b16 - f32).max():.3f}, min cosine {cosine(b16, f32):.5f} "
               f"(torch bf16: {np.abs(t16 - want).max():.3f}, {cosine(t16, want):.5f})")
        t = interleaved({"fp32": lambda: ours["float32"](x), "bf16": lambda: ours["bfloat16"](x),
                         "hf-fp32": lambda: hf32(tx), "hf-bf16": lambda: hf16(tx16)},
                        repeat=3 if quick else 7, warmup=2)
    return [name, *(f"{t[k] * 1e3:.1f} ms" for k in ("fp32", "bf16", "hf-fp32", "hf-bf16")),
            f"{t['fp32'] / t['bf16']:.2f}", f"{t['hf-fp32'] / t['fp32']:.2f}", f"{t['hf-bf16'] / t['bf16']:.2f}", acc]


def bench_decoder(name, path, hf_cls, new_tokens, reps):
    ours = {dt: tfcore.AutoModelForCausalLM.from_pretrained(path, dtype=dt) for dt in ("float32", "bfloat16")}
    hf = {"fp32": hf_cls.from_pretrained(path, attn_implementation="sdpa").eval(),
          "bf16": hf_cls.from_pretrained(path, attn_implementation="sdpa", torch_dtype=torch.bfloat16).eval()}
    ids = np.random.default_rng(0).integers(100, ours["float32"].vocab_size - 100, size=(1, 32))
    tids, tmask = torch.from_numpy(ids), torch.ones(1, 32, dtype=torch.long)

    def gen(m):
        return m.generate(ids, max_new_tokens=new_tokens, eos_token_id=[])

    def gen_hf(m):
        return hf_greedy(m, tids, tmask, new_tokens)

    with torch.inference_mode():
        seq32 = gen(ours["float32"])
        seq16 = gen(ours["bfloat16"])
        # teacher-forced on the fp32 continuation: per-step logits and argmax, no compounding
        l32 = ours["float32"](seq32).logits[0, 31:-1]
        l16 = ours["bfloat16"](seq32).logits[0, 31:-1]
        tf_agree = float((l32.argmax(-1) == l16.argmax(-1)).mean())
        free = int(np.argmax(np.append(seq32[0, 32:] != seq16[0, 32:], True)))
        acc = (f"logits max abs {np.abs(l16 - l32).max():.3f} (max |logit| {np.abs(l32).max():.1f}); "
               f"teacher-forced greedy agreement {100 * tf_agree:.1f}%; free-running equal for {free} tokens")
        if not (gen_hf(hf["fp32"]).numpy() == seq32).all():
            raise SystemExit(f"{name}: tfcore fp32 greedy differs from HF")
        fns = {"fp32": lambda: gen(ours["float32"]), "bf16": lambda: gen(ours["bfloat16"]),
               "hf-fp32": lambda: gen_hf(hf["fp32"]), "hf-bf16": lambda: gen_hf(hf["bf16"])}
        times = {k: [] for k in fns}
        for _ in range(reps):
            for k, f in fns.items():
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    t = {k: float(np.median(v)) for k, v in times.items()}
    return [f"{name} decode B=1", *(f"{new_tokens / t[k]:.1f} tok/s" for k in ("fp32", "bf16", "hf-fp32", "hf-bf16")),
            f"{t['fp32'] / t['bf16']:.2f}", f"{t['hf-fp32'] / t['fp32']:.2f}", f"{t['hf-bf16'] / t['bf16']:.2f}", acc]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if "bfloat16" not in tfcore.supported_dtypes():
        raise SystemExit("this CPU has no fast bf16 matmul; nothing to compare")
    tfcore.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    tfcore.show_config()
    print(f"torch {torch.__version__}\n")
    from transformers import BertModel, ViTModel

    rows = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(bench_encoder("BERT-base B=8 S=128", bert_base(tmp), tfcore.models.BertModel, BertModel,
                                  rng.integers(1000, 30000, size=(8, 128)), args.quick))
        rows.append(bench_encoder("ViT-B/16 B=8", vit_base(tmp), tfcore.models.ViTModel, ViTModel,
                                  rng.standard_normal((8, 3, 224, 224)).astype(np.float32), args.quick))
        for name, (path, cls) in make_models(tmp).items():
            rows.append(bench_decoder(name, path, cls, 32 if args.quick else 128, 1 if args.quick else 3))
    print_table(["case", "tfcore fp32", "tfcore bf16", "torch fp32", "torch bf16", "bf16 speed-up",
                 "tfcore/torch fp32", "tfcore/torch bf16", "bf16 accuracy"], rows)


if __name__ == "__main__":
    main()
