"""MambaForCausalLM against Hugging Face's (its sequential torch path on CPU, float32): a tiny
random model with odd sizes (hidden 27, intermediate 54, state 7, 3 layers). Prefill logits,
prefill + recurrent decoding == full forward, greedy 50 tokens, beam search in two settings,
a left-padded batch, the RecurrentState's conv/ssm tensors, bf16 states, in-proj biases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hf_generate import assert_generate_matches_hf, left_padded

import tfcore
from tfcore import models

TOL = 1e-4  # relative to the largest logit: float32 on both sides through 3 layers


def build(tmp_path_factory, name, **overrides):
    """(HF model, its directory). The random init leaves dt_proj and the embeddings small;
    they are scaled up so the scan's decays and the logits have clear margins."""
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(0)
    keys = dict(vocab_size=71, hidden_size=27, state_size=7, num_hidden_layers=3, expand=2, conv_kernel=4)
    keys |= dict(time_step_rank="auto", bos_token_id=1, eos_token_id=2, pad_token_id=0)
    cfg = MambaConfig(**(keys | overrides))
    ref = MambaForCausalLM(cfg).eval()
    with torch.no_grad():
        for layer in ref.backbone.layers:
            layer.mixer.dt_proj.weight.mul_(3.0)
            layer.mixer.A_log.add_(0.3 * torch.randn_like(layer.mixer.A_log))
            layer.mixer.D.add_(0.5 * torch.randn_like(layer.mixer.D))
            layer.norm.weight.add_(0.2 * torch.randn_like(layer.norm.weight))
        ref.backbone.embeddings.weight.mul_(5.0)
    path = tmp_path_factory.mktemp(name)
    ref.save_pretrained(path)
    return ref, path


@pytest.fixture(scope="module")
def mamba(tmp_path_factory):
    return build(tmp_path_factory, "mamba")


def hf_logits(ref, ids, mask=None):
    with torch.no_grad():
        return ref(
            torch.from_numpy(ids), attention_mask=None if mask is None else torch.from_numpy(mask)
        ).logits.numpy()


def rel(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_logits_match_hf(mamba, path):
    ref, d = mamba
    model = tfcore.AutoModelForCausalLM.from_pretrained(d)
    assert type(model).__name__ == "MambaForCausalLM"
    ids = np.random.default_rng(1).integers(0, 71, (2, 37))
    assert rel(model(ids).logits, hf_logits(ref, ids)) < TOL


def test_biases_and_untied_head_match_hf(tmp_path_factory):
    ref, d = build(tmp_path_factory, "mamba-bias", use_bias=True, tie_word_embeddings=False, conv_kernel=3)
    with torch.no_grad():
        ref.lm_head.weight.normal_(0, 0.5)
    ref.save_pretrained(d)
    model = models.MambaForCausalLM.from_pretrained(d)
    ids = np.random.default_rng(2).integers(0, 71, (1, 19))
    assert rel(model(ids).logits, hf_logits(ref, ids)) < TOL


def test_prefill_then_recurrent_decoding_equals_full_forward(mamba):
    _, d = mamba
    model = models.MambaForCausalLM.from_pretrained(d)
    ids = np.random.default_rng(3).integers(0, 71, (3, 41))
    full = model(ids).logits
    state = model.new_cache(3)
    parts = [model(ids[:, :30], past_key_values=state).logits]  # prefill
    for t in range(30, 38):  # one token at a time
        parts.append(model(ids[:, t : t + 1], past_key_values=state).logits)
    parts.append(model(ids[:, 38:], past_key_values=state).logits)  # a few at once
    assert state.get_seq_length() == 41
    # the same float32 operations per token except the GEMMs' blocking over M: float32 rounding
    assert rel(np.concatenate(parts, axis=1), full) < 1e-5
    assert state.shapes(0) == {"conv": (54, 3), "ssm": (54, 7)}


def test_state_holds_hf_states(mamba):
    """After a prefill the RecurrentState holds HF's conv window (its last 3 of 4 columns) and SSM state."""
    from transformers import DynamicCache

    ref, d = mamba
    model = models.MambaForCausalLM.from_pretrained(d)
    ids = np.random.default_rng(4).integers(0, 71, (2, 13))
    state = model.new_cache(2)
    model(ids, past_key_values=state)
    cache = DynamicCache(config=ref.config)
    with torch.no_grad():
        ref(torch.from_numpy(ids), cache=cache, use_cache=True)
    for i in range(3):
        conv = cache.get_conv_state(i).numpy()
        ssm = cache.get_recurrent_state(i).numpy()
        np.testing.assert_allclose(
            state.get(i, "conv"), conv[:, :, 1:], rtol=0, atol=1e-5 * np.abs(conv).max()
        )
        np.testing.assert_allclose(state.get(i, "ssm"), ssm, rtol=0, atol=1e-4 * np.abs(ssm).max())


def test_greedy_50_tokens_equal_hf(mamba):
    ref, d = mamba
    model = models.MambaForCausalLM.from_pretrained(d)
    ids = np.random.default_rng(5).integers(3, 71, (2, 9))
    assert_generate_matches_hf(ref, model, ids, max_new_tokens=50)


@pytest.mark.parametrize(
    "kw", [{"num_beams": 3}, {"num_beams": 4, "num_return_sequences": 2, "length_penalty": 0.5}]
)
def test_beam_search_equals_hf(mamba, kw):
    ref, d = mamba
    model = models.MambaForCausalLM.from_pretrained(d)
    ids = np.random.default_rng(6).integers(3, 71, (2, 7))
    assert_generate_matches_hf(ref, model, ids, max_new_tokens=12, **kw)


def test_left_padded_batch_equals_hf(mamba):
    ref, d = mamba
    model = models.MambaForCausalLM.from_pretrained(d)
    ids, mask = left_padded(np.random.default_rng(7), 71)
    assert rel(model(ids, attention_mask=mask).logits, hf_logits(ref, ids, mask)) < TOL
    assert_generate_matches_hf(ref, model, ids, mask, max_new_tokens=15)


def test_bf16_state_and_errors(mamba):
    _, d = mamba
    model = models.MambaForCausalLM.from_pretrained(d)
    ids = np.random.default_rng(8).integers(3, 71, (1, 11))
    full = model(ids).logits
    state = model.new_cache(1, dtype="bfloat16")
    model(ids[:, :6], past_key_values=state)
    last = [model(ids[:, t : t + 1], past_key_values=state).logits for t in range(6, 11)]
    # the states rounded to bf16 (8 mantissa bits) at each call: ~2^-9 relative per step
    assert rel(np.concatenate(last, axis=1), full[:, 6:]) < 3e-2
    with pytest.raises(tfcore.TfcoreValueError, match="batch_size"):
        model(ids, past_key_values=model.new_cache(2))
    with pytest.raises(tfcore.TfcoreTypeError, match="RecurrentState"):
        model(ids, past_key_values={})
    with pytest.raises(tfcore.TfcoreValueError, match="cache_policy"):
        model.new_cache(1, policy="tova")
