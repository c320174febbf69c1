"""Rwkv6ForCausalLM (RWKV-6 "Finch", flash-linear-attention's HF-style "rwkv6" checkpoints):
logits equal a float64 NumPy reference model (tests/reference/rwkv6.py, whose WKV is checked
against fla's naive_recurrent_rwkv6) on every kernel path; prefill + recurrent decoding equals
the full forward; greedy generate equals the reference's greedy for 50 tokens; beams and left
padding; bf16 / int8 weights; bad configs are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from reference.rwkv6 import rwkv6_logits, wkv

import tfcore

# odd hidden size; key width 45 * 0.4 = 18 (3 heads of 6) != value width 45 (3 heads of 15)
CFG = {
    "model_type": "rwkv6",
    "hidden_size": 45,
    "num_heads": 3,
    "num_hidden_layers": 3,
    "vocab_size": 61,
    "expand_k": 0.4,
    "expand_v": 1.0,
    "intermediate_size": 70,
    "proj_low_rank_dim": 4,
    "gate_low_rank_dim": 8,
    "norm_eps": 1e-5,
    "hidden_act": "sqrelu",
    "eos_token_id": None,
}
# float32 model vs float64 reference, relative to max |logit|: float32 rounding (2^-24) through
# 3 blocks of GEMMs over <= 70 terms, group norms over 15 and a recurrence of <= 80 steps;
# measured ~1e-6, 1e-4 is the bound.
TOL = 1e-4


def tiny_weights(rng, cfg=CFG):
    C, H, L, V, F = (
        cfg[k] for k in ("hidden_size", "num_heads", "num_hidden_layers", "vocab_size", "intermediate_size")
    )
    Kd, Vd = int(C * cfg["expand_k"]), int(C * cfg["expand_v"])
    R, Rg = cfg["proj_low_rank_dim"], cfg["gate_low_rank_dim"]
    # projections ~ N(0, 1 / fan_in): unit gain per layer, like trained models (0.3 at C = 45
    # doubled activations per projection and made bf16 rounding grow 16% through 3 blocks)
    r = lambda *s, a=None: (rng.standard_normal(s) * (s[-1] ** -0.5 if a is None else a)).astype(np.float32)  # noqa: E731
    w = {
        "model.embeddings.weight": r(V, C, a=1.0),
        "model.norm.weight": 1 + r(C, a=0.1),
        "model.norm.bias": r(C, a=0.1),
        "lm_head.weight": r(V, C),
    }
    for i in range(L):
        p = f"model.layers.{i}."
        a = p + "attn."
        if i == 0:
            w |= {p + "pre_norm.weight": 1 + r(C, a=0.1), p + "pre_norm.bias": r(C, a=0.1)}
        for n in ("attn_norm", "ffn_norm"):
            w |= {p + n + ".weight": 1 + r(C, a=0.1), p + n + ".bias": r(C, a=0.1)}
        w |= {
            a + "x_proj.0.mu": rng.uniform(0, 1, C).astype(np.float32),
            a + "x_proj.0.linear.weight": r(5 * R, C),
            a + "x_proj.2.weight": r(C, 5 * R),
            a + "x_bias": rng.uniform(0, 1, (5, C)).astype(np.float32),
            a + "r_proj.linear.weight": r(Kd, C),
            a + "k_proj.linear.weight": r(Kd, C),
            a + "v_proj.linear.weight": r(Vd, C),
            a + "g_proj.linear.weight": r(Vd, C),
            a + "w_proj.linear.lora.0.weight": r(Rg, C),
            a + "w_proj.linear.lora.2.weight": r(Kd, Rg),
            # decay logits from -6 (decay ~1) to 3 (decay exp(-20), i.e. forget at once)
            a + "w_proj.linear.lora.2.bias": rng.uniform(-6, 3, Kd).astype(np.float32),
            a + "bonus": r(H, Kd // H, a=1.0),
            a + "g_norm.weight": 1 + r(Vd, a=0.1),
            a + "g_norm.bias": r(Vd, a=0.1),
            a + "o_proj.weight": r(C, Vd),
            p + "ffn.key.mu": rng.uniform(0, 1, C).astype(np.float32),
            p + "ffn.key.linear.weight": r(F, C),
            p + "ffn.value.weight": r(C, F),
            p + "ffn.receptance.mu": rng.uniform(0, 1, C).astype(np.float32),
            p + "ffn.receptance.linear.weight": r(C, C),
        }
    return w


def write(d, cfg, w):
    from safetensors.numpy import save_file

    save_file(w, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps(cfg))
    return d


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    w = tiny_weights(np.random.default_rng(0))
    return write(tmp_path_factory.mktemp("rwkv6"), CFG, w), w


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_reference_wkv_equals_fla_naive():
    """The reference model's per-head recurrence is fla's naive_recurrent_rwkv6."""
    import torch
    from test_linear_attention import fla_naive

    naive = fla_naive("rwkv6/recurrent_naive.py").naive_recurrent_rwkv6
    rng = np.random.default_rng(3)
    T, H, dk, dv = 37, 3, 6, 15
    r, k = rng.standard_normal((2, T, H, dk))
    v = rng.standard_normal((T, H, dv))
    logw = -np.exp(rng.uniform(-6, 3, (T, H, dk)))
    u = rng.standard_normal((H, dk))
    s0 = rng.standard_normal((H, dk, dv))
    o, s = wkv(r, k, v, np.exp(logw), u, s0)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(1, 0, 2)[None]))  # noqa: E731
    o_ref, s_ref = naive(
        t(r), t(k), t(v), t(logw), torch.from_numpy(u), scale=1.0,
        initial_state=torch.from_numpy(s0[None]), output_final_state=True,
    )  # fmt: skip
    # fla's naive op computes in float32 whatever the input dtype: float32 rounding of a decayed
    # sum over <= 37 steps of dk = 6 products, measured ~1e-7 of max|o|
    o_ref, s_ref = o_ref[0].numpy().transpose(1, 0, 2), s_ref[0].numpy()
    np.testing.assert_allclose(o, o_ref, rtol=0, atol=1e-5 * np.abs(o_ref).max())
    np.testing.assert_allclose(s, s_ref, rtol=0, atol=1e-5 * np.abs(s_ref).max())


def test_logits_equal_the_float64_reference(tiny, path):
    d, w = tiny
    model = tfcore.AutoModelForCausalLM.from_pretrained(d)
    assert type(model).__name__ == "Rwkv6ForCausalLM"
    ids = np.random.default_rng(1).integers(0, 61, (2, 77))
    assert rel(model(ids).logits, rwkv6_logits(CFG, w, ids)) < TOL


def test_decay_logits_beyond_float32_exp_range(tmp_path):
    """Decay logits of 100 (exp overflows float32): the decay is 0 (the state forgets at once),
    as in float64."""
    w = tiny_weights(np.random.default_rng(5))
    bias = w["model.layers.1.attn.w_proj.linear.lora.2.bias"]
    bias[::2] = 100.0
    model = tfcore.AutoModelForCausalLM.from_pretrained(write(tmp_path, CFG, w))
    ids = np.random.default_rng(6).integers(0, 61, (1, 23))
    assert rel(model(ids).logits, rwkv6_logits(CFG, w, ids)) < TOL


def test_prefill_then_recurrent_decoding_equals_full_forward(tiny, path):
    d, _ = tiny
    model = tfcore.models.Rwkv6ForCausalLM.from_pretrained(d)
    ids = np.random.default_rng(2).integers(0, 61, (2, 60))
    full = model(ids).logits
    state = model.new_cache(2)
    parts = [model(ids[:, :41], past_key_values=state).logits]
    parts += [model(ids[:, t : t + 1], past_key_values=state).logits for t in range(41, 60)]
    assert state.get_seq_length() == 60
    # the same float32 operations in another grouping (state carried instead of recomputed)
    assert rel(np.concatenate(parts, axis=1), full) < 1e-5


def test_greedy_50_tokens_equal_the_reference(tiny):
    d, w = tiny
    model = tfcore.AutoModelForCausalLM.from_pretrained(d)
    prompt = np.array([[3, 8, 13, 21, 34]])
    out = model.generate(prompt, max_new_tokens=50)
    seq = prompt
    for _ in range(50):
        logits = rwkv6_logits(CFG, w, seq)[:, -1]
        top2 = np.sort(logits, axis=-1)[:, -2:]
        # a near-tie within float32 rounding could legitimately flip the argmax
        assert (top2[:, 1] - top2[:, 0] > 1e-4 * np.abs(logits).max()).all()
        seq = np.concatenate([seq, logits.argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(out, seq)


def reference_beam_search(w, prompt, num_beams, new):
    """HF's beam search without EOS (length_penalty irrelevant: every beam has the same
    length): keep the num_beams best cumulative float64 log-probabilities each step."""
    beams = [(0.0, list(prompt))]
    for _ in range(new):
        seqs = np.array([b[1] for b in beams])
        lg = rwkv6_logits(CFG, w, seqs)[:, -1]
        lg = lg - lg.max(-1, keepdims=True)
        lp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
        cand = sorted(
            (
                (score + lp[i, t], seq + [t])
                for i, (score, seq) in enumerate(beams)
                for t in range(lp.shape[1])
            ),
            key=lambda c: -c[0],
        )
        # a near-tie at the cut within float32 rounding could legitimately swap beams
        assert cand[num_beams - 1][0] - cand[num_beams][0] > 1e-4
        beams = cand[:num_beams]
    return np.array(beams[0][1])


def test_beam_search_two_settings_and_left_padding(tiny):
    d, w = tiny
    model = tfcore.AutoModelForCausalLM.from_pretrained(d)
    prompt = np.array([[3, 8, 13, 21]])
    for beams, new in ((2, 6), (4, 9)):
        out = model.generate(np.repeat(prompt, 2, axis=0), max_new_tokens=new, num_beams=beams)
        assert out.shape == (2, 4 + new)
        np.testing.assert_array_equal(out[0], out[1])
        np.testing.assert_array_equal(out[0], reference_beam_search(w, prompt[0], beams, new))
    ids = np.array([[0, 0, 8, 13, 21], [3, 8, 13, 21, 5]])
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    batch = model.generate(ids, attention_mask=mask, max_new_tokens=7)
    np.testing.assert_array_equal(batch[0, 2:], model.generate(ids[:1, 2:], max_new_tokens=7)[0])
    np.testing.assert_array_equal(batch[1], model.generate(ids[1:], max_new_tokens=7)[0])


def test_sampling_is_seeded(tiny):
    d, _ = tiny
    model = tfcore.AutoModelForCausalLM.from_pretrained(d)
    prompt = np.array([[3, 8, 13]])
    a = model.generate(prompt, max_new_tokens=8, do_sample=True, top_k=10, seed=5)
    b = model.generate(prompt, max_new_tokens=8, do_sample=True, top_k=10, seed=5)
    np.testing.assert_array_equal(a, b)
    assert ((a >= 0) & (a < 61)).all()


# bf16: 2^-9 relative rounding of each weight and GEMM input, through a chain of ~9 projections
# per block and 3 blocks at unit gain: a few 2^-9 -> 3% (measured 1.2%). int8: per-row step
# max/127 (relative error up to 2^-8 per weight, more per small weight) and dynamic activation
# quantization: about 4x bf16 -> 8% (measured 2.5%).
@pytest.mark.parametrize("dtype,tol", [("bfloat16", 0.03), ("int8", 0.08)])
def test_bf16_and_int8_weights(tiny, dtype, tol):
    """bf16 and int8 projection weights: logits stay within a few % of float64 and
    prefill+decode still equals the full forward of the same model."""
    d, w = tiny
    model = tfcore.AutoModelForCausalLM.from_pretrained(d, dtype=dtype)
    ids = np.random.default_rng(4).integers(0, 61, (1, 30))
    full = model(ids).logits
    assert rel(full, rwkv6_logits(CFG, w, ids)) < tol
    state = model.new_cache(1)
    parts = [model(ids[:, :20], past_key_values=state).logits]
    parts += [model(ids[:, t : t + 1], past_key_values=state).logits for t in range(20, 30)]
    assert rel(np.concatenate(parts, axis=1), full) < 1e-4


def test_bad_configs_and_states_are_refused(tiny, tmp_path):
    d, w = tiny
    for bad, match in (
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"attn": {"layers": [1], "num_heads": 3}}, "attn"),
        ({"num_heads": 4}, "num_heads"),
        ({"proj_low_rank_dim": 5}, "x_proj"),
    ):
        sub = tmp_path / match
        sub.mkdir(exist_ok=True)
        write(sub, dict(CFG, **bad), w)
        with pytest.raises(tfcore.CheckpointError, match=match):
            tfcore.AutoModelForCausalLM.from_pretrained(sub)
    model = tfcore.AutoModelForCausalLM.from_pretrained(d)
    ids = np.array([[1, 2, 3]])
    with pytest.raises(tfcore.TfcoreValueError, match="batch_size"):
        model(ids, past_key_values=model.new_cache(2))
    with pytest.raises(tfcore.TfcoreTypeError, match="RecurrentState"):
        model(ids, past_key_values=[])
    with pytest.raises(tfcore.TfcoreValueError, match="float32"):
        model.new_cache(1, dtype="bfloat16")
    with pytest.raises(tfcore.TfcoreValueError, match="attention_mask"):
        model(ids, attention_mask=np.ones((1, 7)))
    with pytest.raises(tfcore.TfcoreValueError, match="vocab|input_ids"):
        model(np.array([[1, 99]]))
