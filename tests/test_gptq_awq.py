"""GPTQ and AWQ 4-bit safetensors (tfcore/gptq_awq.py) against the formulas.

Checkpoints are made here: a tiny random HF Llama's projections quantized by a NumPy
quantizer (GPTQ's min/max grid: asymmetric ``z = round(-min / s)`` or symmetric ``z = 8``, s
rounded to float16; act-order groups from a permutation of the inputs) and packed as the
module docstring of tfcore/gptq_awq.py states the formats (auto-gptq's ``gptq`` (z - 1) and
gptqmodel's ``gptq_v2`` zero points, autoawq's GEMM interleaved order). The dequantization
is then compared with HF's integration formulas run in torch float16 (``scales[g_idx] *
(q - zeros[g_idx])`` after the shift-and-mask unpacking), bit for bit; the model's logits
with a float64 HF forward of the exactly dequantized weights; the int4 path with tfcore's
float32 model of the same checkpoint.
"""

import json
import logging

import numpy as np
import pytest
import torch

import tfcore
from tfcore.gptq_awq import AWQ_ORDER, QuantizedCheckpoint, wrap
from tfcore.safetensors import Checkpoint, CheckpointError, save_file

CFG = dict(
    vocab_size=131,
    hidden_size=96,
    intermediate_size=160,
    num_hidden_layers=2,
    num_attention_heads=3,
    num_key_value_heads=1,
    head_dim=32,
    max_position_embeddings=256,
    tie_word_embeddings=False,
)
PROJ = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
VARIANTS = {  # name: (quant_method, extra quantization_config, symmetric, act-order)
    "gptq": ("gptq", {"sym": False, "desc_act": False}, False, False),
    "gptq_sym": ("gptq", {"sym": True, "desc_act": False}, True, False),
    "gptq_v2": ("gptq", {"sym": False, "desc_act": False, "checkpoint_format": "gptq_v2"}, False, False),
    "gptq_act_order": ("gptq", {"sym": True, "desc_act": True}, True, True),
    "awq": ("awq", {"zero_point": True, "version": "gemm"}, False, False),
}


# -- a NumPy quantizer and the packers -------------------------------------------------------


def quantize(w, g_idx, G, sym):
    """w (N, K) -> q (N, K) uint8, scales (G, N) float16, zeros (G, N) uint8."""
    N, K = w.shape
    q = np.zeros((N, K), np.uint8)
    s16 = np.zeros((G, N), np.float16)
    z = np.zeros((G, N), np.uint8)
    for g in range(G):
        cols = np.flatnonzero(g_idx == g)
        x = w[:, cols].astype(np.float64)
        lo, hi = np.minimum(x.min(1), 0), np.maximum(x.max(1), 0)
        if sym:
            hi = np.maximum(-lo, hi)
            scale, zero = 2 * hi / 15, np.full(N, 8.0)
        else:
            scale = (hi - lo) / 15
            zero = np.clip(np.rint(-lo / scale), 0, 15)
        s16[g] = scale.astype(np.float16)
        sc = s16[g].astype(np.float64)
        q[:, cols] = np.clip(np.rint(x / sc[:, None]) + zero[:, None], 0, 15)
        z[g] = zero
    return q, s16, z


def pack_rows(v):
    """(R, 8 C) nibbles -> (R, C) int32, nibble j of word c = v[:, 8 c + j]."""
    R, C8 = v.shape
    u = v.reshape(R, C8 // 8, 8).astype(np.uint32) << (4 * np.arange(8, dtype=np.uint32))
    return np.bitwise_or.reduce(u, axis=-1).astype(np.uint32).view(np.int32)


def pack(method, fmt, q, s16, z, g_idx):
    """The checkpoint tensors of one layer (suffix -> array)."""
    if method == "gptq":
        qweight = pack_rows(q.T.reshape(-1, 8, q.shape[0]).transpose(0, 2, 1).reshape(q.shape[1] // 8, -1))
        zs = (z.astype(np.int64) - 1) & 0xF if fmt == "gptq" else z
        return {
            "qweight": qweight,
            "qzeros": pack_rows(zs.astype(np.uint8)),
            "scales": s16,
            "g_idx": g_idx.astype(np.int32),
        }
    order = np.array(AWQ_ORDER)
    qk = q.T  # (K, N)
    inter = qk.reshape(qk.shape[0], -1, 8)[..., order].reshape(qk.shape)
    zi = z.reshape(z.shape[0], -1, 8)[..., order].reshape(z.shape)
    return {"qweight": pack_rows(inter), "qzeros": pack_rows(zi), "scales": s16}


# -- HF's dequantization formulas, in torch float16 ------------------------------------------


def hf_dequantize(method, fmt, t, group):
    """(N, K) float16 as HF's GPTQ / AWQ integration code computes it."""
    shifts = torch.arange(0, 32, 4, dtype=torch.int32)
    qweight, qzeros, scales = (torch.from_numpy(np.asarray(t[k])) for k in ("qweight", "qzeros", "scales"))
    zeros = torch.bitwise_right_shift(qzeros[:, :, None], shifts[None, None, :]).to(torch.int8)
    zeros = zeros.reshape(zeros.shape[0], -1)
    if method == "gptq":
        if fmt == "gptq":
            zeros = zeros + 1
        zeros = torch.bitwise_and(zeros, 15)
        weight = torch.bitwise_right_shift(qweight[:, None, :], shifts[None, :, None]).to(torch.int8)
        weight = torch.bitwise_and(weight, 15).reshape(-1, weight.shape[-1])
        g_idx = torch.from_numpy(np.asarray(t["g_idx"])).long()
        return (scales[g_idx] * (weight - zeros[g_idx])).T
    weight = torch.bitwise_right_shift(qweight[:, :, None], shifts[None, None, :]).to(torch.int8)
    weight = weight.reshape(weight.shape[0], -1)
    reverse = torch.arange(weight.shape[-1]).reshape(-1, 8)[:, [0, 4, 1, 5, 2, 6, 3, 7]].reshape(-1)
    weight, zeros = torch.bitwise_and(weight[:, reverse], 15), torch.bitwise_and(zeros[:, reverse], 15)
    K = weight.shape[0]
    scales = scales.repeat_interleave(group, dim=0)[:K]
    zeros = zeros.repeat_interleave(group, dim=0)[:K]
    return ((weight - zeros) * scales).T


# -- checkpoints -------------------------------------------------------------------------------


def make_checkpoint(path, variant, group, seed=0):
    """A quantized tiny Llama in path; returns (HF float64 model of the exact dequantized
    weights, {layer: packed tensors}, {layer: exact float64 weights})."""
    from transformers import LlamaConfig, LlamaForCausalLM

    method, extra, sym, act_order = VARIANTS[variant]
    fmt = extra.get("checkpoint_format", method)
    torch.manual_seed(seed)
    hf = LlamaForCausalLM(LlamaConfig(**CFG, attn_implementation="eager")).eval()
    rng = np.random.default_rng(seed)
    tensors, packed, exact = {}, {}, {}
    for name, p in hf.state_dict().items():
        a = p.numpy()
        layer = name[: -len(".weight")]
        if layer.rpartition(".")[2] not in PROJ:
            tensors[name] = a.astype(np.float16)  # as GPTQ / AWQ checkpoints store the rest
            continue
        N, K = a.shape
        G = -(-K // group)
        if act_order:  # GPTQ's desc_act: groups are runs of a permutation of the inputs
            g_idx = np.empty(K, np.int64)
            g_idx[rng.permutation(K)] = np.arange(K) // group
        else:
            g_idx = np.arange(K) // group
        q, s16, z = quantize(a, g_idx, G, sym)
        t = pack(method, fmt, q, s16, z, g_idx)
        packed[layer], exact[name] = t, s16.astype(np.float64)[g_idx].T * (q.astype(np.float64) - z[g_idx].T)
        tensors.update({f"{layer}.{k}": v for k, v in t.items()})
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, path / "model.safetensors")
    cfg = hf.config.to_dict()
    cfg["quantization_config"] = {"quant_method": method, "bits": 4, "group_size": group, **extra}
    (path / "config.json").write_text(json.dumps(cfg))
    ref = LlamaForCausalLM(LlamaConfig(**CFG, attn_implementation="eager")).double().eval()
    sd = {
        k: torch.from_numpy(exact[k] if k in exact else tensors[k].astype(np.float64))
        for k in hf.state_dict()
    }
    ref.load_state_dict(sd)
    return ref, packed, exact


IDS = np.array([[5, 17, 99, 3, 42, 7, 63, 120, 11, 2, 88], [9, 1, 130, 64, 33, 21, 4, 77, 50, 13, 6]])


@pytest.mark.parametrize("group", [32, 64, 128])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_dequantization_is_hf_formula(tmp_path, variant, group):
    method, extra, _, _ = VARIANTS[variant]
    fmt = extra.get("checkpoint_format", method)
    _, packed, exact = make_checkpoint(tmp_path, variant, group)
    from tfcore.config import Config

    ckpt = wrap(Checkpoint(tmp_path), Config.from_dir(tmp_path))
    assert isinstance(ckpt, QuantizedCheckpoint)
    for layer, t in packed.items():
        w = ckpt.float32(f"{layer}.weight")
        # exact: s (q - z) has at most 15 significant bits
        np.testing.assert_array_equal(w.astype(np.float64), exact[f"{layer}.weight"])
        # HF's float16 formula is the same values rounded to float16, bit for bit
        hf16 = hf_dequantize(method, fmt, t, group).numpy()
        np.testing.assert_array_equal(w.astype(np.float16).view(np.uint16), hf16.view(np.uint16))
        lin = ckpt.int4_linear(f"{layer}.weight")
        if VARIANTS[variant][3] and w.shape[1] > group:
            assert lin is None  # act-order: not contiguous groups (requantized under int4)
        else:  # kept in 4 bits at the checkpoint's group size, the same float32 values
            assert lin.group_size == group and (lin.out_features, lin.in_features) == w.shape
            np.testing.assert_array_equal(lin.weight, w)
    assert "model.layers.0.self_attn.q_proj.weight" in ckpt
    assert "model.layers.0.self_attn.q_proj.qweight" not in ckpt
    assert not any(k.endswith(("qweight", "qzeros", "scales", "g_idx")) for k in ckpt)


def rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_model_logits_and_greedy(tmp_path, variant, caplog):
    group = 32
    ref, _, _ = make_checkpoint(tmp_path, variant, group, seed=1)
    with torch.no_grad():
        want = ref(torch.from_numpy(IDS)).logits.numpy()
    model = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path)
    got = model(IDS).logits
    # float32 forward of the exact weights against float64: accumulated float32 rounding
    assert rel(got, want) <= 1e-4, rel(got, want)
    assert not model.unexpected_keys
    with caplog.at_level(logging.WARNING, logger="tfcore"):
        m4 = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path, dtype="int4")
    act_order = VARIANTS[variant][3]
    assert ("act-order" in caplog.text) == act_order
    if not act_order:
        # prefill (> 32 rows: 4 x 11 here) multiplies the same float32 weights (dequantized per
        # slice; up to 32 rows the integer-dot kernel quantizes the activations to int8); the
        # base model, since the causal LM's float16-stored head runs in int8 under int4
        rows = np.concatenate([IDS, IDS[:, ::-1]])
        h4 = tfcore.models.LlamaModel.from_pretrained(tmp_path, dtype="int4")(rows).last_hidden_state
        h32 = tfcore.models.LlamaModel.from_pretrained(tmp_path)(rows).last_hidden_state
        assert rel(h4, h32) <= 1e-4, rel(h4, h32)
        # decoding runs the 4-bit kernels (int8 activations, and the int8 head): the same
        # greedy tokens as float32 up to the first step where float32's top two logits are
        # closer than twice the largest logit difference the 4-bit decode path makes on the
        # last 8 tokens (random tiny models have such near-ties; docs/int4.md); nowhere else
        for prompt in (IDS[:1, :5], IDS[1:, :7]):
            a = m4.generate(prompt, max_new_tokens=20, do_sample=False)
            b = model.generate(prompt, max_new_tokens=20, do_sample=False)
            diff = np.flatnonzero(a[0] != b[0])
            if diff.size:
                n = int(diff[0])
                ctx = a[:, n - 8 : n]  # 8 rows: the decode kernels, not the prefill path
                err = np.abs(m4(ctx).logits[0, -1] - model(ctx).logits[0, -1]).max()
                last = model(a[:, :n]).logits[0, -1]
                assert last.max() - last[a[0, n]] <= 2 * err, (n, last.max() - last[a[0, n]], err)


def write(tmp_path, tensors, qc, cfg=None):
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "llama", **(cfg or {}), "quantization_config": qc})
    )


def open_ckpt(tmp_path):
    from tfcore.config import Config

    return wrap(Checkpoint(tmp_path), Config.from_dir(tmp_path))


GOOD = {"quant_method": "gptq", "bits": 4, "group_size": 32, "sym": True, "desc_act": False}


@pytest.mark.parametrize(
    "qc, match",
    [
        ({**GOOD, "quant_method": "bitsandbytes"}, "quant_method 'bitsandbytes' is not supported"),
        ({**GOOD, "bits": 8}, "bits is 8"),
        ({**GOOD, "bits": True}, "bits is True"),
        ({**GOOD, "group_size": 0}, "group_size must be"),
        ({**GOOD, "group_size": "32"}, "group_size must be"),
        ({**GOOD, "desc_act": "yes"}, "desc_act must be"),
        ({**GOOD, "checkpoint_format": "marlin"}, "checkpoint_format 'marlin'"),
        ({**GOOD, "quant_method": "awq", "version": "gemv"}, "AWQ version 'gemv'"),
        ({**GOOD, "quant_method": "awq", "zero_point": False}, "zero_point=false"),
        ({**GOOD, "modules_to_not_convert": "lm_head"}, "modules_to_not_convert"),
        ([1, 2], "must be an object"),
    ],
)
def test_bad_quantization_config(tmp_path, qc, match):
    write(tmp_path, {"a.qweight": np.zeros((4, 8), np.int32)}, qc)
    with pytest.raises(CheckpointError, match=match):
        open_ckpt(tmp_path)


def layer(K=64, N=16, G=2):
    return {
        "p.qweight": np.zeros((K // 8, N), np.int32),
        "p.qzeros": np.zeros((G, N // 8), np.int32),
        "p.scales": np.ones((G, N), np.float16),
        "p.g_idx": (np.arange(K) // 32).astype(np.int32),
    }


@pytest.mark.parametrize(
    "change, match",
    [
        ({"p.qzeros": None}, "has no p.qzeros"),
        ({"p.scales": np.ones((2, 15), np.float16)}, "expected \\(groups, 16\\)"),
        ({"p.scales": np.ones((3, 16), np.float16)}, "expected ceil\\(64 / group_size 32\\) = 2"),
        ({"p.qzeros": np.zeros((2, 3), np.int32)}, "p.qzeros has shape \\(2, 3\\), expected \\(2, 2\\)"),
        ({"p.qzeros": np.zeros((2, 2), np.float32)}, "must be int32"),
        ({"p.g_idx": np.full(64, 2, np.int32)}, "g_idx holds groups outside 0..1"),
        ({"p.g_idx": np.zeros(63, np.int32)}, "g_idx has shape \\(63,\\)"),
        ({"p.scales": np.full((2, 16), np.inf, np.float16)}, "NaN or infinite"),
        ({"p.weight": np.zeros((16, 64), np.float32)}, "both a weight and a qweight"),
        (
            {"p.qweight": np.zeros((8, 12), np.int32), "p.scales": np.ones((2, 12), np.float16)},
            "not a multiple of 8",
        ),
    ],
)
def test_malformed_layers(tmp_path, change, match):
    t = layer()
    for k, v in change.items():
        if v is None:
            del t[k]
        else:
            t[k] = v
    write(tmp_path, t, GOOD)
    with pytest.raises(CheckpointError, match=match):
        ck = open_ckpt(tmp_path)
        ck.float32("p.weight")


def test_no_quantized_tensor_and_shape_against_config(tmp_path):
    write(tmp_path, {"x": np.zeros(3, np.float32)}, GOOD)
    with pytest.raises(CheckpointError, match="no tensor is quantized"):
        open_ckpt(tmp_path)
