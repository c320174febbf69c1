"""JambaForCausalLM against Hugging Face's (torch path on CPU, eager attention and experts,
float32): a tiny random hybrid with all four layer kinds (Mamba + MoE, attention + MLP,
Mamba + MLP, attention + MoE; top-2 of 4 experts, GQA 3 heads / 1 KV head, odd sizes).
Prefill logits, prefill + cached decoding (KV cache for attention layers, RecurrentState for
Mamba layers in one HybridCache) == full forward, greedy 50 tokens, beams in two settings, a
left-padded batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hf_generate import assert_generate_matches_hf, left_padded

import tfcore
from tfcore import models

TOL = 1e-4  # relative to the largest logit: float32 on both sides through 4 layers


@pytest.fixture(scope="module")
def jamba(tmp_path_factory):
    """(HF model, its directory). Router weights scaled up so routing has clear margins;
    dt_proj, the embeddings and the head scaled so the logits do too."""
    from transformers import JambaConfig, JambaForCausalLM

    torch.manual_seed(0)
    cfg = JambaConfig(
        vocab_size=67,
        hidden_size=30,
        intermediate_size=37,
        num_hidden_layers=4,
        num_attention_heads=3,
        num_key_value_heads=1,
        num_experts=4,
        num_experts_per_tok=2,
        expert_layer_period=3,
        expert_layer_offset=0,
        attn_layer_period=2,
        attn_layer_offset=1,
        mamba_d_state=7,
        mamba_d_conv=4,
        mamba_expand=2,
        mamba_dt_rank=5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        attn_implementation="eager",
        experts_implementation="eager",
    )
    ref = JambaForCausalLM(cfg).eval()
    with torch.no_grad():
        for i, layer in enumerate(ref.model.layers):
            if hasattr(layer.feed_forward, "router"):
                layer.feed_forward.router.weight.mul_(40.0)
            if hasattr(layer, "mamba"):
                layer.mamba.dt_proj.weight.mul_(3.0)
                layer.mamba.A_log.add_(0.3 * torch.randn_like(layer.mamba.A_log))
        ref.model.embed_tokens.weight.mul_(20.0)
        ref.lm_head.weight.mul_(20.0)
    path = tmp_path_factory.mktemp("jamba")
    ref.save_pretrained(path)
    return ref, path


def hf_logits(ref, ids, mask=None):
    with torch.no_grad():
        return ref(
            torch.from_numpy(ids), attention_mask=None if mask is None else torch.from_numpy(mask)
        ).logits.numpy()


def rel(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_logits_match_hf(jamba, path):
    ref, d = jamba
    model = tfcore.AutoModelForCausalLM.from_pretrained(d)
    assert type(model).__name__ == "JambaForCausalLM"
    assert model.layer_kinds == ["mamba", "attention", "mamba", "attention"]
    assert [type(x[3] if isinstance(x, tuple) else x.feed_forward).__name__ for x in model.layers] == [
        "MixtureOfExperts",
        "FeedForward",
        "FeedForward",
        "MixtureOfExperts",
    ]
    ids = np.random.default_rng(1).integers(0, 67, (2, 37))
    assert rel(model(ids).logits, hf_logits(ref, ids)) < TOL


def test_prefill_then_cached_decoding_equals_full_forward(jamba):
    _, d = jamba
    model = models.JambaForCausalLM.from_pretrained(d)
    ids = np.random.default_rng(3).integers(0, 67, (3, 41))
    full = model(ids).logits
    cache = model.new_cache(3, 64)
    parts = [model(ids[:, :30], past_key_values=cache).logits]
    for t in range(30, 38):
        parts.append(model(ids[:, t : t + 1], past_key_values=cache).logits)
    parts.append(model(ids[:, 38:], past_key_values=cache).logits)
    assert cache.get_seq_length() == 41
    assert cache.recurrent.names(1) == () and cache.recurrent.names(0) == ("conv", "ssm")
    assert rel(np.concatenate(parts, axis=1), full) < 1e-5


def test_greedy_50_tokens_equal_hf(jamba):
    ref, d = jamba
    model = models.JambaForCausalLM.from_pretrained(d)
    ids = np.random.default_rng(5).integers(3, 67, (2, 9))
    assert_generate_matches_hf(ref, model, ids, max_new_tokens=50)


@pytest.mark.parametrize(
    "kw", [{"num_beams": 3}, {"num_beams": 4, "num_return_sequences": 2, "length_penalty": 0.5}]
)
def test_beam_search_equals_hf(jamba, kw):
    ref, d = jamba
    model = models.JambaForCausalLM.from_pretrained(d)
    ids = np.random.default_rng(6).integers(3, 67, (2, 7))
    assert_generate_matches_hf(ref, model, ids, max_new_tokens=12, **kw)


def test_left_padded_batch_equals_hf(jamba):
    ref, d = jamba
    model = models.JambaForCausalLM.from_pretrained(d)
    ids, mask = left_padded(np.random.default_rng(7), 67)
    real = mask.astype(bool)  # pad positions attend to nothing: their outputs are arbitrary
    assert rel(model(ids, attention_mask=mask).logits[real], hf_logits(ref, ids, mask)[real]) < TOL
    assert_generate_matches_hf(ref, model, ids, mask, max_new_tokens=15)


def test_cache_errors(jamba):
    _, d = jamba
    model = models.JambaForCausalLM.from_pretrained(d)
    ids = np.array([[5, 6, 7]])
    with pytest.raises(tfcore.TfcoreTypeError, match="HybridCache"):
        model(ids, past_key_values=tfcore.RecurrentState(4, 1, {}))
    with pytest.raises(tfcore.TfcoreValueError, match="batch_size"):
        model(ids, past_key_values=model.new_cache(2))
