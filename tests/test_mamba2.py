"""Mamba2ForCausalLM against Hugging Face's (its torch chunked / recurrent path on CPU,
float32): a tiny random model with odd sizes (hidden 27, 6 heads of 9, 2 groups, state 11,
3 layers, HF chunk_size 16 so the prompts span several chunks). Prefill logits, prefill +
recurrent decoding == full forward, HF's cached states, greedy 50 tokens, beam search in two
settings, a left-padded batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hf_generate import assert_generate_matches_hf, left_padded

import tfcore
from tfcore import models

TOL = 1e-4  # relative to the largest logit: float32 on both sides through 3 layers


@pytest.fixture(scope="module")
def mamba2(tmp_path_factory):
    """(HF model, its directory); dt_bias, A_log, D and the norms perturbed away from their
    uniform init so every head decays differently."""
    from transformers import Mamba2Config, Mamba2ForCausalLM

    torch.manual_seed(0)
    cfg = Mamba2Config(
        vocab_size=67,
        hidden_size=27,
        num_heads=6,
        head_dim=9,
        expand=2,
        n_groups=2,
        state_size=11,
        num_hidden_layers=3,
        conv_kernel=4,
        chunk_size=16,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    ref = Mamba2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for layer in ref.backbone.layers:
            m = layer.mixer
            m.dt_bias.add_(torch.randn_like(m.dt_bias))
            m.A_log.add_(0.5 * torch.randn_like(m.A_log))
            m.D.add_(0.5 * torch.randn_like(m.D))
            m.norm.weight.add_(0.2 * torch.randn_like(m.norm.weight))
            layer.norm.weight.add_(0.2 * torch.randn_like(layer.norm.weight))
        ref.backbone.embeddings.weight.mul_(5.0)
        ref.lm_head.weight.normal_(0, 0.5)
    path = tmp_path_factory.mktemp("mamba2")
    ref.save_pretrained(path)
    return ref, path


def hf_logits(ref, ids, mask=None):
    with torch.no_grad():
        return ref(
            torch.from_numpy(ids), attention_mask=None if mask is None else torch.from_numpy(mask)
        ).logits.numpy()


def rel(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_logits_match_hf(mamba2, path):
    ref, d = mamba2
    model = tfcore.AutoModelForCausalLM.from_pretrained(d)
    assert type(model).__name__ == "Mamba2ForCausalLM"
    assert model.layers[0][1].intermediate_size == 54
    ids = np.random.default_rng(1).integers(0, 67, (2, 37))
    assert rel(model(ids).logits, hf_logits(ref, ids)) < TOL


def test_prefill_then_recurrent_decoding_equals_full_forward(mamba2):
    _, d = mamba2
    model = models.Mamba2ForCausalLM.from_pretrained(d)
    ids = np.random.default_rng(3).integers(0, 67, (3, 45))
    full = model(ids).logits
    state = model.new_cache(3)
    parts = [model(ids[:, :30], past_key_values=state).logits]  # chunkwise prefill
    for t in range(30, 38):  # recurrent, one token at a time
        parts.append(model(ids[:, t : t + 1], past_key_values=state).logits)
    parts.append(model(ids[:, 38:], past_key_values=state).logits)  # chunkwise again
    assert state.get_seq_length() == 45
    # chunkwise vs recurrent order their float32 sums differently
    assert rel(np.concatenate(parts, axis=1), full) < 1e-5
    assert state.shapes(0) == {"conv": (54 + 2 * 2 * 11, 3), "ssm": (6, 9, 11)}


def test_state_holds_hf_states(mamba2):
    from transformers import DynamicCache

    ref, d = mamba2
    model = models.Mamba2ForCausalLM.from_pretrained(d)
    ids = np.random.default_rng(4).integers(0, 67, (2, 21))
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


def test_greedy_50_tokens_equal_hf(mamba2):
    ref, d = mamba2
    model = models.Mamba2ForCausalLM.from_pretrained(d)
    ids = np.random.default_rng(5).integers(3, 67, (2, 9))
    assert_generate_matches_hf(ref, model, ids, max_new_tokens=50)


@pytest.mark.parametrize(
    "kw", [{"num_beams": 3}, {"num_beams": 4, "num_return_sequences": 2, "length_penalty": 0.5}]
)
def test_beam_search_equals_hf(mamba2, kw):
    ref, d = mamba2
    model = models.Mamba2ForCausalLM.from_pretrained(d)
    ids = np.random.default_rng(6).integers(3, 67, (2, 7))
    assert_generate_matches_hf(ref, model, ids, max_new_tokens=12, **kw)


def test_left_padded_batch_equals_hf(mamba2):
    ref, d = mamba2
    model = models.Mamba2ForCausalLM.from_pretrained(d)
    ids, mask = left_padded(np.random.default_rng(7), 67)
    assert rel(model(ids, attention_mask=mask).logits, hf_logits(ref, ids, mask)) < TOL
    assert_generate_matches_hf(ref, model, ids, mask, max_new_tokens=15)
