"""The bad-input battery: every public entry point fed wrong input, run in a child process
by test_robustness.py so that a crash cannot hide (or take pytest down with it).

    python tests/robustness_cases.py MODEL_DIR...   (prints one JSON line per event)

Each case is (id, code, expected exception type or None, message regex). The code runs in a
namespace with fresh small layers (see setup()); a case expecting None must simply not
raise (the state checks after rejected calls). Before a case the runner prints
{"start": id}, after it {"id": id, "raised": [type names of the MRO], "message": ...}: a
crash leaves a start without its result, and the parent names the case.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile
import traceback

import numpy as np

VE, TE = "TfcoreValueError", "TfcoreTypeError"
CK = "CheckpointError"


def setup(model_dirs):
    import tfcore
    from tfcore import functional as F

    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    C, H, KVH, D = 16, 4, 2, 4
    ns = dict(
        np=np,
        tfcore=tfcore,
        F=F,
        r=r,
        C=C,
        KVH=KVH,
        D=D,
        tmp=tempfile.mkdtemp(),
        struct=struct,
        json=json,
        os=os,
        tempfile=tempfile,
        # a pickle that would run os.system (a marker file) if anything executed it
        EVIL_PICKLE=b"cos\nsystem\n(S'touch "
        + os.path.join(tempfile.gettempdir(), "tfcore-pwned").encode()
        + b"'\ntR.",
    )
    ns["lin"] = tfcore.Linear(r(8, C), r(8))
    ns["ln"] = tfcore.LayerNorm(np.ones(C, np.float32), np.zeros(C, np.float32))
    ns["rms"] = tfcore.RMSNorm(np.ones(C, np.float32))
    ns["emb"] = tfcore.Embedding(r(50, C))
    ns["ffn"] = tfcore.FeedForward(r(32, C), r(C, 32), activation="gelu")
    ns["mha"] = tfcore.MultiHeadAttention(
        C,
        H,
        num_key_value_heads=KVH,
        q_weight=r(C, C),
        k_weight=r(KVH * D, C),
        v_weight=r(KVH * D, C),
        o_weight=r(C, C),
        is_causal=True,
        rope_theta=1e4,
    )
    ns["moe"] = tfcore.MixtureOfExperts(
        r(4, C),
        [tfcore.FeedForward(r(24, C), r(C, 24), gate_weight=r(24, C), activation="silu") for _ in range(4)],
    )
    ns["blk"] = tfcore.TransformerBlock(
        ns["mha"], ns["ffn"], ns["rms"], tfcore.RMSNorm(np.ones(C, np.float32))
    )
    ns["cache"] = tfcore.KVCache(1, 2, KVH, D, capacity=4)
    ns["conv"] = tfcore.Conv2d(r(8, 3, 3, 3), r(8), padding=1)
    ns["conv1"] = tfcore.Conv1d(r(4, 2, 5), stride=2)
    ns["mha"](r(2, 3, C), past_key_values=ns["cache"], layer_idx=0)  # 3 tokens cached
    ns["rstate"] = tfcore.RecurrentState(2, 2, {"state": (4, 3, 5), "z": (4, 3)})
    ns["x"] = r(2, 5, C)
    ns["q"], ns["k"], ns["v"] = r(1, 4, 6, 8), r(1, 4, 7, 8), r(1, 4, 7, 8)
    ns["wk"], ns["wv"], ns["wc"] = r(2, 3, 5), r(2, 3, 5), r(5)  # RWKV: (B, T, C) and (C,)
    ns["wst"] = tuple(np.zeros((2, 5), np.float32) for _ in range(3))
    for d in model_dirs:
        ns[os.path.basename(d).replace("-", "_")] = d
    return ns


def ckpt_case(header, data=b"", raw_header=None, length=None):
    """Code that writes a hand-made safetensors file and loads it."""
    return (
        f"p = os.path.join(tmp, 'bad.safetensors'); h = {raw_header!r} or json.dumps({header!r}).encode()\n"
        f"open(p, 'wb').write(struct.pack('<Q', {length!r} if {length!r} is not None else len(h)) + h + {data!r})\n"
        "tfcore.safetensors.SafetensorsFile(p)"
    )


def model_dir_case(config, files=None):
    """Code that writes a model directory (config.json as given, optional files) and loads it."""
    return (
        "d = tempfile.mkdtemp(dir=tmp)\n"
        f"open(os.path.join(d, 'config.json'), 'w').write({config!r})\n"
        f"[open(os.path.join(d, n), 'wb').write(b) for n, b in {files or {}!r}.items()]\n"
        "tfcore.AutoModel.from_pretrained(d)"
    )


def rwkv6_dir_case(changes):
    """Code that writes an rwkv6 model directory (a valid config updated by changes, a
    safetensors file holding only the embeddings) and loads it as a causal LM."""
    cfg = {
        "model_type": "rwkv6",
        "hidden_size": 6,
        "num_hidden_layers": 1,
        "vocab_size": 5,
        "num_heads": 2,
        "expand_k": 1.0,
    }
    cfg.update(changes)
    return (
        "d = tempfile.mkdtemp(dir=tmp)\n"
        f"open(os.path.join(d, 'config.json'), 'w').write({json.dumps(cfg)!r})\n"
        "tfcore.safetensors.save_file({'model.embeddings.weight': np.zeros((5, 6), np.float32)},"
        " os.path.join(d, 'model.safetensors'))\n"
        "tfcore.AutoModelForCausalLM.from_pretrained(d)"
    )


def siglip_config_case(changes, source="siglip"):
    """Code that copies the tiny SigLIP (or source) directory with its config.json's values
    updated by changes (a dict updates a sub-config, anything else replaces the value), and
    loads it."""
    return (
        "import shutil; d = tempfile.mkdtemp(dir=tmp)\n"
        f"shutil.copy(os.path.join({source}, 'model.safetensors'), d)\n"
        f"cfg = json.load(open(os.path.join({source}, 'config.json')))\n"
        f"for k, v in {changes!r}.items(): cfg[k] = {{**cfg[k], **v}} if isinstance(v, dict) else v\n"
        "json.dump(cfg, open(os.path.join(d, 'config.json'), 'w'))\n"
        "tfcore.AutoModel.from_pretrained(d)"
    )


# the fuzz harness (its GGUF writer) beside tests/: the repository's, not beside the installed
# tfcore (CI tests an installed wheel, whose site-packages has no fuzz/)
FUZZ_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz")


def gguf_case(expr, call="tfcore.AutoModelForCausalLM.from_pretrained(p)"):
    """Code that writes a GGUF file (expr: bytes, built with fuzz/harness.py's writer in the
    child, or a mutation of its valid tiny Llama file `good`) and loads it."""
    return (
        f"import sys; sys.path.insert(0, {FUZZ_DIR!r})\n"
        "import harness; good = harness.tiny_llama_gguf(2); S = harness.gguf_string\n"
        f"p = os.path.join(tmp, 'bad.gguf'); open(p, 'wb').write({expr})\n"
        f"{call}"
    )


def gptq_case(qc, layer="harness.gptq_awq_layer('gptq')", call="AutoModelForCausalLM"):
    """Code that writes a GPTQ / AWQ checkpoint directory (quantization_config qc, one packed
    layer from fuzz/harness.py, optionally mutated) and loads it."""
    return (
        f"import sys, json; sys.path.insert(0, {FUZZ_DIR!r})\n"
        "import harness; from tfcore.safetensors import save_file\n"
        f"d = os.path.join(tmp, 'gptq'); os.makedirs(d, exist_ok=True); t = {layer}\n"
        "save_file(t, os.path.join(d, 'model.safetensors'))\n"
        f"open(os.path.join(d, 'config.json'), 'w').write(json.dumps({{'model_type': 'llama', "
        f"'quantization_config': {qc!r}}}))\n"
        "from tfcore.config import Config; from tfcore.gptq_awq import wrap; "
        "from tfcore.safetensors import Checkpoint\n"
        "ck = wrap(Checkpoint(d), Config.from_dir(d)); [ck.float32(k) for k in ck]; "
        "[ck.int4_linear(k) for k in ck]"
    )


_GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 32, "sym": True}

CASES = [
    # ---- GPTQ / AWQ checkpoints (tfcore/gptq_awq.py)
    ("gptq/bits 3", gptq_case({**_GPTQ, "bits": 3}), CK, "bits is 3"),
    ("gptq/method", gptq_case({**_GPTQ, "quant_method": "hqq"}), CK, "quant_method 'hqq'"),
    ("gptq/awq gemv", gptq_case({**_GPTQ, "quant_method": "awq", "version": "gemv"}), CK, "gemv"),
    ("gptq/group 0", gptq_case({**_GPTQ, "group_size": 0}), CK, "group_size"),
    (
        "gptq/g_idx range",
        gptq_case(_GPTQ, "harness.gptq_awq_layer('gptq'); t['p.g_idx'][3] = 7"),
        CK,
        "g_idx holds groups",
    ),
    (
        "gptq/scales shape",
        gptq_case(_GPTQ, "harness.gptq_awq_layer('gptq'); t['p.scales'] = t['p.scales'][:, :8]"),
        CK,
        "p.scales has shape",
    ),
    (
        "gptq/awq qweight as gptq",
        gptq_case({**_GPTQ, "quant_method": "awq"}),
        CK,
        "qzeros has shape|scales has shape",
    ),
    (
        "gptq/NaN scales",
        gptq_case(_GPTQ, "harness.gptq_awq_layer('gptq'); t['p.scales'][0, 0] = np.nan"),
        CK,
        "NaN",
    ),
    # ---- attention logit soft-capping (Gemma 2)
    (
        "softcap/zero",
        "tfcore.MultiHeadAttention(C, 4, qkv_weight=r(3 * C, C), o_weight=r(C, C), softcap=0.0)",
        VE,
        "softcap must be",
    ),
    (
        "softcap/str",
        "tfcore.MultiHeadAttention(C, 4, qkv_weight=r(3 * C, C), o_weight=r(C, C), softcap='50')",
        TE,
        "softcap must be",
    ),
    (
        "softcap/sdpa inf",
        "F.scaled_dot_product_attention(r(1, 2, 3, 4), r(1, 2, 3, 4), r(1, 2, 3, 4), softcap=float('inf'))",
        VE,
        "softcap must be",
    ),
    # ---- Linear
    ("linear/x float64", "lin(np.ones((2, C)))", TE, "float32"),
    ("linear/x int", "lin(np.ones((2, C), np.int64))", TE, "float32"),
    ("linear/x list", "lin([[1.0] * C])", TE, "float32|array"),
    ("linear/x wrong last dim", "lin(r(2, C + 1))", VE, "last dim"),
    ("linear/x 0-d", "lin(np.float32(1))", TE, "ndarray"),
    ("linear/x 1-D scalar row", "lin(np.zeros((0,), np.float32))", VE, "last dim|empty"),
    ("linear/x non-contiguous", "lin(r(2, 2 * C)[:, ::2])", VE, "contiguous"),
    ("linear/x NaN", "a = r(2, C); a[1, 3] = np.nan; lin(a)", VE, "NaN"),
    ("linear/x Inf", "a = r(2, C); a[0, 0] = np.inf; lin(a)", VE, "Inf|NaN"),
    ("linear/x empty", "lin(np.zeros((0, C), np.float32))", VE, "empty"),
    (
        "linear/out read-only",
        "o = np.zeros((2, 8), np.float32); o.flags.writeable = False; lin(r(2, C), out=o)",
        VE,
        "read-only",
    ),
    ("linear/out wrong shape", "lin(r(2, C), out=np.zeros((2, 9), np.float32))", VE, "out"),
    (
        "linear/out misaligned",
        "b = np.zeros(2 * 8 * 4 + 1, np.uint8)[1:].view(np.float32).reshape(2, 8); lin(r(2, C), out=b)",
        VE,
        "align",
    ),
    (
        "linear/out overlaps x",
        "a = r(2, 8); lin2 = tfcore.Linear(r(8, 8)); lin2(a, out=a)",
        VE,
        "share memory",
    ),
    ("linear/residual wrong shape", "lin(r(2, C), r(2, 7))", VE, "residual"),
    ("linear/weight float64", "tfcore.Linear(np.ones((4, 3)))", TE, "weight.*float32"),
    ("linear/weight 1-D", "tfcore.Linear(np.ones(4, np.float32))", VE, "weight"),
    ("linear/weight empty", "tfcore.Linear(np.zeros((0, 3), np.float32))", VE, "empty"),
    ("linear/weight NaN", "w = r(4, 3); w[0, 0] = np.nan; tfcore.Linear(w)", VE, "NaN"),
    ("linear/bias wrong length", "tfcore.Linear(r(4, 3), r(5))", VE, "bias"),
    ("linear/unknown activation", "tfcore.Linear(r(4, 3), activation='swiglu')", VE, "activation"),
    ("linear/unknown dtype", "tfcore.Linear(r(4, 3), dtype='int3')", VE, "dtype"),
    ("linear/int4 group size", "tfcore.Linear(r(4, 64), dtype='int4', group_size=48)", VE, "group_size"),
    (
        "linear/int4 group size bool",
        "tfcore.Linear(r(4, 64), dtype='int4', group_size=True)",
        TE,
        "group_size",
    ),
    ("linear/int4 malformed dtype", "tfcore.Linear(r(4, 64), dtype='int4_g')", VE, "int4_g"),
    ("linear/group size without int4", "tfcore.Linear(r(4, 64), group_size=32)", VE, "int4"),
    (
        "linear/int4 weight NaN",
        "w = r(4, 64); w[1, 2] = np.inf; tfcore.Linear(w, dtype='int4')",
        VE,
        "NaN|Inf",
    ),
    (
        "linear/int4 tiny K and wrong x",
        "l4 = tfcore.Linear(r(3, 1), dtype='int4_g32'); assert l4(r(2, 1)).shape == (2, 3); l4(r(2, 2))",
        VE,
        "in_features=1",
    ),
    (
        "linear/from_int4 values out of range",
        "tfcore.Linear.from_int4(np.full((4, 32), 16, np.uint8), r(4, 1), r(4, 1), group_size=32)",
        VE,
        "0..15",
    ),
    (
        "linear/from_int4 values float",
        "tfcore.Linear.from_int4(np.zeros((4, 32), np.float32), r(4, 1), r(4, 1), group_size=32)",
        TE,
        "uint8",
    ),
    (
        "linear/from_int4 scales wrong shape",
        "tfcore.Linear.from_int4(np.zeros((4, 64), np.uint8), r(4, 1), r(4, 2), group_size=32)",
        VE,
        "scales has shape",
    ),
    (
        "linear/from_int4 offsets NaN",
        "o = r(4, 2); o[0, 1] = np.nan; tfcore.Linear.from_int4(np.zeros((4, 64), np.uint8), r(4, 2), o, group_size=32)",
        VE,
        "offsets",
    ),
    (
        "linear/from_int4 empty",
        "tfcore.Linear.from_int4(np.zeros((0, 64), np.uint8), r(0, 2), r(0, 2), group_size=32)",
        VE,
        "non-empty",
    ),
    (
        "linear/from_int4 no group size",
        "tfcore.Linear.from_int4(np.zeros((4, 64), np.uint8), r(4, 2), r(4, 2))",
        TE,
        "group_size",
    ),
    ("linear/missing weight", "tfcore.Linear()", TE, "weight"),
    ("linear/unknown keyword", "tfcore.Linear(r(4, 3), activaton='gelu')", TE, "activaton"),
    ("linear/usable after errors", "assert lin(r(2, C)).shape == (2, 8)", None, ""),
    # ---- norms and embeddings
    ("layernorm/x wrong last dim", "ln(r(2, C + 1))", VE, "last dim|hidden|normalized"),
    (
        "layernorm/weight bias mismatch",
        "tfcore.LayerNorm(np.ones(4, np.float32), np.zeros(5, np.float32))",
        VE,
        "bias",
    ),
    (
        "layernorm/negative eps",
        "tfcore.LayerNorm(np.ones(4, np.float32), np.zeros(4, np.float32), eps=-1.0)",
        VE,
        "eps",
    ),
    ("rmsnorm/weight 2-D", "tfcore.RMSNorm(np.ones((2, 2), np.float32))", VE, "weight"),
    ("rmsnorm/x NaN", "a = r(1, C); a[0, 1] = np.nan; rms(a)", VE, "NaN"),
    ("embedding/id out of vocabulary", "emb(np.array([[1, 50]]))", VE, "outside|vocab|range"),
    ("embedding/negative id", "emb(np.array([-1]))", VE, "outside|range|negative"),
    ("embedding/float ids", "emb(np.array([1.0]))", TE, "int"),
    ("embedding/weight non-contiguous", "tfcore.Embedding(r(10, 8)[:, ::2])", VE, "contiguous"),
    # ---- feed-forward
    ("ffn/down mismatched", "tfcore.FeedForward(r(32, C), r(C, 31))", VE, "down|shape"),
    ("ffn/gate mismatched", "tfcore.FeedForward(r(32, C), r(C, 32), gate_weight=r(31, C))", VE, "gate"),
    ("ffn/x wrong last dim", "ffn(r(2, C - 1))", VE, "last dim"),
    # ---- mixture of experts
    ("moe/experts not a sequence", "tfcore.MixtureOfExperts(r(4, C), 4)", TE, "experts must be a sequence"),
    ("moe/experts a string", "tfcore.MixtureOfExperts(r(4, C), 'ffff')", TE, "experts must be a sequence"),
    ("moe/experts empty", "tfcore.MixtureOfExperts(r(0, C), [])", VE, "experts is empty"),
    ("moe/expert not a FeedForward", "tfcore.MixtureOfExperts(r(2, C), [ffn, lin])", TE, r"experts\[1\]"),
    (
        "moe/router rows != experts",
        "tfcore.MixtureOfExperts(r(3, C), moe.experts)",
        VE,
        "router_weight has 3 rows",
    ),
    ("moe/router float64", "tfcore.MixtureOfExperts(np.ones((4, C)), moe.experts)", TE, "float32"),
    ("moe/router NaN", "w = r(4, C); w[2, 1] = np.nan; tfcore.MixtureOfExperts(w, moe.experts)", VE, "NaN"),
    (
        "moe/expert hidden size",
        "tfcore.MixtureOfExperts(r(2, C + 1), moe.experts[:2])",
        VE,
        "experts\\[0\\] has hidden size",
    ),
    ("moe/top_k zero", "tfcore.MixtureOfExperts(r(4, C), moe.experts, top_k=0)", VE, "top_k=0"),
    ("moe/top_k above experts", "tfcore.MixtureOfExperts(r(4, C), moe.experts, top_k=5)", VE, "top_k=5"),
    ("moe/top_k float", "tfcore.MixtureOfExperts(r(4, C), moe.experts, top_k=1.5)", TE, "integer"),
    ("moe/x wrong last dim", "moe(r(2, C - 1))", VE, "last dim"),
    ("moe/x float64", "moe(np.ones((2, C)))", TE, "float32"),
    ("moe/x NaN", "a = r(2, C); a[1, 2] = np.nan; moe(a)", VE, "NaN"),
    ("moe/x empty", "moe(np.zeros((0, C), np.float32))", VE, "empty"),
    ("moe/route x Inf", "a = r(3, C); a[0, 0] = np.inf; moe.route(a)", VE, "Inf"),
    ("moe/route x list", "moe.route([[1.0] * C])", TE, "float32|array"),
    ("moe/out overlaps x", "a = r(2, C); moe(a, out=a)", VE, "share memory"),
    (
        "moe/block of another hidden size",
        "tfcore.TransformerBlock(mha, tfcore.MixtureOfExperts(r(2, 8), [tfcore.FeedForward(r(4, 8), r(8, 4))] * 2), rms, rms)",
        VE,
        "feed_forward has hidden size 8",
    ),
    (
        "moe/usable after errors",
        "assert moe(r(2, 3, C)).shape == (2, 3, C) and moe.route(r(5, C))[0].shape == (5, 2)",
        None,
        "",
    ),
    # ---- attention layer
    (
        "mha/heads do not divide",
        "tfcore.MultiHeadAttention(10, 3, q_weight=r(10, 10), k_weight=r(10, 10), "
        "v_weight=r(10, 10), o_weight=r(10, 10))",
        VE,
        "head",
    ),
    (
        "mha/kv heads do not divide",
        "tfcore.MultiHeadAttention(C, 4, num_key_value_heads=3, q_weight=r(C, C), "
        "k_weight=r(12, C), v_weight=r(12, C), o_weight=r(C, C))",
        VE,
        "key_value|kv",
    ),
    (
        "mha/weight shape",
        "tfcore.MultiHeadAttention(C, 4, q_weight=r(C, C + 1), k_weight=r(C, C), "
        "v_weight=r(C, C), o_weight=r(C, C))",
        VE,
        "q_weight|shape",
    ),
    ("mha/absurd size", "tfcore.MultiHeadAttention(10**12, 1)", VE, "weight|size|hidden"),
    ("mha/x rank", "mha(r(5, C))", VE, "hidden_states"),
    ("mha/x width", "mha(r(2, 5, C + 2))", VE, "hidden_states|hidden_size"),
    ("mha/mask shape", "mha(x, np.ones((2, 4), np.int64))", VE, "mask"),
    ("mha/mask dtype", "mha(x, np.ones((2, 5), dtype=object))", TE, "mask"),
    ("mha/position_ids shape", "mha(x, position_ids=np.zeros((2, 4), np.int64))", VE, "position_ids"),
    ("mha/past not a cache", "mha(x, past_key_values={}, layer_idx=0)", TE, "KVCache"),
    ("mha/layer_idx out of range", "mha(r(2, 1, C), past_key_values=cache, layer_idx=3)", VE, "layer"),
    ("mha/cache batch mismatch", "mha(r(3, 1, C), past_key_values=cache, layer_idx=0)", VE, "batch"),
    (
        "mha/cache head_dim mismatch",
        "c2 = tfcore.KVCache(1, 2, 2, 8); mha(x, past_key_values=c2, layer_idx=0)",
        VE,
        "head",
    ),
    (
        "mha/cache NaN input",
        "a = r(2, 1, C); a[0, 0, 0] = np.nan; mha(a, past_key_values=cache, layer_idx=0)",
        VE,
        "NaN",
    ),
    (
        "mha/cache unchanged after rejected calls",
        "assert cache.get_seq_length() == 3 and cache.num_cached(0) == 3, cache.get_seq_length()\n"
        "assert mha(r(2, 1, C), past_key_values=cache, layer_idx=0).shape == (2, 1, C)\n"
        "assert cache.get_seq_length() == 4",
        None,
        "",
    ),
    (
        "mha/cu_seqlens decreasing",
        "mha(r(1, 6, C), cu_seqlens=np.array([0, 4, 2, 6]), position_ids=np.arange(6)[None])",
        VE,
        "cu_seqlens",
    ),
    (
        "mha/cu_seqlens past the rows",
        "mha(r(1, 6, C), cu_seqlens=np.array([0, 4, 9]), position_ids=np.arange(6)[None])",
        VE,
        "cu_seqlens",
    ),
    (
        "mha/cu_seqlens not from zero",
        "mha(r(1, 6, C), cu_seqlens=np.array([1, 6]), position_ids=np.arange(6)[None])",
        VE,
        "cu_seqlens",
    ),
    (
        "mha/cu_seqlens float",
        "mha(r(1, 6, C), cu_seqlens=np.array([0.0, 6.0]), position_ids=np.arange(6)[None])",
        TE,
        "cu_seqlens|int",
    ),
    ("mha/encoder states on self-attention", "mha(x, encoder_hidden_states=r(2, 3, C))", VE, "cross"),
    ("mha/out not an array", "mha(x, out=[1, 2])", TE, "out"),
    (
        "block/wrong component",
        "tfcore.TransformerBlock(ffn, ffn, rms, rms)",
        TE,
        "attention|MultiHeadAttention",
    ),
    ("block/x width", "blk(r(2, 3, C + 1))", VE, "hidden"),
    # ---- functional
    ("sdpa/rank", "F.scaled_dot_product_attention(r(4, 6, 8), k, v)", VE, "query|4-D|dim"),
    ("sdpa/head_dim mismatch", "F.scaled_dot_product_attention(q, r(1, 4, 7, 9), v)", VE, "head_dim|key"),
    ("sdpa/key value length", "F.scaled_dot_product_attention(q, k, r(1, 4, 6, 8))", VE, "value|length"),
    (
        "sdpa/gqa heads",
        "F.scaled_dot_product_attention(q, r(1, 3, 7, 8), r(1, 3, 7, 8), enable_gqa=True)",
        VE,
        "head",
    ),
    (
        "sdpa/mask shape",
        "F.scaled_dot_product_attention(q, k, v, attn_mask=np.zeros((6, 6), np.float32))",
        VE,
        "mask",
    ),
    (
        "sdpa/NaN query",
        "a = q.copy(); a[0, 0, 0, 0] = np.nan; F.scaled_dot_product_attention(a, k, v)",
        VE,
        "NaN",
    ),
    ("sdpa/empty", "F.scaled_dot_product_attention(np.zeros((1, 4, 0, 8), np.float32), k, v)", VE, "empty"),
    ("sdpa/bad scale", "F.scaled_dot_product_attention(q, k, v, scale=float('nan'))", VE, "scale"),
    (
        "rope/inv_freq length",
        "F.rotary_embedding(r(1, 3, 2, 8), np.ones(5, np.float32), np.arange(3)[None])",
        VE,
        "inv_freq|rotary",
    ),
    (
        "rope/positions shape",
        "F.rotary_embedding(r(1, 3, 2, 8), np.ones(4, np.float32), np.arange(4)[None])",
        VE,
        "position",
    ),
    ("sdpa/negative window", "F.scaled_dot_product_attention(q, k, v, window=(-5, 0))", VE, "window"),
    (
        "sdpa/bool mask of ints",
        "F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((6, 7), np.int32))",
        TE,
        "mask",
    ),
    ("activation/unknown", "F.activation(r(3), 'gelu_fast2')", VE, "activation"),
    ("gelu/bad approximate", "F.gelu(r(3), approximate='fast')", VE, "approximate"),
    ("relu/float64", "F.relu(np.ones(3))", TE, "float32"),
    ("silu/NaN", "a = r(3); a[1] = np.nan; F.silu(a)", VE, "NaN"),
    ("rope_inv_freq/odd head_dim", "F.rope_inv_freq(7)", VE, "even|head_dim|rotary"),
    ("rope_inv_freq/zero theta", "F.rope_inv_freq(8, theta=0.0)", VE, "theta"),
    ("glu/odd width", "F.glu(r(2, 5))", VE, "even|2F|split"),
    ("swa/key length", "F.sliding_window_attention(q, k, v, 2)", VE, "key has shape"),
    ("swa/negative window", "F.sliding_window_attention(q, q, q, -1)", VE, "window"),
    ("swa/huge dilation", "F.sliding_window_attention(q, q, q, 1, dilation=10**12)", VE, "dilation"),
    (
        "swa/global mask shape",
        "F.sliding_window_attention(q, q, q, 1, global_attention_mask=np.ones((1, 7)))",
        VE,
        "global_attention_mask",
    ),
    (
        "swa/global query slots",
        "F.sliding_window_attention(q, q, q, 1, global_attention_mask=np.ones((1, 6)), "
        "global_query=r(1, 4, 5, 8))",
        VE,
        "global_query",
    ),
    (
        "swa/NaN key",
        "a = q.copy(); a[0, 1, 2, 3] = np.inf; F.sliding_window_attention(q, a, q, 1)",
        VE,
        "NaN or Inf",
    ),
    (
        "swa/huge weights",
        "F.sliding_window_attention(q, q, q, 2**31 - 1, return_weights=True)",
        VE,
        "return_weights",
    ),
    # ---- KV cache
    ("kvcache/negative size", "tfcore.KVCache(1, -1, 2, 4)", VE, "positive"),
    ("kvcache/absurd size", "tfcore.KVCache(10**6, 10**6, 8, 128)", VE, "GiB"),
    ("kvcache/size overflows int64", "tfcore.KVCache(10**30, 1, 1, 4)", VE, "too big|int"),
    ("kvcache/bad policy", "tfcore.KVCache(1, 1, 1, 4, policy='lru')", VE, "policy"),
    ("kvcache/bad dtype", "tfcore.KVCache(1, 1, 1, 4, dtype='fp8')", VE, "dtype"),
    ("kvcache/reorder index", "cache.reorder(np.array([0, 5]))", VE, "beam_idx"),
    ("kvcache/reorder length", "cache.reorder(np.array([0]))", VE, "beam_idx"),
    ("kvcache/crop negative", "cache.crop(-1)", VE, "crop"),
    ("kvcache/keys layer", "cache.keys(1)", VE, "layer"),
    # ---- recurrent state
    ("rstate/negative size", "tfcore.RecurrentState(1, -1, {'s': (2,)})", VE, "positive"),
    ("rstate/absurd size", "tfcore.RecurrentState(10**6, 10**6, {'s': (10**6,)})", VE, "GiB"),
    ("rstate/size overflows int64", "tfcore.RecurrentState(10**30, 1, {'s': (2,)})", VE, "too big|int"),
    ("rstate/dim overflows int64", "tfcore.RecurrentState(1, 1, {'s': (10**30,)})", VE, "positive"),
    ("rstate/zero dim", "tfcore.RecurrentState(1, 1, {'s': (3, 0)})", VE, "positive"),
    ("rstate/shapes not a dict", "tfcore.RecurrentState(1, 1, None)", TE, "dict"),
    ("rstate/shape not a tuple", "tfcore.RecurrentState(1, 1, {'s': 'abc'})", TE, "tuple"),
    ("rstate/list length", "tfcore.RecurrentState(3, 1, [{}, {}])", VE, "one per layer"),
    ("rstate/bad dtype", "tfcore.RecurrentState(1, 1, {'s': (2,)}, dtype='fp8')", VE, "dtype"),
    (
        "linattn-layer/unknown feature map",
        "tfcore.LinearAttention(16, 4, q_weight=r(16, 16), k_weight=r(16, 16), v_weight=r(16, 16), o_weight=r(16, 16), feature_map='cosine')",
        VE,
        "feature_map must be one of",
    ),
    (
        "linattn-layer/hedgehog without weights",
        "tfcore.LinearAttention(16, 4, q_weight=r(16, 16), k_weight=r(16, 16), v_weight=r(16, 16), o_weight=r(16, 16), feature_map='hedgehog')",
        VE,
        "needs feature_map_weights",
    ),
    (
        "linattn-layer/hedgehog W wrong shape",
        "tfcore.LinearAttention(16, 4, q_weight=r(16, 16), k_weight=r(16, 16), v_weight=r(16, 16), o_weight=r(16, 16), feature_map='hedgehog', feature_map_weights=(r(3, 3), r(4)))",
        VE,
        "hedgehog W has shape",
    ),
    (
        "linattn-layer/performer projection 1-D",
        "tfcore.LinearAttention(16, 4, q_weight=r(16, 16), k_weight=r(16, 16), v_weight=r(16, 16), o_weight=r(16, 16), feature_map='performer', feature_map_weights=r(4))",
        TE,
        "2-D array",
    ),
    (
        "linattn-layer/performer NaN projection",
        "tfcore.LinearAttention(16, 4, q_weight=r(16, 16), k_weight=r(16, 16), v_weight=r(16, 16), o_weight=r(16, 16), feature_map='performer', feature_map_weights=np.full((8, 4), np.nan, np.float32))",
        VE,
        "NaN",
    ),
    (
        "linattn-layer/weights not multiple of heads",
        "tfcore.LinearAttention(16, 4, q_weight=r(15, 16), k_weight=r(15, 16), v_weight=r(16, 16), o_weight=r(16, 16))",
        VE,
        "multiple of num_heads",
    ),
    (
        "linattn-layer/zero heads",
        "tfcore.LinearAttention(16, 0, q_weight=r(16, 16), k_weight=r(16, 16), v_weight=r(16, 16), o_weight=r(16, 16))",
        VE,
        "num_heads",
    ),
    (
        "linattn-layer/x wrong hidden",
        "tfcore.LinearAttention(16, 4, q_weight=r(16, 16), k_weight=r(16, 16), v_weight=r(16, 16), o_weight=r(16, 16))(r(1, 3, 15))",
        VE,
        "hidden_size",
    ),
    (
        "linattn-layer/x a list",
        "tfcore.LinearAttention(16, 4, q_weight=r(16, 16), k_weight=r(16, 16), v_weight=r(16, 16), o_weight=r(16, 16))([[0.0] * 16])",
        TE,
        "numpy.ndarray",
    ),
    (
        "linattn-layer/x empty",
        "tfcore.LinearAttention(16, 4, q_weight=r(16, 16), k_weight=r(16, 16), v_weight=r(16, 16), o_weight=r(16, 16))(r(1, 0, 16))",
        VE,
        "empty",
    ),
    (
        "linattn-layer/x NaN",
        "x = r(1, 3, 16); x[0, 1, 2] = np.nan; tfcore.LinearAttention(16, 4, q_weight=r(16, 16), k_weight=r(16, 16), v_weight=r(16, 16), o_weight=r(16, 16))(x)",
        VE,
        "NaN",
    ),
    (
        "linattn-layer/state of other shapes",
        "tfcore.LinearAttention(16, 4, q_weight=r(16, 16), k_weight=r(16, 16), v_weight=r(16, 16), o_weight=r(16, 16))(r(1, 3, 16), state=tfcore.RecurrentState(1, 1, {'state': (4, 5, 4), 'z': (4, 5)}))",
        VE,
        "initial_state",
    ),
    (
        "linattn-layer/relu normalize zero denominator",
        "tfcore.LinearAttention(16, 4, q_weight=r(16, 16), k_weight=r(16, 16), v_weight=r(16, 16), o_weight=r(16, 16), feature_map='relu')(np.zeros((1, 3, 16), np.float32))",
        VE,
        "= 0",
    ),
    ("rstate/unknown name", "rstate.get(0, 'wkv')", VE, "no state 'wkv'"),
    ("rstate/layer range", "rstate.get(2, 'state')", VE, "layer 2"),
    ("rstate/layer huge", "rstate.get(10**30, 'state')", VE, "out of range"),
    ("rstate/set shape", "rstate.set(0, 'z', r(2, 4, 4))", VE, r"\(2, 4, 3\)"),
    ("rstate/set dtype", "rstate.set(0, 'z', np.zeros((2, 4, 3)))", TE, "float64"),
    ("rstate/set NaN", "rstate.set(0, 'z', np.full((2, 4, 3), np.nan, np.float32))", VE, "NaN"),
    (
        "rstate/set non-contiguous",
        "rstate.set(0, 'z', np.zeros((2, 4, 6), np.float32)[..., ::2])",
        VE,
        "contiguous",
    ),
    ("rstate/reorder index", "rstate.reorder(np.array([0, 5]))", VE, "beam_idx"),
    ("rstate/reorder dtype", "rstate.reorder(np.array([0.0, 1.0]))", TE, "beam_idx"),
    ("rstate/advance negative", "rstate.advance(-3)", VE, "advance"),
    ("rstate/unchanged after rejects", "assert not rstate.get(0, 'z').any()", None, ""),
    # ---- RWKV-4 kernels
    ("rwkv/key 2-D", "F.rwkv4_wkv(wk[0], wv, wc, wc)", VE, "key"),
    ("rwkv/value shape", "F.rwkv4_wkv(wk, wv[:, :2].copy(), wc, wc)", VE, "value has shape"),
    ("rwkv/decay shape", "F.rwkv4_wkv(wk, wv, wc[:4].copy(), wc)", VE, "time_decay has shape"),
    ("rwkv/float64", "F.rwkv4_wkv(wk, wv, wc.astype(np.float64), wc)", TE, "float64"),
    ("rwkv/NaN", "F.rwkv4_wkv(wk, np.full_like(wv, np.nan), wc, wc)", VE, "NaN"),
    ("rwkv/Inf first", "F.rwkv4_wkv(wk, wv, wc, np.full_like(wc, np.inf))", VE, "time_first"),
    ("rwkv/non-contiguous", "F.rwkv4_wkv(wk[:, ::2], wv[:, ::2], wc, wc)", VE, "contiguous"),
    ("rwkv/empty", "F.rwkv4_wkv(wk[:, :0].copy(), wv[:, :0].copy(), wc, wc)", VE, "empty"),
    ("rwkv/receptance shape", "F.rwkv4_wkv(wk, wv, wc, wc, receptance=wk[:1].copy())", VE, "receptance"),
    ("rwkv/state type", "F.rwkv4_wkv(wk, wv, wc, wc, state=wst[0])", TE, "tuple"),
    ("rwkv/state length", "F.rwkv4_wkv(wk, wv, wc, wc, state=wst[:2])", TE, "tuple"),
    ("rwkv/state shape", "F.rwkv4_wkv(wk, wv, wc, wc, state=(wst[0], wst[1], r(2, 4)))", VE, "max"),
    (
        "rwkv/state den",
        "F.rwkv4_wkv(wk, wv, wc, wc, state=(wst[0], -np.ones((2, 5), np.float32), wst[2]))",
        VE,
        "den",
    ),
    (
        "rwkv/state read-only",
        "s = np.zeros((2, 5), np.float32); s.flags.writeable = False\nF.rwkv4_wkv(wk, wv, wc, wc, state=(s, wst[1], wst[2]))",
        VE,
        "read-only",
    ),
    (
        "rwkv/huge decay ok",
        "assert np.isfinite(F.rwkv4_wkv(wk, wv, np.full_like(wc, 200.0), wc)).all()",
        None,
        "",
    ),
    ("rwkv/ok with state", "F.rwkv4_wkv(wk, wv, wc, wc, receptance=wk, state=wst)", None, ""),
    ("rwkv shift/mix width", "F.rwkv_token_shift(wk, r(2, 4))", VE, "mix"),
    ("rwkv shift/mix 1-D", "F.rwkv_token_shift(wk, wc)", VE, "mix"),
    ("rwkv shift/too many", "F.rwkv_token_shift(wk, r(17, 5))", VE, "at most 16"),
    ("rwkv shift/state shape", "F.rwkv_token_shift(wk, r(2, 5), state=r(5))", VE, "state"),
    (
        "rwkv shift/state overlaps x",
        "F.rwkv_token_shift(wk, r(2, 5), state=wk[:, 0])",
        VE,
        "state|contiguous|overlap",
    ),
    ("rwkv shift/ok", "F.rwkv_token_shift(wk, r(3, 5), state=np.zeros((2, 5), np.float32))", None, ""),
    ("squared_relu/out shape", "F.squared_relu(wk, out=wv[:1].copy())", VE, "out has shape"),
    ("squared_relu/NaN", "F.squared_relu(np.full_like(wk, np.nan))", VE, "NaN"),
    ("sigmoid_gate/shapes", "F.sigmoid_gate(wk, wv[:, :2].copy())", VE, "must be equal"),
    ("sigmoid_gate/NaN gate", "F.sigmoid_gate(np.full_like(wk, np.nan), wv)", VE, "gate"),
    ("sigmoid_gate/ok in place", "y = wv.copy(); assert F.sigmoid_gate(wk, y, out=y) is y", None, ""),
    ("rwkv6/decay positive", "F.rwkv6_wkv(q, q, q, np.abs(q), r(4, 8))", VE, "log_decay"),
    ("rwkv6/bonus shape", "F.rwkv6_wkv(q, q, q, -np.abs(q), r(4, 7))", VE, "bonus"),
    ("rwkv6/value shape", "F.rwkv6_wkv(q, q, v, -np.abs(q), r(4, 8))", VE, "value has shape"),
    ("rwkv6/float64", "F.rwkv6_wkv(q.astype(np.float64), q, q, -np.abs(q), r(4, 8))", TE, "float64"),
    ("rwkv6/NaN", "F.rwkv6_wkv(q, np.full_like(q, np.nan), q, -np.abs(q), r(4, 8))", VE, "NaN"),
    ("rwkv6/list", "F.rwkv6_wkv(q.tolist(), q, q, -np.abs(q), r(4, 8))", TE, "ndarray"),
    (
        "rwkv6/state shape",
        "F.rwkv6_wkv(q, q, q, -np.abs(q), r(4, 8), initial_state=r(1, 4, 8, 7))",
        VE,
        "initial_state",
    ),
    (
        "rwkv6/ok",
        "F.rwkv6_wkv(q, q, q, -np.abs(q), r(4, 8), initial_state=r(1, 4, 8, 8), return_state=True)",
        None,
        "",
    ),
    # ---- linear attention
    ("linattn/gate positive", "F.linear_attention(q, q, q, gate=np.full_like(q, 0.1))", VE, "<= 0"),
    ("linattn/decay range", "F.linear_attention(q, q, q, decay=[0.5, 2, 0.5, 0.5])", VE, "outside"),
    ("linattn/decay heads", "F.linear_attention(q, q, q, decay=[0.5])", VE, "heads"),
    ("linattn/key shape", "F.linear_attention(q, k, v)", VE, "key has shape"),
    ("linattn/NaN", "F.linear_attention(q, q, np.full_like(q, np.nan))", VE, "NaN"),
    ("linattn/float64", "F.linear_attention(q, q, q.astype(np.float64))", TE, "float64"),
    (
        "linattn/non-contiguous",
        "F.linear_attention(q[:, :, ::2], q[:, :, ::2], q[:, :, ::2])",
        VE,
        "contiguous",
    ),
    ("linattn/empty", "F.linear_attention(q[:, :, :0], q[:, :, :0], q[:, :, :0])", VE, "empty"),
    ("linattn/mode", "F.linear_attention(q, q, q, mode='fast')", VE, "mode"),
    ("linattn/chunk", "F.linear_attention(q, q, q, chunk_size=-1)", VE, "chunk_size"),
    ("linattn/out shape", "F.linear_attention(q, q, q, out=r(1, 4, 8, 7))", VE, "out has shape"),
    ("linattn/out overlaps", "F.linear_attention(q, q, q, out=q)", VE, "share memory"),
    ("linattn/chunk huge", "F.linear_attention(q, q, q, chunk_size=2**63 - 1)", VE, "chunk_size"),
    ("linattn/state shape", "F.linear_attention(q, q, q, initial_state=r(1, 4, 8, 7))", VE, "initial_state"),
    # ---- state-space kernels (Mamba's conv + S6 scan, Mamba-2's SSD)
    ("ssm/conv weight shape", "F.causal_conv1d(r(2, 5, 8), r(7, 4))", VE, "weight has shape"),
    ("ssm/conv taps", "F.causal_conv1d(r(2, 5, 8), r(8, 65))", VE, "kernel_size"),
    ("ssm/conv state shape", "F.causal_conv1d(r(2, 5, 8), r(8, 4), state=r(2, 8, 4))", VE, "state has shape"),
    (
        "ssm/conv state dtype",
        "F.causal_conv1d(r(2, 5, 8), r(8, 4), state=np.zeros((2, 8, 3)))",
        TE,
        "float64",
    ),
    ("ssm/conv NaN", "F.causal_conv1d(np.full((1, 3, 8), np.nan, np.float32), r(8, 4))", VE, "NaN"),
    ("ssm/conv empty", "F.causal_conv1d(r(1, 0, 8), r(8, 4))", VE, "empty"),
    ("ssm/conv non-contiguous", "F.causal_conv1d(r(1, 6, 8)[:, ::2], r(8, 4))", VE, "contiguous"),
    ("ssm/conv activation", "F.causal_conv1d(r(1, 3, 8), r(8, 4), activation=3)", VE, "activation"),
    (
        "ssm/conv state aliases x",
        "xs = r(1, 8, 3); F.causal_conv1d(xs.reshape(1, 3, 8), r(8, 4), state=xs)",
        VE,
        "share memory",
    ),
    (
        "ssm/scan A positive",
        "F.selective_scan(r(1, 3, 4), r(1, 3, 4), np.ones((4, 5), np.float32), r(1, 3, 5), r(1, 3, 5))",
        VE,
        "A holds",
    ),
    (
        "ssm/scan B shape",
        "F.selective_scan(r(1, 3, 4), r(1, 3, 4), -np.ones((4, 5), np.float32), r(1, 3, 4), r(1, 3, 5))",
        VE,
        "B has shape",
    ),
    (
        "ssm/scan dt shape",
        "F.selective_scan(r(1, 3, 4), r(1, 2, 4), -np.ones((4, 5), np.float32), r(1, 3, 5), r(1, 3, 5))",
        VE,
        "dt has shape",
    ),
    (
        "ssm/scan state shape",
        "F.selective_scan(r(1, 3, 4), r(1, 3, 4), -np.ones((4, 5), np.float32), r(1, 3, 5), r(1, 3, 5), state=r(1, 5, 4))",
        VE,
        "state has shape",
    ),
    (
        "ssm/scan NaN dt",
        "F.selective_scan(r(1, 3, 4), np.full((1, 3, 4), np.nan, np.float32), -np.ones((4, 5), np.float32), r(1, 3, 5), r(1, 3, 5))",
        VE,
        "NaN",
    ),
    (
        "ssm/scan float64",
        "F.selective_scan(r(1, 3, 4).astype(np.float64), r(1, 3, 4), -np.ones((4, 5), np.float32), r(1, 3, 5), r(1, 3, 5))",
        TE,
        "float64",
    ),
    (
        "ssm/scan read-only state",
        "s = np.zeros((1, 4, 5), np.float32); s.flags.writeable = False; F.selective_scan(r(1, 3, 4), r(1, 3, 4), -np.ones((4, 5), np.float32), r(1, 3, 5), r(1, 3, 5), state=s)",
        VE,
        "read-only",
    ),
    (
        "ssm/ssd groups",
        "F.ssd_scan(r(1, 3, 4, 2), r(1, 3, 4), -np.ones(4, np.float32), r(1, 3, 3, 5), r(1, 3, 3, 5))",
        VE,
        "groups",
    ),
    (
        "ssm/ssd mode",
        "F.ssd_scan(r(1, 3, 4, 2), r(1, 3, 4), -np.ones(4, np.float32), r(1, 3, 2, 5), r(1, 3, 2, 5), mode='parallel')",
        VE,
        "mode",
    ),
    (
        "ssm/ssd chunk",
        "F.ssd_scan(r(1, 3, 4, 2), r(1, 3, 4), -np.ones(4, np.float32), r(1, 3, 2, 5), r(1, 3, 2, 5), chunk_size=2**40)",
        VE,
        "chunk_size",
    ),
    (
        "ssm/ssd dt_limit",
        "F.ssd_scan(r(1, 3, 4, 2), r(1, 3, 4), -np.ones(4, np.float32), r(1, 3, 2, 5), r(1, 3, 2, 5), dt_limit='x')",
        TE,
        "dt_limit",
    ),
    (
        "ssm/ssd C shape",
        "F.ssd_scan(r(1, 3, 4, 2), r(1, 3, 4), -np.ones(4, np.float32), r(1, 3, 2, 5), r(1, 3, 2, 4))",
        VE,
        "C has shape",
    ),
    (
        "ssm/ssd A positive",
        "F.ssd_scan(r(1, 3, 4, 2), r(1, 3, 4), np.ones(4, np.float32), r(1, 3, 2, 5), r(1, 3, 2, 5))",
        VE,
        "A holds",
    ),
    (
        "ssm/gated norm gate shape",
        "F.gated_rms_norm(r(2, 3, 8), r(2, 4, 8), np.ones(8, np.float32))",
        VE,
        "gate has shape",
    ),
    (
        "ssm/gated norm groups",
        "F.gated_rms_norm(r(2, 3, 8), r(2, 3, 8), np.ones(8, np.float32), n_groups=3)",
        VE,
        "n_groups",
    ),
    (
        "ssm/gated norm empty",
        "F.gated_rms_norm(r(2, 0, 8), r(2, 0, 8), np.ones(8, np.float32))",
        VE,
        "empty",
    ),
    (
        "linattn/state pair",
        "F.linear_attention(q, q, q, normalize=True, initial_state=r(1, 4, 8, 8))",
        TE,
        "pair",
    ),
    ("linattn/weights mode", "F.linear_attention(q, q, q, return_weights=True)", VE, "parallel"),
    ("linattn/feature map", "F.linear_attention(q, q, q, feature_map='hedgehog')", VE, "feature_map"),
    ("linattn/ok", "F.linear_attention(q, q, q, decay=[0.9] * 4, mode='recurrent')", None, ""),
    ("kvcache/positions layer", "cache.positions(-1)", VE, "layer"),
    (
        "block/norm width",
        "tfcore.TransformerBlock(mha, ffn, tfcore.RMSNorm(np.ones(C + 1, np.float32)), rms)",
        VE,
        "norm|hidden",
    ),
    # ---- checkpoints
    (
        "safetensors/too short",
        "p = os.path.join(tmp, 's'); open(p, 'wb').write(b'abc'); tfcore.safetensors.SafetensorsFile(p)",
        CK,
        "too short",
    ),
    ("safetensors/header beyond file", ckpt_case({}, length=10**6), CK, "beyond the file"),
    ("safetensors/header 2^64-1", ckpt_case({}, length=2**64 - 1), CK, "beyond the file"),
    ("safetensors/not JSON", ckpt_case(None, raw_header=b"{not json"), CK, "not valid UTF-8 JSON"),
    ("safetensors/not UTF-8", ckpt_case(None, raw_header=b"\xff\xfe{}"), CK, "not valid UTF-8 JSON"),
    ("safetensors/JSON list", ckpt_case([1, 2]), CK, "JSON object"),
    (
        "safetensors/deeply nested",
        ckpt_case(None, raw_header=b"[" * 100000 + b"]" * 100000),
        CK,
        "JSON|nested",
    ),
    (
        "safetensors/unknown dtype",
        ckpt_case({"a": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
        CK,
        "unknown dtype",
    ),
    (
        "safetensors/negative shape",
        ckpt_case({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4),
        CK,
        "invalid shape",
    ),
    (
        "safetensors/offsets out of bounds",
        ckpt_case({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4),
        CK,
        "outside",
    ),
    (
        "safetensors/offsets reversed",
        ckpt_case({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"\0" * 4),
        CK,
        "outside",
    ),
    (
        "safetensors/size mismatch",
        ckpt_case({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8),
        CK,
        "bytes",
    ),
    (
        "safetensors/overlap",
        ckpt_case(
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\0" * 12,
        ),
        CK,
        "overlap",
    ),
    (
        "safetensors/huge shape",
        ckpt_case({"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 4]}}, b"\0" * 4),
        CK,
        "invalid shape|bytes",
    ),
    # ---- GGUF files (tfcore.gguf; the full battery is tests/test_gguf.py)
    (
        "gguf/int4 NaN block scale",
        gguf_case(
            "good",
            "f = tfcore.gguf.GGUFFile(p); b = f.tensors['blk.0.ffn_up.weight'].begin; f.close()\n"
            "d = bytearray(good); d[b:b + 2] = np.float16(np.nan).tobytes(); open(p, 'wb').write(bytes(d))\n"
            "tfcore.AutoModelForCausalLM.from_pretrained(p, dtype='int4')",
        ),
        CK,
        "NaN or infinite",
    ),
    (
        "gguf/int4 truncated 4-bit tensor",
        gguf_case("good[:-40]", "tfcore.AutoModelForCausalLM.from_pretrained(p, dtype='int4')"),
        CK,
        "beyond the file|truncated",
    ),
    ("ffn/float Linear as weight", "tfcore.FeedForward(tfcore.Linear(r(8, 4)), r(4, 8))", TE, "4-bit"),
    (
        "mha/int4 Linears of different groups",
        "a = tfcore.Linear(r(64, 64), dtype='int4_g32'); b = tfcore.Linear(r(32, 64), dtype='int4_g64')\n"
        "tfcore.MultiHeadAttention(64, 4, num_key_value_heads=2, q_weight=a, k_weight=b, v_weight=b, o_weight=r(64, 64))",
        VE,
        "cannot be fused",
    ),
    (
        "mha/int4 Linear mixed with arrays",
        "a = tfcore.Linear(r(64, 64), dtype='int4_g32')\n"
        "tfcore.MultiHeadAttention(64, 4, q_weight=a, k_weight=r(64, 64), v_weight=r(64, 64), o_weight=r(64, 64))",
        TE,
        "all as int4 Linears or all as arrays",
    ),
    ("gguf/wrong magic", gguf_case("b'GGML' + good[4:]"), CK, "not a GGUF file"),
    ("gguf/truncated", gguf_case("good[:-50]"), CK, "beyond the file|truncated"),
    ("gguf/version", gguf_case("good[:4] + struct.pack('<I', 7) + good[8:]"), CK, "version 7"),
    ("gguf/huge count", gguf_case("good[:8] + struct.pack('<Q', 2**64 - 1) + good[16:]"), CK, "more than"),
    (
        "gguf/unknown type",
        gguf_case("harness.gguf_bytes([], [('t', (32,), 99, 0, bytes(128))])", "tfcore.gguf.GGUFFile(p)"),
        CK,
        "unknown ggml type 99",
    ),
    (
        "gguf/misaligned",
        gguf_case("harness.gguf_bytes([], [('t', (32,), 0, 8, bytes(128))])", "tfcore.gguf.GGUFFile(p)"),
        CK,
        "alignment",
    ),
    (
        "gguf/unknown architecture",
        gguf_case("harness.gguf_bytes([('general.architecture', 8, S('rwkv99'))])"),
        CK,
        "rwkv99",
    ),
    (
        "gguf/NaN block scale",
        gguf_case(
            "harness.gguf_bytes([], [('t', (32,), 2, 0, np.float16(np.inf).tobytes() + bytes(16))])",
            "tfcore.gguf.GGUFFile(p).float32('t')",
        ),
        CK,
        "NaN or infinite",
    ),
    (
        "gguf/tokenizer of a truncated file",
        gguf_case("good[:200]", "tfcore.text.load_tokenizer(p)"),
        CK,
        "truncated|more than",
    ),
    (
        "gguf/chat template messages",
        "from tfcore.gguf_tokenizer import apply_chat_template; apply_chat_template('{{ messages }}', [1, 2])",
        VE,
        r"messages\[0\]",
    ),
    (
        "gguf/chat template raise_exception",
        "from tfcore.gguf_tokenizer import apply_chat_template\n"
        "apply_chat_template(\"{{ raise_exception('roles must alternate') }}\", [{'role': 'user', 'content': 'x'}])",
        VE,
        "roles must alternate",
    ),
    (
        "model/not a directory",
        "tfcore.AutoModel.from_pretrained(os.path.join(tmp, 'nope'))",
        CK,
        "No such file",
    ),
    (
        "model/no config",
        "d = tempfile.mkdtemp(dir=tmp); tfcore.AutoModel.from_pretrained(d)",
        CK,
        "config.json",
    ),
    ("model/config not JSON", model_dir_case("{oops"), CK, "config.json"),
    ("model/config a list", model_dir_case("[1]"), CK, "config.json"),
    ("model/config huge nesting", model_dir_case("[" * 100000 + "]" * 100000), CK, "config.json"),
    ("model/unsupported type", model_dir_case('{"model_type": "mamba9"}'), CK, "mamba9"),
    # ---- Rwkv6ForCausalLM (fla's rwkv6 layout) and the rwkv package's .pth converter
    (
        "rwkv6/heads do not divide key width",
        rwkv6_dir_case({"expand_k": 0.5}),
        CK,
        "num_heads",
    ),
    ("rwkv6/hybrid attn layers", rwkv6_dir_case({"attn": {"layers": [0], "num_heads": 2}}), CK, "attn"),
    ("rwkv6/activation", rwkv6_dir_case({"hidden_act": "relu"}), CK, "hidden_act"),
    ("rwkv6/missing tensor", rwkv6_dir_case({}), CK, "missing"),
    (
        "rwkv6/pth not rwkv6",
        "from tfcore._rwkv6_convert import convert_rwkv6\n"
        "convert_rwkv6(lambda n: np.zeros((2, 2), np.float32), ['emb.weight', 'blocks.0.att.time_mix_k'])",
        VE,
        "RWKV-6",
    ),
    (
        "rwkv6/pth bad ddlerp shape",
        "from tfcore._rwkv6_convert import convert_rwkv6\n"
        "shapes = {'emb.weight': (5, 6), 'blocks.0.att.key.weight': (6, 6), 'blocks.0.att.time_faaaa': (2, 3),"
        " 'blocks.0.ffn.key.weight': (8, 6), 'blocks.0.att.time_maa_w1': (6, 10),"
        " 'blocks.0.att.time_decay_w1': (6, 4), 'blocks.0.att.time_maa_w2': (5, 3, 6)}\n"
        "convert_rwkv6(lambda n: np.zeros(shapes.get(n, (6,)), np.float32), list(shapes) + ['blocks.0.att.time_maa_x',"
        " 'blocks.0.ln0.weight', 'blocks.0.ln0.bias', 'blocks.0.ln1.weight', 'blocks.0.ln1.bias',"
        " 'blocks.0.ln2.weight', 'blocks.0.ln2.bias'])",
        VE,
        "time_maa_w1",
    ),
    # pytorch_model.bin: a pickle naming anything but tensor rebuilders is refused, never run
    (
        "model/bin pickle calls os.system (zip)",
        "import zipfile; d = tempfile.mkdtemp(dir=tmp)\n"
        "open(os.path.join(d, 'config.json'), 'w').write('{\"model_type\": \"bert\"}')\n"
        "with zipfile.ZipFile(os.path.join(d, 'pytorch_model.bin'), 'w') as z:\n"
        "    z.writestr('archive/data.pkl', EVIL_PICKLE)\n"
        "tfcore.AutoModel.from_pretrained(d)",
        CK,
        "refused to load: the pickle asks for os.system",
    ),
    (
        "model/bin pickle calls os.system (legacy)",
        "import pickle; d = tempfile.mkdtemp(dir=tmp)\n"
        "open(os.path.join(d, 'config.json'), 'w').write('{\"model_type\": \"bert\"}')\n"
        "head = b''.join(pickle.dumps(x, 2) for x in (0x1950A86A20F9469CFC6C, 1001, {}))\n"
        "open(os.path.join(d, 'pytorch_model.bin'), 'wb').write(head + EVIL_PICKLE)\n"
        "tfcore.AutoModel.from_pretrained(d)",
        CK,
        "refused to load: the pickle asks for os.system",
    ),
    (
        "model/bin truncated zip",
        model_dir_case('{"model_type": "bert"}', {"pytorch_model.bin": b"PK\x03\x04\x14\x00"}),
        CK,
        "pytorch_model.bin",
    ),
    (
        "model/bin not a pickle",
        model_dir_case('{"model_type": "bert"}', {"pytorch_model.bin": b"hello"}),
        CK,
        "not",
    ),
    (
        "model/hub id not cached",
        "os.environ['HF_HUB_OFFLINE'] = '1'; tfcore.AutoModel.from_pretrained('no-org/no-such-model-xyz')",
        CK,
        "huggingface-cli download",
    ),
    ("model/path not str", "tfcore.AutoModel.from_pretrained(3.5)", CK, "hub id"),
    ("model/revision not str", "tfcore.AutoModel.from_pretrained('org/name', revision=7)", CK, "revision"),
    ("model/dtype np.float16", "tfcore.AutoModel.from_pretrained(bert, dtype=np.float16)", VE, "dtype"),
    ("model/threads above CPUs", "tfcore.AutoModel.from_pretrained(bert, threads=4096)", VE, "CPUs"),
    (
        "model/no weights",
        model_dir_case(
            '{"model_type": "bert", "hidden_size": 8, "num_attention_heads": 2, '
            '"num_hidden_layers": 1, "intermediate_size": 8, "vocab_size": 10}'
        ),
        CK,
        "safetensors",
    ),
    (
        "model/config negative size",
        "import shutil; d = shutil.copytree(bert, os.path.join(tmp, 'b2'))\n"
        "cfg = json.load(open(os.path.join(d, 'config.json'))); cfg['num_attention_heads'] = -2\n"
        "json.dump(cfg, open(os.path.join(d, 'config.json'), 'w')); tfcore.AutoModel.from_pretrained(d)",
        CK,
        "num_attention_heads|head",
    ),
    (
        "wav2vec2/bert weights",
        "import shutil; d = shutil.copytree(bert, os.path.join(tmp, 'w2v'))\n"
        "cfg = json.load(open(os.path.join(d, 'config.json'))); cfg.update(model_type='wav2vec2', "
        "conv_dim=[8, 8], conv_kernel=[10, 3], conv_stride=[5, 2])\n"
        "json.dump(cfg, open(os.path.join(d, 'config.json'), 'w')); tfcore.AutoModel.from_pretrained(d)",
        CK,
        "feature_extractor|conv",
    ),
    (
        "wav2vec2/conv lists disagree",
        "import shutil; d = shutil.copytree(bert, os.path.join(tmp, 'w2v2'))\n"
        "cfg = json.load(open(os.path.join(d, 'config.json'))); cfg.update(model_type='wav2vec2', "
        "conv_dim=[8, 8], conv_kernel=[10], conv_stride=[5, 2])\n"
        "json.dump(cfg, open(os.path.join(d, 'config.json'), 'w')); tfcore.AutoModel.from_pretrained(d)",
        CK,
        "conv_kernel",
    ),
    ("ctc/decode floats", "tfcore.models.ctc_decode([[0.5, 1.0]], {1: 'a'})", VE, "integer"),
    # BERT's tensors under the wave-2 encoders' configs: the first tensor each one lacks is named
    (
        "albert/bert weights",
        "import shutil; d = shutil.copytree(bert, os.path.join(tmp, 'al'))\n"
        "cfg = json.load(open(os.path.join(d, 'config.json'))); cfg.update(model_type='albert', embedding_size=8)\n"
        "json.dump(cfg, open(os.path.join(d, 'config.json'), 'w')); tfcore.AutoModel.from_pretrained(d)",
        CK,
        "embeddings|albert|shape",
    ),
    (
        "albert/more groups than layers",
        "import shutil; d = shutil.copytree(bert, os.path.join(tmp, 'al2'))\n"
        "cfg = json.load(open(os.path.join(d, 'config.json')))\n"
        "cfg.update(model_type='albert', embedding_size=cfg['hidden_size'], num_hidden_groups=99)\n"
        "json.dump(cfg, open(os.path.join(d, 'config.json'), 'w')); tfcore.AutoModel.from_pretrained(d)",
        CK,
        "num_hidden_groups",
    ),
    (
        "electra/projection missing",
        "import shutil; d = shutil.copytree(bert, os.path.join(tmp, 'el'))\n"
        "cfg = json.load(open(os.path.join(d, 'config.json'))); cfg.update(model_type='electra')\n"
        "cfg['embedding_size'] = cfg['hidden_size'] // 2\n"
        "json.dump(cfg, open(os.path.join(d, 'config.json'), 'w')); tfcore.AutoModel.from_pretrained(d)",
        CK,
        "embeddings|shape",
    ),
    (
        "mpnet/bert weights",
        "import shutil; d = shutil.copytree(bert, os.path.join(tmp, 'mp'))\n"
        "cfg = json.load(open(os.path.join(d, 'config.json'))); cfg.update(model_type='mpnet')\n"
        "json.dump(cfg, open(os.path.join(d, 'config.json'), 'w')); tfcore.AutoModel.from_pretrained(d)",
        CK,
        "relative_attention_bias|attn",
    ),
    (
        "model/truncated weights",
        "import shutil; d = shutil.copytree(bert, os.path.join(tmp, 'b3'))\n"
        "f = os.path.join(d, 'model.safetensors'); b = open(f, 'rb').read(); open(f, 'wb').write(b[:len(b) // 2])\n"
        "tfcore.AutoModel.from_pretrained(d)",
        CK,
        "outside|truncated",
    ),
    (
        "model/ids out of vocabulary",
        "m = tfcore.AutoModel.from_pretrained(bert); m(np.array([[1, 10**6]]))",
        VE,
        "vocab|outside",
    ),
    ("model/float ids", "m = tfcore.AutoModel.from_pretrained(bert); m(np.array([[1.5]]))", TE, "integer"),
    (
        "model/empty ids",
        "m = tfcore.AutoModel.from_pretrained(bert); m(np.zeros((1, 0), np.int64))",
        VE,
        "empty|non-empty",
    ),
    (
        "model/mask shape",
        "m = tfcore.AutoModel.from_pretrained(bert); m(np.ones((2, 4), np.int64), "
        "attention_mask=np.ones((2, 5)))",
        VE,
        "attention_mask",
    ),
    (
        "model/too long",
        "m = tfcore.AutoModel.from_pretrained(bert); m(np.ones((1, 10**4), np.int64))",
        VE,
        "position|length|max",
    ),
    (
        "generate/negative tokens",
        "m = tfcore.AutoModelForCausalLM.from_pretrained(gpt2); "
        "m.generate(np.array([[1, 2]]), max_new_tokens=-1)",
        VE,
        "max_new_tokens",
    ),
    (
        "generate/absurd tokens",
        "m = tfcore.AutoModelForCausalLM.from_pretrained(gpt2); "
        "m.generate(np.array([[1, 2]]), max_new_tokens=10**12)",
        VE,
        "max_new_tokens|GiB|position|length",
    ),
    (
        "generate/zero temperature",
        "m = tfcore.AutoModelForCausalLM.from_pretrained(gpt2); "
        "m.generate(np.array([[1, 2]]), do_sample=True, temperature=0.0)",
        VE,
        "temperature",
    ),
    (
        "generate/zero beams",
        "m = tfcore.AutoModelForCausalLM.from_pretrained(gpt2); m.generate(np.array([[1, 2]]), num_beams=0)",
        VE,
        "num_beams",
    ),
    (
        "generate/bad cache dtype",
        "m = tfcore.AutoModelForCausalLM.from_pretrained(gpt2); "
        "m.generate(np.array([[1, 2]]), cache_dtype='fp8')",
        VE,
        "dtype",
    ),
    (
        "generate/ids out of vocabulary",
        "m = tfcore.AutoModelForCausalLM.from_pretrained(gpt2); m.generate(np.array([[1, 10**6]]))",
        VE,
        "vocab|outside",
    ),
    (
        "model/unpickle moved checkpoint",
        "import pickle, shutil; d = shutil.copytree(bert, os.path.join(tmp, 'b4'))\n"
        "blob = pickle.dumps(tfcore.AutoModel.from_pretrained(d)); shutil.rmtree(d); pickle.loads(blob)",
        CK,
        "No such file|not a directory",
    ),
    ("threads/not an int", "tfcore.set_num_threads('2')", TE, "int"),
    ("threads/zero", "tfcore.set_num_threads(0)", VE, "thread"),
    ("threads/huge", "tfcore.set_num_threads(10**9)", VE, "thread"),
    ("threads/above CPUs", "tfcore.set_num_threads(4096)", VE, "CPUs"),
    ("weight cache/not a path", "tfcore.set_weight_cache(42)", TE, "path"),
    ("weight cache/C: not a str", "tfcore._C._set_weight_cache(b'/tmp')", TE, "str"),
    ("weight cache/C: relative", "tfcore._C._set_weight_cache('cache')", VE, "absolute"),
    ("weight cache/C: too long", "tfcore._C._set_weight_cache('/' + 'a' * 5000)", VE, "too long"),
    (
        "weight cache/under a file",
        "tfcore.set_weight_cache(__import__('sys').executable + '/cache')",
        VE,
        "cannot create",
    ),
    ("threads/context above CPUs", "with tfcore.threads(1000): pass", VE, "CPUs"),
    (
        "linear/unpickle bad state",
        "tfcore._runtime._linear_from_state(np.zeros((2, 2)), None, 'nope', 'float32')",
        VE,
        "activation",
    ),
    (
        "block_sparse/length not a multiple",
        "F.block_sparse_attention(q, k, v, np.zeros((2, 1), np.int64), 4)",
        VE,
        "multiple",
    ),
    (
        "block_sparse/layout out of range",
        "F.block_sparse_attention(q, k, v, np.full((6, 1), 7), 1)",
        VE,
        "layout",
    ),
    (
        "block_sparse/layout huge",
        "F.block_sparse_attention(q, k, v, np.full((6, 1), 2**62), 1)",
        VE,
        "layout",
    ),
    ("block_sparse/layout list", "F.block_sparse_attention(q, k, v, [[0]] * 6, 1)", TE, "layout"),
    (
        "block_sparse/huge block_size",
        "F.block_sparse_attention(q, k, v, np.zeros((1, 1), np.int64), 2**62)",
        VE,
        "block_size",
    ),
    (
        "block_sparse/overflowing block_size",
        "F.block_sparse_attention(q, k, v, np.zeros((1, 1), np.int64), 2**70)",
        VE,
        "int|overflow|large",
    ),
    (
        "block_sparse/global not ints",
        "F.block_sparse_attention(q, k, v, np.zeros((6, 1), np.int64), 1, global_blocks='a')",
        TE,
        "global",
    ),
    (
        "block_sparse/float mask",
        "F.block_sparse_attention(q, k, v, np.zeros((6, 1), np.int64), 1, "
        "key_padding_mask=np.ones((1, 7), np.float32))",
        TE,
        "key_padding_mask",
    ),
    ("window/rank", "F.window_attention(r(2, 5, 5, 3, 8), 3)", VE, "qkv"),
    ("window/zero window", "F.window_attention(r(1, 5, 5, 3, 2, 4), 0)", VE, "window_size"),
    ("window/huge window", "F.window_attention(r(1, 5, 5, 3, 2, 4), 2**40)", VE, "window_size"),
    ("window/shift not below window", "F.window_attention(r(1, 6, 6, 3, 2, 4), 3, 3)", VE, "shift"),
    (
        "window/table shape",
        "F.window_attention(r(1, 6, 6, 3, 2, 4), 3, relative_position_bias_table=r(24, 2))",
        VE,
        "relative_position_bias_table",
    ),
    (
        "window/NaN",
        "a = r(1, 6, 6, 3, 2, 4); a[0, 1, 1, 0, 0, 0] = np.nan; F.window_attention(a, 3)",
        VE,
        "qkv contains NaN",
    ),
    ("window/float64", "F.window_attention(r(1, 6, 6, 3, 2, 4).astype(np.float64), 3)", TE, "float32"),
    (
        "window/mask_value NaN",
        "F.window_attention(r(1, 6, 6, 3, 2, 4), 3, 1, mask_value=float('nan'))",
        VE,
        "mask_value",
    ),
    (
        "window/mask_value str",
        "F.window_attention(r(1, 6, 6, 3, 2, 4), 3, 1, mask_value='-inf')",
        TE,
        "float",
    ),
    (
        "posbias/table shape",
        "tfcore.MultiHeadAttention(C, 4, qkv_weight=r(3 * C, C), o_weight=r(C, C), "
        "relative_attention_bias=r(32, 3))",
        VE,
        "relative_attention_bias has shape",
    ),
    (
        "posbias/buckets",
        "tfcore.MultiHeadAttention(C, 4, qkv_weight=r(3 * C, C), o_weight=r(C, C), "
        "relative_attention_bias=r(3, 4), relative_attention_num_buckets=3)",
        VE,
        "num_buckets",
    ),
    (
        "posbias/huge buckets",
        "F.t5_relative_position_bucket(np.zeros(2, np.int64), num_buckets=2**40)",
        VE,
        "num_buckets",
    ),
    ("posbias/alibi heads", "F.alibi_slopes(-3)", VE, "num_heads"),
    (
        "posbias/alibi cross",
        "tfcore.MultiHeadAttention(C, 4, q_weight=r(C, C), k_weight=r(C, C), v_weight=r(C, C), "
        "o_weight=r(C, C), is_cross_attention=True, alibi=True)",
        VE,
        "self-attention only",
    ),
    ("cross kv/not cross", "mha(x, encoder_key_values=r(2, 5, 2 * KVH * D))", VE, "cross"),
    # ---- per-head q/k RMSNorm (Qwen3)
    (
        "qk norm/only q",
        "tfcore.MultiHeadAttention(C, 4, qkv_weight=r(3 * C, C), o_weight=r(C, C), q_norm_weight=r(C // 4))",
        VE,
        "go together",
    ),
    (
        "qk norm/wrong size",
        "tfcore.MultiHeadAttention(C, 4, qkv_weight=r(3 * C, C), o_weight=r(C, C), "
        "q_norm_weight=r(C // 4), k_norm_weight=r(C // 4 + 1))",
        VE,
        "k_norm_weight has",
    ),
    (
        "qk norm/NaN",
        "w = r(C // 4); w[0] = np.nan; tfcore.MultiHeadAttention(C, 4, qkv_weight=r(3 * C, C), "
        "o_weight=r(C, C), q_norm_weight=w, k_norm_weight=r(C // 4))",
        VE,
        "NaN",
    ),
    (
        "qk norm/float64",
        "tfcore.MultiHeadAttention(C, 4, qkv_weight=r(3 * C, C), o_weight=r(C, C), "
        "q_norm_weight=r(C // 4).astype(np.float64), k_norm_weight=r(C // 4))",
        TE,
        "float32",
    ),
    (
        "qk norm/eps",
        "tfcore.MultiHeadAttention(C, 4, qkv_weight=r(3 * C, C), o_weight=r(C, C), "
        "q_norm_weight=r(C // 4), k_norm_weight=r(C // 4), qk_norm_eps=float('nan'))",
        VE,
        "qk_norm_eps",
    ),
    (
        "qk norm/cross",
        "tfcore.MultiHeadAttention(C, 4, q_weight=r(C, C), k_weight=r(C, C), v_weight=r(C, C), "
        "o_weight=r(C, C), is_cross_attention=True, q_norm_weight=r(C // 4), k_norm_weight=r(C // 4))",
        VE,
        "self-attention only",
    ),
    # ---- tfcore.eval and the evaluation integrations (texts are checked before tokenizing)
    (
        "eval/empty string",
        "tfcore.eval.embed(tfcore.AutoModel.from_pretrained(bert), ['a', ''])",
        VE,
        r"texts\[1\] is an empty string",
    ),
    (
        "eval/non-string",
        "tfcore.eval.embed(tfcore.AutoModel.from_pretrained(bert), ['a', 3])",
        TE,
        r"texts\[1\] is int",
    ),
    ("eval/None", "tfcore.eval.embed(tfcore.AutoModel.from_pretrained(bert), None)", TE, "None"),
    ("eval/missing model path", "tfcore.eval.embed(os.path.join(tmp, 'no-model'), ['a'])", CK, "no-model"),
    ("eval/model path not a model", "tfcore.eval.generate(bert, ['a'])", CK, "causal|model"),
    (
        "eval/bytes",
        "tfcore.eval.score(tfcore.AutoModelForCausalLM.from_pretrained(gpt2), b'abc')",
        TE,
        "bytes",
    ),
    (
        "eval/empty list",
        "tfcore.eval.score(tfcore.AutoModelForCausalLM.from_pretrained(gpt2), [])",
        VE,
        "empty",
    ),
    (
        "eval/engine unknown",
        "tfcore.eval.embed(tfcore.AutoModel.from_pretrained(bert), ['a'], engine='spark')",
        VE,
        "engine must be",
    ),
    (
        "eval/engine int",
        "tfcore.eval.score(tfcore.AutoModelForCausalLM.from_pretrained(gpt2), ['a'], engine=3)",
        VE,
        "engine must be",
    ),
    (
        "eval/ray not connected",
        "tfcore.eval.embed(tfcore.AutoModel.from_pretrained(bert), ['a'], engine='ray')",
        VE,
        "ray.init",
    ),
    ("eval/batch_size 0", "tfcore.eval.length_batches([3, 4], 0)", VE, "batch_size"),
    ("eval/batch_size str", "tfcore.eval.length_batches([3, 4], '8')", TE, "batch_size"),
    (
        "eval/stop not str",
        "tfcore.eval.generate(tfcore.AutoModelForCausalLM.from_pretrained(gpt2), ['a'], stop=[3])",
        TE,
        "stop",
    ),
    (
        "eval/generate encoder",
        "tfcore.eval.generate(tfcore.AutoModel.from_pretrained(bert), ['a'])",
        TE,
        "generate",
    ),
    (
        "generate/stop_strings without tokenizer",
        "tfcore.AutoModelForCausalLM.from_pretrained(gpt2).generate(np.array([[1, 2]]), stop_strings=['x'])",
        VE,
        "tokenizer",
    ),
    (
        "generate/stop_strings empty",
        "tfcore.AutoModelForCausalLM.from_pretrained(gpt2).generate(np.array([[1, 2]]), stop_strings=[''], tokenizer=1)",
        TE,
        "stop_strings",
    ),
    (
        "search/empty corpus",
        "tfcore.eval.semantic_search(r(2, 8), np.zeros((0, 8), np.float32))",
        VE,
        "empty",
    ),
    ("search/3-D query", "tfcore.eval.semantic_search(r(2, 3, 8), r(5, 8))", VE, r"\(N, D\)"),
    ("search/strings", "tfcore.eval.semantic_search(['a query'], r(5, 8))", TE, "numbers|embeddings"),
    ("search/str query", "tfcore.eval.semantic_search('a query', r(5, 8))", TE, "embeddings"),
    ("search/top_k 0", "tfcore.eval.semantic_search(r(2, 8), r(5, 8), top_k=0)", VE, "top_k"),
    ("search/top_k float", "tfcore.eval.semantic_search(r(2, 8), r(5, 8), top_k=2.5)", VE, "top_k"),
    (
        "search/chunk 0",
        "tfcore.eval.semantic_search(r(2, 8), r(5, 8), corpus_chunk_size=0)",
        VE,
        "corpus_chunk_size",
    ),
    (
        "search/bad score name",
        "tfcore.eval.semantic_search(r(2, 8), r(5, 8), score_function='l2')",
        VE,
        "score_function",
    ),
    (
        "search/score wrong shape",
        "tfcore.eval.semantic_search(r(2, 8), r(5, 8), score_function=lambda a, b: a @ a.T)",
        VE,
        "score_function returned shape",
    ),
    ("search/cos_sim dims", "tfcore.eval.cos_sim(r(2, 8), r(3, 7))", VE, "dimension"),
    ("search/dot_score None", "tfcore.eval.dot_score(None, r(3, 7))", TE, "a must be"),
    # ---- sentence-transformers directories, pooling, tokenizers
    (
        "st config/modules not a list",
        "d = tempfile.mkdtemp(dir=tmp); open(os.path.join(d, 'modules.json'), 'w').write('{\"a\": 1}')\n"
        "tfcore.text.sentence_transformers_config(d)",
        CK,
        "modules.json",
    ),
    (
        "st config/max_seq_length negative",
        "d = tempfile.mkdtemp(dir=tmp)\n"
        "open(os.path.join(d, 'sentence_bert_config.json'), 'w').write('{\"max_seq_length\": -3}')\n"
        "tfcore.text.sentence_transformers_config(d)",
        CK,
        "max_seq_length",
    ),
    (
        "st encoder/not a model",
        "from tfcore.integrations.sentence_transformers import SentenceEncoder; SentenceEncoder(3.5)",
        TE,
        "model_or_path",
    ),
    (
        "lm_eval/not a model",
        "from tfcore.integrations.lm_eval import TfcoreLM; TfcoreLM(42)",
        TE,
        "pretrained",
    ),
    (
        "st config/pooling mode unknown",
        "d = tempfile.mkdtemp(dir=tmp); os.makedirs(os.path.join(d, '1_Pooling'))\n"
        "open(os.path.join(d, '1_Pooling', 'config.json'), 'w').write('{\"pooling_mode\": \"median\"}')\n"
        "tfcore.text.sentence_transformers_config(d)",
        CK,
        "pooling mode",
    ),
    (
        "st config/truncated json",
        "d = tempfile.mkdtemp(dir=tmp)\n"
        "open(os.path.join(d, 'config_sentence_transformers.json'), 'w').write('{\"prompts\": ')\n"
        "tfcore.text.sentence_transformers_config(d)",
        CK,
        "JSON",
    ),
    (
        "st config/not a dir",
        "tfcore.text.sentence_transformers_config(os.path.join(tmp, 'nope'))",
        CK,
        "not a directory",
    ),
    ("pool/unknown mode", "tfcore.text.pool(r(2, 3, 4), np.ones((2, 3)), 'median')", VE, "pooling mode"),
    ("pool/mask shape", "tfcore.text.pool(r(2, 3, 4), np.ones((2, 4)), 'mean')", VE, "attention_mask"),
    ("pool/2-D states", "tfcore.text.pool(r(2, 3), np.ones((2, 3)), 'mean')", VE, r"\(B, T, C\)"),
    (
        "embed/pooling unknown",
        "tfcore.eval.embed(tfcore.AutoModel.from_pretrained(bert), ['a'], pooling='median')",
        VE,
        "pooling",
    ),
    (
        "embed/prompt_name unknown",
        "tfcore.eval.embed(tfcore.AutoModel.from_pretrained(bert), ['a'], prompt_name='query')",
        VE,
        "prompt_name",
    ),
    # ---- Conv1d / Conv2d
    ("conv/x float64", "conv(np.ones((1, 3, 5, 5)))", TE, "float32"),
    ("conv/x list", "conv([[[[1.0]]]])", TE, "float32|ndarray"),
    ("conv/x 3-D", "conv(r(3, 5, 5))", VE, "4-D.*batch axis"),
    ("conv/x wrong channels", "conv(r(1, 4, 5, 5))", VE, "4 channels.*in_channels=3"),
    ("conv/x channels last wrong", "conv(r(1, 3, 5, 5), channels_last=True)", VE, "channels.*in_channels=3"),
    ("conv/x NaN", "a = r(1, 3, 5, 5); a[0, 1, 2, 2] = np.nan; conv(a)", VE, "NaN"),
    ("conv/x Inf", "a = r(1, 3, 5, 5); a[0, 0, 0, 0] = np.inf; conv(a)", VE, "NaN|Inf"),
    ("conv/x empty batch", "conv(np.zeros((0, 3, 5, 5), np.float32))", VE, "empty"),
    ("conv/x empty map", "conv(np.zeros((1, 3, 0, 5), np.float32))", VE, "empty"),
    ("conv/x smaller than kernel", "conv1(r(1, 2, 4))", VE, "smaller than the kernel"),
    ("conv/x non-contiguous", "conv(r(1, 3, 10, 5)[:, :, ::2])", VE, "contiguous"),
    ("conv/x huge", "conv(np.broadcast_to(np.float32(0), (1, 3, 1 << 20, 1 << 20)))", VE, "contiguous"),
    ("conv/residual wrong shape", "conv(r(1, 3, 5, 5), r(1, 8, 5, 4))", VE, "residual"),
    ("conv/residual NaN", "a = r(1, 8, 5, 5); a[0, 0, 0, 0] = np.nan; conv(r(1, 3, 5, 5), a)", VE, "NaN"),
    ("conv/out wrong shape", "conv(r(1, 3, 5, 5), out=np.zeros((1, 8, 5, 4), np.float32))", VE, "out"),
    (
        "conv/out overlaps x",
        "a = r(1, 8, 5, 5); c = tfcore.Conv2d(r(8, 8, 1, 1)); c(a, out=a)",
        VE,
        "share memory",
    ),
    ("conv/weight float64", "tfcore.Conv2d(np.ones((4, 3, 3, 3)))", TE, "weight.*float32"),
    ("conv/weight 3-D for Conv2d", "tfcore.Conv2d(r(4, 3, 3))", VE, "weight"),
    ("conv/weight 4-D for Conv1d", "tfcore.Conv1d(r(4, 3, 3, 3))", VE, "weight"),
    ("conv/weight empty", "tfcore.Conv2d(np.zeros((4, 3, 0, 3), np.float32))", VE, "empty"),
    ("conv/weight NaN", "w = r(4, 3, 3, 3); w[1, 1, 1, 1] = np.nan; tfcore.Conv2d(w)", VE, "NaN"),
    ("conv/bias wrong length", "tfcore.Conv2d(r(4, 3, 3, 3), r(5))", VE, "bias.*out_channels=4"),
    ("conv/groups not dividing", "tfcore.Conv2d(r(6, 1, 3, 3), groups=4)", VE, "groups"),
    ("conv/groups zero", "tfcore.Conv2d(r(6, 1, 3, 3), groups=0)", VE, "groups"),
    ("conv/stride zero", "tfcore.Conv2d(r(4, 3, 3, 3), stride=0)", VE, "stride"),
    ("conv/stride float", "tfcore.Conv2d(r(4, 3, 3, 3), stride=1.5)", TE, "stride"),
    ("conv/stride wrong arity", "tfcore.Conv2d(r(4, 3, 3, 3), stride=(1, 2, 3))", VE, "stride"),
    ("conv/padding negative", "tfcore.Conv2d(r(4, 3, 3, 3), padding=-1)", VE, "padding"),
    ("conv/padding unknown", "tfcore.Conv2d(r(4, 3, 3, 3), padding='full')", VE, "padding"),
    (
        "conv/padding same strided",
        "tfcore.Conv2d(r(4, 3, 3, 3), stride=2, padding='same')",
        VE,
        "same.*stride",
    ),
    ("conv/dilation zero", "tfcore.Conv1d(r(4, 3, 3), dilation=0)", VE, "dilation"),
    ("conv/dilation huge", "tfcore.Conv1d(r(4, 3, 3), dilation=1 << 40)", VE, "dilation"),
    ("conv/unknown activation", "tfcore.Conv2d(r(4, 3, 3, 3), activation='swiglu')", VE, "activation"),
    ("conv/unknown dtype", "tfcore.Conv2d(r(4, 3, 3, 3), dtype='int4')", VE, "dtype"),
    ("conv/batch_norm not a tuple", "tfcore.Conv2d(r(4, 3, 3, 3), batch_norm=[1, 2])", TE, "batch_norm"),
    (
        "conv/batch_norm wrong length",
        "tfcore.Conv2d(r(4, 3, 3, 3), batch_norm=(r(5), np.ones(4, np.float32), None, None, 1e-5))",
        VE,
        "running_mean.*out_channels=4",
    ),
    (
        "conv/batch_norm negative variance",
        "tfcore.Conv2d(r(4, 3, 3, 3), batch_norm=(r(4), -np.ones(4, np.float32), None, None, 1e-5))",
        VE,
        "running_var",
    ),
    (
        "conv/batch_norm NaN eps",
        "tfcore.Conv2d(r(4, 3, 3, 3), batch_norm=(r(4), np.ones(4, np.float32), None, None, float('nan')))",
        VE,
        "eps",
    ),
    (
        "conv/batch_norm overflow",
        "tfcore.Conv2d(r(4, 3, 3, 3), batch_norm=(r(4), np.zeros(4, np.float32), r(4) * 1e30, None, 1e-30))",
        VE,
        "not finite",
    ),
    ("conv/missing weight", "tfcore.Conv2d()", TE, "weight"),
    ("conv/unknown keyword", "tfcore.Conv2d(r(4, 3, 3, 3), strides=2)", TE, "strides"),
    ("conv/usable after errors", "assert conv(r(2, 3, 5, 5)).shape == (2, 8, 5, 5)", None, ""),
    # ---- SigLIP (image-text model; its towers share the code): bad images and texts
    (
        "siglip/pixel_values float64",
        "m = tfcore.AutoModel.from_pretrained(siglip); m.get_image_features(np.zeros((1, 3, 12, 12)))",
        TE,
        "float32",
    ),
    (
        "siglip/pixel_values list",
        "m = tfcore.AutoModel.from_pretrained(siglip); m.get_image_features([[[[0.0]]]])",
        TE,
        "numpy.ndarray",
    ),
    (
        "siglip/pixel_values 4 channels",
        "m = tfcore.AutoModel.from_pretrained(siglip); m.get_image_features(r(1, 4, 12, 12))",
        VE,
        "3, height, width",
    ),
    (
        "siglip/pixel_values 3-D",
        "m = tfcore.AutoModel.from_pretrained(siglip); m.get_image_features(r(3, 12, 12))",
        VE,
        "3, height, width",
    ),
    (
        "siglip/pixel_values empty",
        "m = tfcore.AutoModel.from_pretrained(siglip); m.get_image_features(r(0, 3, 12, 12))",
        VE,
        "empty",
    ),
    (
        "siglip/pixel_values NaN",
        "m = tfcore.AutoModel.from_pretrained(siglip); a = r(1, 3, 12, 12); a[0, 1, 2, 3] = np.nan; m.get_image_features(a)",
        VE,
        "NaN",
    ),
    (
        "siglip/pixel_values Inf",
        "m = tfcore.AutoModel.from_pretrained(siglip); a = r(1, 3, 12, 12); a[0, 0, 0, 0] = np.inf; m.get_image_features(a)",
        VE,
        "Inf",
    ),
    (
        "siglip/image smaller than a patch",
        "m = tfcore.AutoModel.from_pretrained(siglip); m.get_image_features(r(1, 3, 3, 12))",
        VE,
        "smaller than one",
    ),
    (
        "siglip/image of another size",
        "m = tfcore.AutoModel.from_pretrained(siglip); m.get_image_features(r(1, 3, 16, 12))",
        VE,
        "patch grid",
    ),
    (
        "siglip/huge image interpolated",
        "m = tfcore.AutoModel.from_pretrained(siglip); m.get_image_features(r(1, 3, 8, 4096), interpolate_pos_encoding=True).shape == (1, 16)",
        None,
        "",
    ),
    (
        "siglip/input_ids too long",
        "m = tfcore.AutoModel.from_pretrained(siglip); m.get_text_features(np.ones((1, 9), np.int64))",
        VE,
        "max_position_embeddings",
    ),
    (
        "siglip/input_ids out of range",
        "m = tfcore.AutoModel.from_pretrained(siglip); m.get_text_features(np.array([[0, 60]]))",
        VE,
        "outside",
    ),
    (
        "siglip/input_ids negative",
        "m = tfcore.AutoModel.from_pretrained(siglip); m.get_text_features(np.array([[-1, 3]]))",
        VE,
        "outside",
    ),
    (
        "siglip/input_ids float",
        "m = tfcore.AutoModel.from_pretrained(siglip); m.get_text_features(np.ones((1, 3)))",
        TE,
        "input_ids",
    ),
    (
        "siglip/input_ids empty",
        "m = tfcore.AutoModel.from_pretrained(siglip); m.get_text_features(np.zeros((1, 0), np.int64))",
        VE,
        "empty",
    ),
    (
        "siglip/attention_mask wrong shape",
        "m = tfcore.AutoModel.from_pretrained(siglip); m.get_text_features(np.ones((2, 3), np.int64), np.ones((2, 4)))",
        VE,
        "attention_mask",
    ),
    (
        "siglip/position_ids wrong shape",
        "m = tfcore.AutoModel.from_pretrained(siglip); m.get_text_features(np.ones((2, 3), np.int64), position_ids=np.zeros((1, 3), np.int64))",
        VE,
        "position_ids",
    ),
    (
        "siglip/only the image",
        "m = tfcore.AutoModel.from_pretrained(siglip); m(pixel_values=r(1, 3, 12, 12))",
        VE,
        "both",
    ),
    (
        "siglip/vision_config not an object",
        siglip_config_case({"vision_config": [1]}),
        CK,
        "vision_config",
    ),
    (
        "siglip/heads not dividing",
        siglip_config_case({"vision_config": {"hidden_size": 16, "num_attention_heads": 3}}),
        CK,
        "divisible",
    ),
    (
        "siglip/hidden_size mismatching the weights",
        siglip_config_case({"text_config": {"hidden_size": 24}}),
        CK,
        "shape",
    ),
    # ---- SwinV2
    (
        "swinv2/pixel_values 1 channel",
        "m = tfcore.AutoModel.from_pretrained(swinv2); m(r(1, 1, 16, 16))",
        VE,
        "3, height, width",
    ),
    (
        "swinv2/pixel_values NaN",
        "m = tfcore.AutoModel.from_pretrained(swinv2); a = r(1, 3, 16, 16); a[0, 2, 5, 5] = np.nan; m(a)",
        VE,
        "NaN",
    ),
    (
        "swinv2/pixel_values int",
        "m = tfcore.AutoModel.from_pretrained(swinv2); m(np.zeros((1, 3, 16, 16), np.int64))",
        TE,
        "float32",
    ),
    (
        "swinv2/pixel_values empty",
        "m = tfcore.AutoModel.from_pretrained(swinv2); m(r(0, 3, 16, 16))",
        VE,
        "empty",
    ),
    (
        "swinv2/tiny odd image",
        "m = tfcore.AutoModel.from_pretrained(swinv2); assert m(r(1, 3, 3, 5)).last_hidden_state.shape == (1, 1, 16)",
        None,
        "",
    ),
    (
        "swinv2/pretrained_window_sizes not a list",
        siglip_config_case({"pretrained_window_sizes": "big"}, "swinv2"),
        CK,
        "pretrained_window_sizes",
    ),
    (
        "swinv2/heads not dividing",
        siglip_config_case({"num_heads": [3, 3]}, "swinv2"),
        CK,
        "divisible",
    ),
    # ---- PVT v2 (tiny: 16x16 images, a 2x2 spatial reduction at stage 0)
    (
        "pvt_v2/pixel_values 4 channels",
        "m = tfcore.AutoModel.from_pretrained(pvt_v2); m(r(1, 4, 16, 16))",
        VE,
        "3, height, width",
    ),
    (
        "pvt_v2/pixel_values Inf",
        "m = tfcore.AutoModel.from_pretrained(pvt_v2); a = r(1, 3, 16, 16); a[0, 1, 3, 4] = np.inf; m(a)",
        VE,
        "NaN or Inf",
    ),
    (
        "pvt_v2/pixel_values float64",
        "m = tfcore.AutoModel.from_pretrained(pvt_v2); m(np.zeros((1, 3, 16, 16)))",
        TE,
        "float32",
    ),
    (
        "pvt_v2/pixel_values 3-D",
        "m = tfcore.AutoModel.from_pretrained(pvt_v2); m(r(3, 16, 16))",
        VE,
        "height, width",
    ),
    (
        "pvt_v2/image smaller than the spatial reduction",
        "m = tfcore.AutoModel.from_pretrained(pvt_v2); m(r(1, 3, 3, 5))",
        VE,
        "too small.*1x2 token map.*2x2 spatial-reduction",
    ),
    (
        "pvt_v2/huge thin image",
        "m = tfcore.AutoModel.from_pretrained(pvt_v2); m(r(1, 3, 4, 4096))",
        VE,
        "too small",
    ),
    (
        "pvt_v2/wide odd image",
        "m = tfcore.AutoModel.from_pretrained(pvt_v2); assert m(r(2, 3, 9, 301)).last_hidden_state.shape == (2, 16, 2, 38)",
        None,
        "",
    ),
    (
        "pvt_v2/depths of the wrong length",
        siglip_config_case({"depths": [1]}, "pvt_v2"),
        CK,
        "depths must be a list of 2",
    ),
    (
        "pvt_v2/heads not dividing",
        siglip_config_case({"num_attention_heads": [3, 3]}, "pvt_v2"),
        CK,
        "divisible",
    ),
    (
        "pvt_v2/sr_ratio zero",
        siglip_config_case({"sr_ratios": [0, 1]}, "pvt_v2"),
        CK,
        "sr_ratios",
    ),
    # ---- SegFormer (tiny: PVT v2's shapes with the all-MLP decoder)
    (
        "segformer/pixel_values 2 channels",
        "m = tfcore.models.SegformerForSemanticSegmentation.from_pretrained(segformer); m(r(1, 2, 16, 16))",
        VE,
        "3, height, width",
    ),
    (
        "segformer/pixel_values NaN",
        "m = tfcore.models.SegformerForSemanticSegmentation.from_pretrained(segformer); a = r(1, 3, 16, 16); a[0, 0, 1, 1] = np.nan; m(a)",
        VE,
        "NaN",
    ),
    (
        "segformer/image too small",
        "m = tfcore.models.SegformerForSemanticSegmentation.from_pretrained(segformer); m(r(1, 3, 2, 2))",
        VE,
        "too small",
    ),
    (
        "segformer/odd image logits at stage 0",
        "m = tfcore.models.SegformerForSemanticSegmentation.from_pretrained(segformer); assert m(r(2, 3, 19, 33)).logits.shape == (2, 3, 5, 9)",
        None,
        "",
    ),
    (
        "segformer/reshape_last_stage false",
        siglip_config_case({"reshape_last_stage": False}, "segformer"),
        CK,
        "reshape_last_stage",
    ),
    # ---- image preprocessing (tfcore.image)
    (
        "image/wrong channels",
        "tfcore.image.ImageProcessor()(np.zeros((9, 9, 4), np.uint8))",
        VE,
        "4 channels.*alpha",
    ),
    (
        "image/two channels",
        "tfcore.image.ImageProcessor()(np.zeros((9, 9, 2), np.uint8))",
        VE,
        "channel axis",
    ),
    ("image/grayscale array", "tfcore.image.ImageProcessor()(np.zeros((9, 9), np.uint8))", VE, "grayscale"),
    ("image/empty", "tfcore.image.ImageProcessor()(np.zeros((0, 9, 3), np.uint8))", VE, "empty"),
    (
        "image/tiny 1x1",
        "assert tfcore.image.ImageProcessor()(np.zeros((1, 1, 3), np.uint8))['pixel_values'].shape == (1, 3, 224, 224)",
        None,
        "",
    ),
    (
        "image/huge",
        "tfcore.image.ImageProcessor()(np.broadcast_to(np.uint8(0), (1 << 16, 1 << 16, 3)))",
        VE,
        "pixels",
    ),
    (
        "image/NaN",
        "a = np.zeros((5, 5, 3), np.float32); a[1, 1, 1] = np.nan; tfcore.image.ImageProcessor()(a)",
        VE,
        "NaN",
    ),
    (
        "image/Inf",
        "a = np.zeros((5, 5, 3)); a[0, 0, 0] = np.inf; tfcore.image.ImageProcessor()(a)",
        VE,
        "NaN or Inf",
    ),
    (
        "image/float out of range",
        "tfcore.image.ImageProcessor()(np.full((5, 5, 3), 1.5, np.float32))",
        VE,
        r"\[0, 1\]",
    ),
    (
        "image/int out of range",
        "tfcore.image.ImageProcessor()(np.full((5, 5, 3), 300, np.int64))",
        VE,
        r"\[0, 255\]",
    ),
    ("image/complex", "tfcore.image.ImageProcessor()(np.zeros((5, 5, 3), np.complex64))", TE, "uint8"),
    ("image/not an image", "tfcore.image.ImageProcessor()('cat.jpg')", TE, "PIL image or a numpy"),
    ("image/empty list", "tfcore.image.ImageProcessor()([])", VE, "empty"),
    (
        "image/mixed sizes",
        "tfcore.image.ImageProcessor(size={'shortest_edge': 8})([np.zeros((8, 9, 3), np.uint8), np.zeros((8, 12, 3), np.uint8)])",
        VE,
        "different sizes",
    ),
    ("image/unknown resample", "tfcore.image.ImageProcessor(resample=7)", VE, "resample"),
    ("image/zero std", "tfcore.image.ImageProcessor(image_std=[0.5, 0.0, 0.5])", VE, "image_std"),
    ("image/bad size", "tfcore.image.ImageProcessor(size={'h': 3})", VE, "size"),
    (
        "image/torch tensors",
        "tfcore.image.ImageProcessor()(np.zeros((5, 5, 3), np.uint8), return_tensors='pt')",
        VE,
        "return_tensors",
    ),
    (
        "image/config not json",
        "p = os.path.join(tmp, 'preprocessor_config.json'); open(p, 'w').write('{'); tfcore.image.ImageProcessor.from_pretrained(tmp)",
        VE,
        "JSON",
    ),
    (
        "image/unreadable file",
        "p = os.path.join(tmp, 'x.jpg'); open(p, 'wb').write(b'xx'); tfcore.image.load_image(p)",
        VE,
        "not a readable image",
    ),
    (
        "heads/sequence classifier from a base checkpoint",
        "tfcore.AutoModelForSequenceClassification.from_pretrained(bert)",
        CK,
        "classifier",
    ),
    (
        "heads/token classifier from a base checkpoint",
        "tfcore.AutoModelForTokenClassification.from_pretrained(bert)",
        CK,
        "classifier.weight",
    ),
    (
        "heads/question answering from a base checkpoint",
        "tfcore.AutoModelForQuestionAnswering.from_pretrained(bert)",
        CK,
        "qa_outputs.weight",
    ),
    (
        "heads/id2label a list",
        "import shutil; d = shutil.copytree(bert, tempfile.mkdtemp(dir=tmp), dirs_exist_ok=True)\ncfg = json.load(open(os.path.join(d, 'config.json'))); cfg.update({'id2label': ['a', 'b']})\njson.dump(cfg, open(os.path.join(d, 'config.json'), 'w'))\n"
        "tfcore.AutoModelForTokenClassification.from_pretrained(d)",
        CK,
        "id2label must be a mapping",
    ),
    (
        "heads/id2label keys not ints",
        "import shutil; d = shutil.copytree(bert, tempfile.mkdtemp(dir=tmp), dirs_exist_ok=True)\ncfg = json.load(open(os.path.join(d, 'config.json'))); cfg.update({'id2label': {'x': 'a'}})\njson.dump(cfg, open(os.path.join(d, 'config.json'), 'w'))\n"
        "tfcore.AutoModelForTokenClassification.from_pretrained(d)",
        CK,
        "id2label keys must be integers",
    ),
    (
        "heads/num_labels zero",
        "import shutil; d = shutil.copytree(bert, tempfile.mkdtemp(dir=tmp), dirs_exist_ok=True)\ncfg = json.load(open(os.path.join(d, 'config.json'))); cfg.update({'num_labels': 0})\njson.dump(cfg, open(os.path.join(d, 'config.json'), 'w'))\n"
        "tfcore.AutoModelForTokenClassification.from_pretrained(d)",
        CK,
        "num_labels must be a positive integer",
    ),
    (
        "heads/question answering with 3 labels",
        "import shutil; d = shutil.copytree(bert, tempfile.mkdtemp(dir=tmp), dirs_exist_ok=True)\ncfg = json.load(open(os.path.join(d, 'config.json'))); cfg.update({'id2label': {'0': 'a', '1': 'b', '2': 'c'}})\njson.dump(cfg, open(os.path.join(d, 'config.json'), 'w'))\n"
        "tfcore.AutoModelForQuestionAnswering.from_pretrained(d)",
        CK,
        "num_labels=2",
    ),
    (
        "heads/classifier of the wrong width",
        "import shutil; d = shutil.copytree(bert, tempfile.mkdtemp(dir=tmp), dirs_exist_ok=True)\nfrom tfcore.safetensors import SafetensorsFile, save_file\nf = SafetensorsFile(os.path.join(d, 'model.safetensors')); t = {k: np.array(f.float32(k)) for k in f.keys()}; del f\nt['classifier.weight'] = np.ones((2, 15), np.float32); t['classifier.bias'] = np.zeros(2, np.float32)\nsave_file(t, os.path.join(d, 'model.safetensors'))\nm = tfcore.AutoModelForTokenClassification.from_pretrained(d)\n",
        CK,
        "shape",
    ),
    (
        "heads/token classifier float ids",
        "import shutil; d = shutil.copytree(bert, tempfile.mkdtemp(dir=tmp), dirs_exist_ok=True)\nfrom tfcore.safetensors import SafetensorsFile, save_file\nf = SafetensorsFile(os.path.join(d, 'model.safetensors')); t = {k: np.array(f.float32(k)) for k in f.keys()}; del f\nt['classifier.weight'] = np.ones((2, 16), np.float32); t['classifier.bias'] = np.zeros(2, np.float32)\nsave_file(t, os.path.join(d, 'model.safetensors'))\nm = tfcore.AutoModelForTokenClassification.from_pretrained(d)\nm(np.array([[1.5, 2.0]]))",
        TE,
        "integers",
    ),
    (
        "heads/token classifier ids out of vocabulary",
        "import shutil; d = shutil.copytree(bert, tempfile.mkdtemp(dir=tmp), dirs_exist_ok=True)\nfrom tfcore.safetensors import SafetensorsFile, save_file\nf = SafetensorsFile(os.path.join(d, 'model.safetensors')); t = {k: np.array(f.float32(k)) for k in f.keys()}; del f\nt['classifier.weight'] = np.ones((2, 16), np.float32); t['classifier.bias'] = np.zeros(2, np.float32)\nsave_file(t, os.path.join(d, 'model.safetensors'))\nm = tfcore.AutoModelForTokenClassification.from_pretrained(d)\nm(np.array([[1, 50]]))",
        VE,
        "outside",
    ),
    (
        "heads/token classifier mask of the wrong shape",
        "import shutil; d = shutil.copytree(bert, tempfile.mkdtemp(dir=tmp), dirs_exist_ok=True)\nfrom tfcore.safetensors import SafetensorsFile, save_file\nf = SafetensorsFile(os.path.join(d, 'model.safetensors')); t = {k: np.array(f.float32(k)) for k in f.keys()}; del f\nt['classifier.weight'] = np.ones((2, 16), np.float32); t['classifier.bias'] = np.zeros(2, np.float32)\nsave_file(t, os.path.join(d, 'model.safetensors'))\nm = tfcore.AutoModelForTokenClassification.from_pretrained(d)\nm(np.array([[1, 2]]), attention_mask=np.ones((1, 3)))",
        VE,
        "attention_mask has shape",
    ),
    (
        "heads/token classifier mask of strings",
        "import shutil; d = shutil.copytree(bert, tempfile.mkdtemp(dir=tmp), dirs_exist_ok=True)\nfrom tfcore.safetensors import SafetensorsFile, save_file\nf = SafetensorsFile(os.path.join(d, 'model.safetensors')); t = {k: np.array(f.float32(k)) for k in f.keys()}; del f\nt['classifier.weight'] = np.ones((2, 16), np.float32); t['classifier.bias'] = np.zeros(2, np.float32)\nsave_file(t, os.path.join(d, 'model.safetensors'))\nm = tfcore.AutoModelForTokenClassification.from_pretrained(d)\nm(np.array([[1, 2]]), attention_mask=np.array([['a', 'b']]))",
        TE,
        "attention_mask must hold 0/1",
    ),
    (
        "heads/token classifier 3-D ids",
        "import shutil; d = shutil.copytree(bert, tempfile.mkdtemp(dir=tmp), dirs_exist_ok=True)\nfrom tfcore.safetensors import SafetensorsFile, save_file\nf = SafetensorsFile(os.path.join(d, 'model.safetensors')); t = {k: np.array(f.float32(k)) for k in f.keys()}; del f\nt['classifier.weight'] = np.ones((2, 16), np.float32); t['classifier.bias'] = np.zeros(2, np.float32)\nsave_file(t, os.path.join(d, 'model.safetensors'))\nm = tfcore.AutoModelForTokenClassification.from_pretrained(d)\nm(np.ones((1, 2, 3), np.int64))",
        VE,
        "dimensions",
    ),
    (
        "heads/token classifier still works after rejected calls",
        "import shutil; d = shutil.copytree(bert, tempfile.mkdtemp(dir=tmp), dirs_exist_ok=True)\nfrom tfcore.safetensors import SafetensorsFile, save_file\nf = SafetensorsFile(os.path.join(d, 'model.safetensors')); t = {k: np.array(f.float32(k)) for k in f.keys()}; del f\nt['classifier.weight'] = np.ones((2, 16), np.float32); t['classifier.bias'] = np.zeros(2, np.float32)\nsave_file(t, os.path.join(d, 'model.safetensors'))\nm = tfcore.AutoModelForTokenClassification.from_pretrained(d)\nfor bad in (np.array([[1.5]]), np.zeros((1, 0), np.int64), np.array([[1, 99]])):\n    try:\n        m(bad)\n    except tfcore.TfcoreError:\n        pass\nassert m(np.array([[1, 2, 3]])).logits.shape == (1, 3, 2)",
        None,
        "",
    ),
    (
        "mt5/a BERT checkpoint labelled mt5",
        "import shutil; d = shutil.copytree(bert, tempfile.mkdtemp(dir=tmp), dirs_exist_ok=True)\n"
        "cfg = json.load(open(os.path.join(d, 'config.json'))); cfg['model_type'] = 'mt5'\n"
        "json.dump(cfg, open(os.path.join(d, 'config.json'), 'w')); tfcore.AutoModelForSeq2SeqLM.from_pretrained(d)",
        CK,
        "d_model",
    ),
    (
        "bart/a BERT checkpoint labelled bart",
        "import shutil; d = shutil.copytree(bert, tempfile.mkdtemp(dir=tmp), dirs_exist_ok=True)\n"
        "cfg = json.load(open(os.path.join(d, 'config.json'))); cfg['model_type'] = 'bart'\n"
        "json.dump(cfg, open(os.path.join(d, 'config.json'), 'w')); tfcore.AutoModelForSeq2SeqLM.from_pretrained(d)",
        CK,
        "d_model",
    ),
    (
        "bart/generate still works after rejected calls",
        "import transformers, torch; torch.manual_seed(0); d = tempfile.mkdtemp(dir=tmp)\n"
        "transformers.BartForConditionalGeneration(transformers.BartConfig(vocab_size=40, d_model=8, "
        "encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2, "
        "encoder_ffn_dim=8, decoder_ffn_dim=8, max_position_embeddings=16)).save_pretrained(d)\n"
        "m = tfcore.AutoModelForSeq2SeqLM.from_pretrained(d); ids = np.array([[0, 5, 6, 2]])\n"
        "bad = [dict(no_repeat_ngram_size=-1), dict(min_length=np.nan), dict(min_new_tokens='3'), "
        "dict(forced_bos_token_id=40), dict(forced_eos_token_id=[]), dict(forced_eos_token_id=[2, -1]), "
        "dict(max_new_tokens=17), dict(decoder_start_token_id=-1), dict(cache_policy='tova', cache_budget=4)]\n"
        "for kw in bad:\n"
        "    try:\n"
        "        m.generate(ids, **{'max_new_tokens': 3, **kw}); raise AssertionError(kw)\n"
        "    except tfcore.TfcoreError:\n"
        "        pass\n"
        "for call in (lambda: m(np.zeros((1, 17), np.int64), decoder_input_ids=ids), "
        "lambda: m(ids, decoder_input_ids=np.array([[1.5]])), lambda: m(encoder_outputs=np.zeros((1, 3, 7), np.float32), "
        "decoder_input_ids=ids), lambda: m(ids, past_key_values=m.new_cache(1))):\n"
        "    try:\n"
        "        call(); raise AssertionError('accepted')\n"
        "    except tfcore.TfcoreError:\n"
        "        pass\n"
        "assert m.generate(ids, max_new_tokens=3, num_beams=2, no_repeat_ngram_size=2).shape[0] == 1",
        None,
        "",
    ),
    (
        "led/a BART checkpoint labelled led",
        "import transformers, torch; torch.manual_seed(0); d = tempfile.mkdtemp(dir=tmp)\n"
        "transformers.BartForConditionalGeneration(transformers.BartConfig(vocab_size=40, d_model=8, "
        "encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2, "
        "encoder_ffn_dim=8, decoder_ffn_dim=8, max_position_embeddings=16)).save_pretrained(d)\n"
        "cfg = json.load(open(os.path.join(d, 'config.json'))); cfg.update(model_type='led', "
        "max_encoder_position_embeddings=16, max_decoder_position_embeddings=16, attention_window=4)\n"
        "json.dump(cfg, open(os.path.join(d, 'config.json'), 'w')); tfcore.AutoModelForSeq2SeqLM.from_pretrained(d)",
        CK,
        "checkpoint is missing",
    ),
    (
        "led/odd attention_window",
        "import transformers, torch; torch.manual_seed(0); d = tempfile.mkdtemp(dir=tmp)\n"
        "transformers.LEDForConditionalGeneration(transformers.LEDConfig(vocab_size=40, d_model=8, "
        "encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2, "
        "encoder_ffn_dim=8, decoder_ffn_dim=8, max_encoder_position_embeddings=32, "
        "max_decoder_position_embeddings=16, attention_window=4)).save_pretrained(d)\n"
        "cfg = json.load(open(os.path.join(d, 'config.json'))); cfg['attention_window'] = [5]\n"
        "json.dump(cfg, open(os.path.join(d, 'config.json'), 'w')); tfcore.AutoModelForSeq2SeqLM.from_pretrained(d)",
        CK,
        "attention_window",
    ),
    (
        "led/generate still works after rejected calls",
        "import transformers, torch; torch.manual_seed(0); d = tempfile.mkdtemp(dir=tmp)\n"
        "transformers.LEDForConditionalGeneration(transformers.LEDConfig(vocab_size=40, d_model=8, "
        "encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2, "
        "encoder_ffn_dim=8, decoder_ffn_dim=8, max_encoder_position_embeddings=32, "
        "max_decoder_position_embeddings=16, attention_window=4)).save_pretrained(d)\n"
        "m = tfcore.AutoModelForSeq2SeqLM.from_pretrained(d); ids = np.array([[0, 5, 6, 7, 8, 9, 2]])\n"
        "g = np.array([[1, 0, 0, 0, 0, 0, 0]])\n"
        "bad = [dict(global_attention_mask=g[:, :3]), dict(global_attention_mask=np.array([['a'] * 7])), "
        "dict(global_attention_mask=np.ones((2, 7))), dict(max_new_tokens=17), dict(no_repeat_ngram_size=-1)]\n"
        "for kw in bad:\n"
        "    try:\n"
        "        m.generate(ids, **{'max_new_tokens': 3, **kw}); raise AssertionError(kw)\n"
        "    except tfcore.TfcoreError:\n"
        "        pass\n"
        "for call in (lambda: m(np.zeros((1, 33), np.int64), decoder_input_ids=ids), "
        "lambda: m(ids, global_attention_mask=np.ones((1, 6)), decoder_input_ids=ids), "
        "lambda: m(ids, global_attention_mask=g, decoder_input_ids=np.array([[1.5]]))):\n"
        "    try:\n"
        "        call(); raise AssertionError('accepted')\n"
        "    except tfcore.TfcoreError:\n"
        "        pass\n"
        "assert m.generate(ids, global_attention_mask=g, max_new_tokens=3, num_beams=2).shape[0] == 1",
        None,
        "",
    ),
    (
        "umt5/a BERT checkpoint labelled umt5",
        "import shutil; d = shutil.copytree(bert, tempfile.mkdtemp(dir=tmp), dirs_exist_ok=True)\n"
        "cfg = json.load(open(os.path.join(d, 'config.json'))); cfg['model_type'] = 'umt5'\n"
        "json.dump(cfg, open(os.path.join(d, 'config.json'), 'w')); tfcore.AutoModelForSeq2SeqLM.from_pretrained(d)",
        CK,
        "d_model",
    ),
    # ---- audio (tfcore.audio): WAV files, resampling, Whisper's log-mel features
    ("audio/empty wav", "tfcore.audio.read_wav(b'')", VE, "empty file"),
    ("audio/not a wav", "tfcore.audio.read_wav(b'OggS' + bytes(100))", VE, "not a WAV file"),
    (
        "audio/truncated header",
        "tfcore.audio.read_wav(b'RIFF\\x24\\x00\\x00\\x00WAVEfmt \\x10\\x00\\x00\\x00\\x01\\x00')",
        VE,
        "truncated WAV header",
    ),
    (
        "audio/truncated data",
        "import io, wave; b = io.BytesIO(); w = wave.open(b, 'wb'); w.setnchannels(1); w.setsampwidth(2)\n"
        "w.setframerate(16000); w.writeframes(bytes(2000)); w.close(); tfcore.audio.read_wav(b.getvalue()[:500])",
        VE,
        "truncated WAV file",
    ),
    (
        "audio/stereo without mono=True",
        "import io, wave; b = io.BytesIO(); w = wave.open(b, 'wb'); w.setnchannels(2); w.setsampwidth(2)\n"
        "w.setframerate(16000); w.writeframes(bytes(400)); w.close(); tfcore.audio.read_wav(b.getvalue())",
        VE,
        "2 channels.*mono=True",
    ),
    ("audio/missing file", "tfcore.audio.read_wav(os.path.join(tmp, 'nope.wav'))", VE, "no such WAV file"),
    ("audio/read_wav int", "tfcore.audio.read_wav(3)", TE, "path, bytes"),
    ("audio/resample empty", "tfcore.audio.resample(np.zeros(0, np.float32), 8000, 16000)", VE, "empty"),
    (
        "audio/resample NaN",
        "tfcore.audio.resample(np.array([0, np.nan], np.float32), 8000, 16000)",
        VE,
        "NaN",
    ),
    ("audio/resample rate 0", "tfcore.audio.resample(np.zeros(8, np.float32), 0, 16000)", VE, "orig_sr"),
    (
        "audio/resample 3-D",
        "tfcore.audio.resample(np.zeros((1, 2, 8), np.float32), 8000, 16000)",
        VE,
        "shape",
    ),
    (
        "audio/resample complex",
        "tfcore.audio.resample(np.zeros(8, np.complex64), 8000, 16000)",
        TE,
        "real numbers",
    ),
    (
        "audio/features at the wrong rate",
        "tfcore.audio.WhisperFeatureExtractor()(np.zeros(1000, np.float32), sampling_rate=44100)",
        VE,
        "44100 Hz",
    ),
    ("audio/features empty", "tfcore.audio.WhisperFeatureExtractor()(np.zeros(0, np.float32))", VE, "empty"),
    (
        "audio/features NaN",
        "a = np.zeros(1000, np.float32); a[3] = np.nan; tfcore.audio.WhisperFeatureExtractor()(a)",
        VE,
        "NaN",
    ),
    (
        "audio/features stereo array",
        "tfcore.audio.WhisperFeatureExtractor()(np.zeros((1, 2, 1000), np.float32))",
        VE,
        "mono",
    ),
    # ---- CTranslate2 Whisper directories (tfcore convert): damaged model.bin files
    (
        "ct2/no model.bin",
        "from tfcore.ctranslate2_whisper import convert_ctranslate2_whisper as c; "
        "c(tempfile.mkdtemp(dir=tmp), os.path.join(tmp, 'ct2-out0'))",
        VE,
        "no CTranslate2 model.bin",
    ),
    (
        "ct2/empty model.bin",
        "from tfcore.ctranslate2_whisper import convert_ctranslate2_whisper as c; d = tempfile.mkdtemp(dir=tmp); "
        "open(os.path.join(d, 'model.bin'), 'wb').close(); c(d, os.path.join(tmp, 'ct2-out1'))",
        VE,
        "too short",
    ),
    (
        "ct2/unknown version",
        "from tfcore.ctranslate2_whisper import convert_ctranslate2_whisper as c; d = tempfile.mkdtemp(dir=tmp); "
        "open(os.path.join(d, 'model.bin'), 'wb').write(struct.pack('<I', 77) + bytes(40)); "
        "c(d, os.path.join(tmp, 'ct2-out2'))",
        VE,
        "binary version 77",
    ),
    (
        "ct2/truncated variables",
        "from tfcore.ctranslate2_whisper import convert_ctranslate2_whisper as c; d = tempfile.mkdtemp(dir=tmp); "
        "open(os.path.join(d, 'model.bin'), 'wb').write(struct.pack('<IH', 6, 12) + b'WhisperSpec\\0' + "
        "struct.pack('<II', 3, 5) + struct.pack('<H', 4) + b'abc\\0' + struct.pack('<BI', 1, 1000000)); "
        "c(d, os.path.join(tmp, 'ct2-out3'))",
        VE,
        "truncated",
    ),
    (
        "ct2/huge name length",
        "from tfcore.ctranslate2_whisper import read_ctranslate2_model as r; d = tempfile.mkdtemp(dir=tmp); "
        "open(os.path.join(d, 'model.bin'), 'wb').write(struct.pack('<IH', 6, 65535) + b'W' * 20); r(d)",
        VE,
        "truncated",
    ),
    (
        "audio/features fine after errors",
        "assert tfcore.audio.WhisperFeatureExtractor()(np.zeros(1000, np.float32))['input_features'].shape == (1, 80, 3000)",
        None,
        "",
    ),
    # ---- DeBERTa's disentangled attention (deberta_v2.py, functions/disentangled_attention.c)
    (
        "deberta/index lengths",
        "F.deberta_relative_index(-1, 3, position_buckets=4, max_relative_positions=9)",
        VE,
        "query_length",
    ),
    ("deberta/index no span", "F.deberta_relative_index(3, 3)", VE, ">= 1"),
    (
        "deberta/index log of 1",
        "F.deberta_relative_index(3, 3, position_buckets=8, max_relative_positions=5)",
        VE,
        "max_relative_positions",
    ),
    (
        "deberta/index huge buckets",
        "F.deberta_relative_index(3, 3, position_buckets=2**40, max_relative_positions=2**41)",
        VE,
        "too large",
    ),
    (
        "deberta/sdpa not a tuple",
        "F.scaled_dot_product_attention(q, k, v, disentangled=[None, None, None])",
        TE,
        "tuple",
    ),
    (
        "deberta/sdpa index dtype",
        "F.scaled_dot_product_attention(q, k, v, disentangled=(r(1, 4, 6, 3), None, np.zeros(12, np.int64)))",
        TE,
        "int32",
    ),
    (
        "deberta/sdpa index length",
        "F.scaled_dot_product_attention(q, k, v, disentangled=(r(1, 4, 6, 3), None, np.zeros(11, np.int32)))",
        VE,
        "entries",
    ),
    (
        "deberta/sdpa index range",
        "F.scaled_dot_product_attention(q, k, v, disentangled=(r(1, 4, 6, 3), None, np.full(12, 3, np.int32)))",
        VE,
        "outside",
    ),
    (
        "deberta/sdpa index negative",
        "F.scaled_dot_product_attention(q, k, v, disentangled=(r(1, 4, 6, 3), None, np.full(12, -1, np.int32)))",
        VE,
        "outside",
    ),
    (
        "deberta/sdpa no tables",
        "F.scaled_dot_product_attention(q, k, v, disentangled=(None, None, np.zeros(12, np.int32)))",
        VE,
        "c2p or p2c",
    ),
    (
        "deberta/sdpa c2p rows",
        "F.scaled_dot_product_attention(q, k, v, disentangled=(r(1, 4, 7, 3), None, np.zeros(12, np.int32)))",
        VE,
        "shape",
    ),
    (
        "deberta/sdpa p2c rows",
        "F.scaled_dot_product_attention(q, k, v, disentangled=(None, r(1, 4, 6, 3), np.zeros(12, np.int32)))",
        VE,
        "shape",
    ),
    (
        "deberta/sdpa c2p float64",
        "F.scaled_dot_product_attention(q, k, v, disentangled=(np.zeros((1, 4, 6, 3)), None, np.zeros(12, np.int32)))",
        TE,
        "float32",
    ),
    (
        "deberta/sdpa c2p NaN",
        "F.scaled_dot_product_attention(q, k, v, disentangled=(np.full((1, 4, 6, 3), np.nan, np.float32), None, np.zeros(12, np.int32)))",
        VE,
        "NaN",
    ),
    (
        "deberta/sdpa empty positions",
        "F.scaled_dot_product_attention(q, k, v, disentangled=(np.zeros((1, 4, 6, 0), np.float32), None, np.zeros(12, np.int32)))",
        VE,
        "empty|positions",
    ),
    (
        "deberta/positions not a tuple",
        "F.scaled_dot_product_attention(q, k, v, disentangled_positions=[None, None, None])",
        TE,
        "tuple",
    ),
    (
        "deberta/positions none given",
        "F.scaled_dot_product_attention(q, k, v, disentangled_positions=(None, None, np.zeros(12, np.int32)))",
        VE,
        "pos_key or pos_query",
    ),
    (
        "deberta/positions head_dim",
        "F.scaled_dot_product_attention(q, k, v, disentangled_positions=(r(4, 3, 7), None, np.zeros(12, np.int32)))",
        VE,
        "head_dim",
    ),
    (
        "deberta/positions heads",
        "F.scaled_dot_product_attention(q, k, v, disentangled_positions=(r(3, 3, 8), None, np.zeros(12, np.int32)))",
        VE,
        "heads",
    ),
    (
        "deberta/positions rank",
        "F.scaled_dot_product_attention(q, k, v, disentangled_positions=(r(3, 8), None, np.zeros(12, np.int32)))",
        VE,
        "dimensions",
    ),
    (
        "deberta/positions tables differ",
        "F.scaled_dot_product_attention(q, k, v, disentangled_positions=(r(4, 3, 8), r(4, 5, 8), np.zeros(12, np.int32)))",
        VE,
        "other table",
    ),
    (
        "deberta/positions strided rows",
        "F.scaled_dot_product_attention(q, k, v, disentangled_positions=(r(4, 8, 3).transpose(0, 2, 1), None, np.zeros(12, np.int32)))",
        VE,
        "contiguous",
    ),
    (
        "deberta/positions float64",
        "F.scaled_dot_product_attention(q, k, v, disentangled_positions=(np.zeros((4, 3, 8)), None, np.zeros(12, np.int32)))",
        TE,
        "float32",
    ),
    (
        "deberta/positions Inf",
        "F.scaled_dot_product_attention(q, k, v, disentangled_positions=(np.full((4, 3, 8), np.inf, np.float32), None, np.zeros(12, np.int32)))",
        VE,
        "NaN or Inf",
    ),
    (
        "deberta/positions empty",
        "F.scaled_dot_product_attention(q, k, v, disentangled_positions=(np.zeros((4, 0, 8), np.float32), None, np.zeros(12, np.int32)))",
        VE,
        "empty|positions",
    ),
    (
        "deberta/positions index range",
        "F.scaled_dot_product_attention(q, k, v, disentangled_positions=(r(4, 3, 8), None, np.full(12, 3, np.int32)))",
        VE,
        "outside",
    ),
    (
        "deberta/positions index length",
        "F.scaled_dot_product_attention(q, k, v, disentangled_positions=(r(4, 3, 8), None, np.zeros(13, np.int32)))",
        VE,
        "entries",
    ),
    (
        "deberta/positions and tables",
        "F.scaled_dot_product_attention(q, k, v, disentangled=(r(1, 4, 6, 3), None, np.zeros(12, np.int32)), "
        "disentangled_positions=(r(4, 3, 8), None, np.zeros(12, np.int32)))",
        VE,
        "not both",
    ),
    (
        "deberta/qa and mlm heads: bad calls, then good ones",
        "import transformers, torch; torch.manual_seed(0)\n"
        "cfg = dict(vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, "
        "relative_attention=True, position_buckets=4, max_relative_positions=9, pos_att_type=['c2p', 'p2c'], "
        "share_att_key=True, position_biased_input=False, type_vocab_size=0)\n"
        "for name, kw in (('DebertaV2ForQuestionAnswering', dict(num_labels=2)), ('DebertaV2ForMaskedLM', dict(legacy=True)), "
        "('DebertaV2ForMaskedLM', dict(legacy=False))):\n"
        "    d = tempfile.mkdtemp(dir=tmp)\n"
        "    getattr(transformers, name)(transformers.DebertaV2Config(**cfg, **kw)).save_pretrained(d)\n"
        "    m = getattr(tfcore.models, name).from_pretrained(d)\n"
        "    for call in (lambda: m(np.array([[1, 40]])), lambda: m(np.array([[1.5]])), lambda: m(np.zeros((1, 0), np.int64)), "
        "lambda: m(np.array([[1, 2]]), attention_mask=np.ones((1, 3)))):\n"
        "        try:\n"
        "            call(); raise AssertionError('accepted')\n"
        "        except tfcore.TfcoreError:\n"
        "            pass\n"
        "    out = m(np.array([[1, 2, 3]]))\n"
        "    assert all(np.isfinite(out[f]).all() for f in ('start_logits', 'end_logits', 'logits') if out.get(f) is not None)",
        None,
        "",
    ),
    (
        "deberta/mlm head missing",
        "import transformers, torch; torch.manual_seed(0); d = tempfile.mkdtemp(dir=tmp)\n"
        "transformers.DebertaV2Model(transformers.DebertaV2Config(vocab_size=40, hidden_size=8, "
        "num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, relative_attention=True, "
        "position_buckets=4, max_relative_positions=9, pos_att_type=['c2p', 'p2c'], share_att_key=True, "
        "position_biased_input=False, type_vocab_size=0)).save_pretrained(d)\n"
        "tfcore.models.DebertaV2ForMaskedLM.from_pretrained(d)",
        CK,
        "cls.predictions",
    ),
    (
        "deberta/model bad calls, then a good one",
        "import transformers, torch; torch.manual_seed(0); d = tempfile.mkdtemp(dir=tmp)\n"
        "transformers.DebertaV2Model(transformers.DebertaV2Config(vocab_size=40, hidden_size=8, "
        "num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, relative_attention=True, "
        "position_buckets=4, max_relative_positions=9, pos_att_type=['c2p', 'p2c'], share_att_key=True, "
        "position_biased_input=False, type_vocab_size=0)).save_pretrained(d)\n"
        "m = tfcore.AutoModel.from_pretrained(d)\n"
        "for call in (lambda: m(np.array([[1, 40]])), lambda: m(np.array([[1.5]])), lambda: m(np.zeros((1, 0), np.int64)), "
        "lambda: m(np.array([[1, 2]]), attention_mask=np.ones((1, 3))), "
        "lambda: m(np.array([[1, 2]]), attention_mask=np.array([['a', 'b']]))):\n"
        "    try:\n"
        "        call(); raise AssertionError('accepted')\n"
        "    except tfcore.TfcoreError:\n"
        "        pass\n"
        "assert np.isfinite(m(np.array([[1, 2, 3]])).last_hidden_state).all()",
        None,
        "",
    ),
    (
        "deberta/conv layer refused",
        "import transformers, torch; torch.manual_seed(0); d = tempfile.mkdtemp(dir=tmp)\n"
        "transformers.DebertaV2Model(transformers.DebertaV2Config(vocab_size=40, hidden_size=8, "
        "num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, relative_attention=True, "
        "position_buckets=4, max_relative_positions=9, pos_att_type=['c2p', 'p2c'], share_att_key=True, "
        "position_biased_input=False, type_vocab_size=0, conv_kernel_size=3)).save_pretrained(d)\n"
        "tfcore.AutoModel.from_pretrained(d)",
        CK,
        "conv_kernel_size",
    ),
    # ---- Conv2d / Conv1d on the GEMM route (patches, large grouped kernels): the same checks
    (
        "conv/gemm route bad calls, then good ones",
        "os.environ['TFCORE_CONV_ROUTE'] = 'gemm'\n"
        "try:\n"
        "    patch = tfcore.Conv2d(r(8, 3, 4, 4), r(8), stride=4)\n"
        "    grouped = tfcore.Conv1d(r(8, 4, 16), padding=8, groups=2, dtype='int8')\n"
        "finally:\n"
        "    del os.environ['TFCORE_CONV_ROUTE']\n"
        "assert patch.implementation.startswith('gemm') and grouped.implementation.startswith('gemm')\n"
        "nan = r(1, 3, 8, 8); nan[0, 1, 2, 3] = np.nan\n"
        "for call in (lambda: patch(r(1, 3, 3, 8)), lambda: patch(r(1, 4, 8, 8)), lambda: patch(nan), "
        "lambda: patch(r(1, 8, 8, 4), channels_last=True), lambda: patch(r(1, 3, 8, 8), r(1, 8, 2, 3)), "
        "lambda: patch(np.zeros((0, 3, 8, 8), np.float32)), lambda: grouped(r(1, 8, 0)), "
        "lambda: grouped(r(2, 7, 9), channels_last=True)):\n"
        "    try:\n"
        "        call(); raise AssertionError('accepted')\n"
        "    except tfcore.TfcoreError:\n"
        "        pass\n"
        "assert patch(r(2, 3, 9, 11)).shape == (2, 8, 2, 2)\n"
        "assert grouped(r(2, 5, 8), channels_last=True).shape == (2, 6, 8)",
        None,
        "",
    ),
    # ---- CvT and BEiT (tiny models built here): bad images, then good odd-sized ones
    (
        "cvt/bad images, then a good one",
        "import transformers, torch; torch.manual_seed(0); d = tempfile.mkdtemp(dir=tmp)\n"
        "transformers.CvtModel(transformers.CvtConfig(embed_dim=[8, 8, 16], num_heads=[1, 1, 2], "
        "depth=[1, 2, 3])).save_pretrained(d)\n"
        "m = tfcore.AutoModel.from_pretrained(d)\n"
        "a = r(1, 3, 40, 40); a[0, 0, 3, 3] = np.inf\n"
        "for call in (lambda: m(r(1, 4, 40, 40)), lambda: m(a), lambda: m(r(1, 3, 2, 40)), "
        "lambda: m(np.zeros((1, 3, 40, 40))), lambda: m(r(0, 3, 40, 40)), lambda: m(r(3, 40, 40))):\n"
        "    try:\n"
        "        call(); raise AssertionError('accepted')\n"
        "    except tfcore.TfcoreError:\n"
        "        pass\n"
        "out = m(r(2, 3, 13, 29))\n"
        "assert out.last_hidden_state.shape == (2, 16, 1, 2) and np.isfinite(out.last_hidden_state).all()",
        None,
        "",
    ),
    (
        "beit/bad images, then a good one",
        "import transformers, torch; torch.manual_seed(0); d = tempfile.mkdtemp(dir=tmp)\n"
        "transformers.BeitModel(transformers.BeitConfig(image_size=16, patch_size=4, hidden_size=8, "
        "num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, use_relative_position_bias=True)).save_pretrained(d)\n"
        "m = tfcore.AutoModel.from_pretrained(d)\n"
        "a = r(1, 3, 16, 16); a[0, 2, 1, 1] = np.nan\n"
        "for call in (lambda: m(r(1, 1, 16, 16)), lambda: m(a), lambda: m(r(1, 3, 3, 16)), "
        "lambda: m(np.zeros((1, 3, 16, 16), np.int64)), lambda: m(r(0, 3, 16, 16))):\n"
        "    try:\n"
        "        call(); raise AssertionError('accepted')\n"
        "    except tfcore.TfcoreError:\n"
        "        pass\n"
        "out = m(r(2, 3, 23, 9))\n"
        "assert out.last_hidden_state.shape == (2, 1 + 5 * 2, 8) and np.isfinite(out.pooler_output).all()",
        None,
        "",
    ),
    (
        "beit/relative bias table of the wrong size",
        "import transformers, torch, shutil; torch.manual_seed(0); d = tempfile.mkdtemp(dir=tmp)\n"
        "transformers.BeitModel(transformers.BeitConfig(image_size=16, patch_size=4, hidden_size=8, "
        "num_hidden_layers=1, num_attention_heads=2, intermediate_size=16, use_relative_position_bias=True)).save_pretrained(d)\n"
        "cfg = json.load(open(os.path.join(d, 'config.json'))); cfg['image_size'] = 24\n"
        "json.dump(cfg, open(os.path.join(d, 'config.json'), 'w'))\n"
        "tfcore.AutoModel.from_pretrained(d)",
        CK,
        "relative_position_bias_table.*shape",
    ),
]


def main(model_dirs):
    ns = setup(model_dirs)
    for case_id, code, _, _ in CASES:
        print(json.dumps({"start": case_id}), flush=True)
        result = {"id": case_id, "raised": None, "message": ""}
        try:
            exec(compile(code, case_id, "exec"), dict(ns))
        except BaseException as e:  # noqa: BLE001 - every outcome is reported to the parent
            result["raised"] = [c.__name__ for c in type(e).__mro__]
            result["message"] = str(e)
            if not isinstance(e, Exception):
                result["message"] += "\n" + traceback.format_exc()
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
