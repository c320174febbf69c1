"""GLAForCausalLM (flash-linear-attention's HF-style "gla" checkpoints): logits equal a float64
NumPy reference model; chunkwise prefill + recurrent decoding with a RecurrentState equals the
full forward; greedy generate equals the reference's greedy; beams and left padding."""

from __future__ import annotations

import json

import numpy as np
import pytest
from reference.gla import gla_logits

import tfcore

CFG = {
    "model_type": "gla",
    "hidden_size": 32,
    "num_heads": 2,
    "num_hidden_layers": 2,
    "vocab_size": 53,
    "expand_k": 0.5,
    "expand_v": 1.0,
    "intermediate_size": 48,
    "norm_eps": 1e-6,
    "hidden_act": "swish",
    "eos_token_id": None,
}
TOL = 2e-4  # float32 model vs float64 reference, relative to max |logit|


def tiny_weights(rng, cfg=CFG, low_rank=16):
    C, H, L, V, F = (
        cfg[k] for k in ("hidden_size", "num_heads", "num_hidden_layers", "vocab_size", "intermediate_size")
    )
    Kd, Vd = int(C * cfg["expand_k"]), int(C * cfg["expand_v"])
    r = lambda *s, a=0.3: (rng.standard_normal(s) * a).astype(np.float32)  # noqa: E731
    w = {
        "model.embeddings.weight": r(V, C, a=1.0),
        "model.norm.weight": 1 + r(C, a=0.1),
        "lm_head.weight": r(V, C),
    }
    for i in range(L):
        p = f"model.layers.{i}."
        w |= {
            p + "attn_norm.weight": 1 + r(C, a=0.1),
            p + "attn.q_proj.weight": r(Kd, C),
            p + "attn.k_proj.weight": r(Kd, C),
            p + "attn.v_proj.weight": r(Vd, C),
            p + "attn.g_proj.weight": r(Vd, C),
            p + "attn.o_proj.weight": r(C, Vd),
            p + "attn.gk_proj.0.weight": r(low_rank, C),
            p + "attn.gk_proj.1.weight": r(Kd, low_rank),
            p + "attn.gk_proj.1.bias": r(Kd, a=2.0),
            p + "attn.g_norm_swish_gate.weight": 1 + r(Vd // H, a=0.1),
            p + "mlp_norm.weight": 1 + r(C, a=0.1),
            p + "mlp.gate_proj.weight": r(F, C),
            p + "mlp.up_proj.weight": r(F, C),
            p + "mlp.down_proj.weight": r(C, F),
        }
    return w


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from safetensors.numpy import save_file

    d = tmp_path_factory.mktemp("gla")
    w = tiny_weights(np.random.default_rng(0))
    save_file(w, str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps(CFG))
    return d, w


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_logits_equal_the_float64_reference(tiny, path):
    d, w = tiny
    model = tfcore.AutoModelForCausalLM.from_pretrained(d)
    assert type(model).__name__ == "GLAForCausalLM"
    ids = np.random.default_rng(1).integers(0, 53, (2, 70))  # > one 64-row chunk
    assert rel(model(ids).logits, gla_logits(CFG, w, ids)) < TOL


def test_prefill_then_recurrent_decoding_equals_full_forward(tiny):
    d, _ = tiny
    model = tfcore.models.GLAForCausalLM.from_pretrained(d)
    ids = np.random.default_rng(2).integers(0, 53, (2, 90))
    full = model(ids).logits
    state = model.new_cache(2, dtype="float32")
    parts = [model(ids[:, :77], past_key_values=state).logits]
    parts += [model(ids[:, t : t + 1], past_key_values=state).logits for t in range(77, 90)]
    assert rel(np.concatenate(parts, axis=1), full) < 1e-5


def test_generate_greedy_beam_and_padding(tiny):
    d, w = tiny
    model = tfcore.AutoModelForCausalLM.from_pretrained(d)
    prompt = np.array([[3, 8, 13, 21]])
    out = model.generate(prompt, max_new_tokens=6)
    seq = prompt
    for _ in range(6):
        seq = np.concatenate([seq, gla_logits(CFG, w, seq)[:, -1].argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(out, seq)
    beams = model.generate(np.repeat(prompt, 2, axis=0), max_new_tokens=5, num_beams=3)
    np.testing.assert_array_equal(beams[0], beams[1])
    ids = np.array([[0, 0, 8, 13, 21], [3, 8, 13, 21, 5]])
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    batch = model.generate(ids, attention_mask=mask, max_new_tokens=5)
    np.testing.assert_array_equal(batch[0, 2:], model.generate(ids[:1, 2:], max_new_tokens=5)[0])


def test_unsupported_config_is_refused(tiny, tmp_path):
    d, _ = tiny
    (tmp_path / "config.json").write_text(json.dumps(dict(CFG, use_gv=True)))
    (tmp_path / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes())
    with pytest.raises(tfcore.CheckpointError, match="use_gv"):
        tfcore.AutoModelForCausalLM.from_pretrained(tmp_path)
