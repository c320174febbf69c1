"""A short workload over every C type and loader, including rejected calls (error paths
are where leaks hide), for tools/valgrind.sh."""

import os
import sys
import tempfile

import numpy as np

import tfcore
from tfcore import functional as F
from tfcore.safetensors import save_file

rng = np.random.default_rng(0)
r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
C, H, KVH, D = 16, 4, 2, 4


def rejected(fn):
    try:
        fn()
    except tfcore.TfcoreError:
        return
    raise AssertionError("expected a TfcoreError")


for dtype in tfcore.supported_dtypes():
    lin = tfcore.Linear(r(24, C), r(24), activation="gelu", dtype=dtype)
    for M in (1, 3, 7):
        lin(r(M, C))
        lin(r(M, C), r(M, 24))
    rejected(lambda: lin(r(2, C + 1)))
    ffn = tfcore.FeedForward(r(32, C), r(C, 32), gate_weight=r(32, C), activation="silu", dtype=dtype)
    ffn(r(2, 3, C))
    mha = tfcore.MultiHeadAttention(
        C,
        H,
        num_key_value_heads=KVH,
        q_weight=r(C, C),
        k_weight=r(KVH * D, C),
        v_weight=r(KVH * D, C),
        o_weight=r(C, C),
        is_causal=True,
        rope_theta=1e4,
        dtype=dtype,
    )
    blk = tfcore.TransformerBlock(
        mha,
        ffn,
        tfcore.RMSNorm(np.ones(C, np.float32)),
        tfcore.LayerNorm(np.ones(C, np.float32), np.zeros(C, np.float32)),
    )
    blk(r(2, 5, C), np.ones((2, 5), np.int64))
    for kv in ("float32", "bfloat16", "int8"):
        cache = tfcore.KVCache(1, 2, KVH, D, capacity=2, policy="tova", budget=4, dtype=kv)
        for T in (3, 1, 1, 1):
            mha(r(2, T, C), past_key_values=cache, layer_idx=0)
        cache.reorder(np.array([1, 0]))
        cache.keys(0), cache.values(0), repr(cache)
        rejected(lambda: mha(r(3, 1, C), past_key_values=cache, layer_idx=0))
F.scaled_dot_product_attention(
    r(1, 4, 6, 8), r(1, 2, 7, 8), r(1, 2, 7, 8), enable_gqa=True, return_weights=True
)
rejected(lambda: F.scaled_dot_product_attention(r(1, 4, 6, 8), r(1, 4, 7, 9), r(1, 4, 7, 8)))
emb = tfcore.Embedding(r(50, C))
emb(np.array([[1, 2, 3]]))
rejected(lambda: emb(np.array([60])))

d = tempfile.mkdtemp()
save_file({"a": r(3, 4)}, os.path.join(d, "x.safetensors"))
tfcore.safetensors.SafetensorsFile(os.path.join(d, "x.safetensors")).float32("a")
if len(sys.argv) > 1:  # a tiny HF checkpoint directory: load, run, generate
    m = tfcore.AutoModelForCausalLM.from_pretrained(
        sys.argv[1], dtype="int8" if "int8" in tfcore.supported_dtypes() else "float32"
    )
    m.generate(np.array([[1, 2, 3]]), max_new_tokens=4, cache_dtype="int8")
    rejected(lambda: m(np.array([[10**6]])))
print("workload done")
