"""Causal LMs against Hugging Face: GPT-2, Llama (GQA, RoPE scaling, tied/untied head),
Mistral (sliding window): prefill logits, cached incremental decoding == full forward,
greedy generation token for token, left-padded batches, sampling reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hf_generate import assert_generate_matches_hf

import tfcore
from tfcore import models

TOL = 5e-5  # float32 both sides through 2-3 layers; logits are O(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def gpt2(tmp_path, **kw):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=97,
        n_embd=60,
        n_layer=3,
        n_head=5,
        n_positions=128,
        bos_token_id=1,
        eos_token_id=2,
        attn_implementation="eager",
        **kw,
    )
    ref = GPT2LMHeadModel(cfg).eval()
    ref.save_pretrained(tmp_path)
    return ref, tfcore.AutoModelForCausalLM.from_pretrained(tmp_path)


def llama(tmp_path, kind="llama", **kw):
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    Cfg, Model = (LlamaConfig, LlamaForCausalLM) if kind == "llama" else (MistralConfig, MistralForCausalLM)
    base = dict(
        vocab_size=97,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        intermediate_size=97,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        attn_implementation="eager",
    )
    base.update(kw)
    ref = Model(Cfg(**base)).eval()
    ref.save_pretrained(tmp_path)
    return ref, tfcore.AutoModelForCausalLM.from_pretrained(tmp_path)


def hf_logits(ref, ids, mask=None):
    with torch.no_grad():
        return ref(
            torch.from_numpy(ids), attention_mask=None if mask is None else torch.from_numpy(mask)
        ).logits.numpy()


def opt(tmp_path, **kw):
    from transformers import OPTConfig, OPTForCausalLM

    base = dict(
        vocab_size=97,
        hidden_size=60,
        num_hidden_layers=2,
        ffn_dim=131,
        num_attention_heads=5,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        attn_implementation="eager",
    )
    base.update(kw)
    ref = OPTForCausalLM(OPTConfig(**base)).eval()
    ref.save_pretrained(tmp_path)
    return ref, tfcore.AutoModelForCausalLM.from_pretrained(tmp_path)


MODELS = {
    "gpt2": lambda p: gpt2(p),
    "llama": lambda p: llama(p),
    "llama-gqa1-tied": lambda p: llama(p, num_key_value_heads=1, tie_word_embeddings=True),
    "llama3-scaling": lambda p: llama(
        p,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32,
        },
    ),
    "llama-linear-scaling": lambda p: llama(p, rope_scaling={"rope_type": "linear", "factor": 2.0}),
    "mistral-window": lambda p: llama(p, "mistral", sliding_window=8),
    "opt": lambda p: opt(p),
    "opt-post-norm-projected": lambda p: opt(p, do_layer_norm_before=False, word_embed_proj_dim=32),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_prefill_logits_and_cached_decoding(rng, tmp_path, name):
    ref, ours = MODELS[name](tmp_path)
    ids = rng.integers(3, 97, size=(2, 23))
    want = hf_logits(ref, ids)
    got = ours(ids).logits
    assert got.shape == want.shape and np.abs(got - want).max() < TOL
    # incremental: prompt of 11, then one token at a time through the cache == full forward
    cache = ours.new_cache(2, 4)
    steps = [ours(np.ascontiguousarray(ids[:, :11]), past_key_values=cache).logits]
    for t in range(11, 23):
        steps.append(ours(np.ascontiguousarray(ids[:, t : t + 1]), past_key_values=cache).logits)
    assert np.abs(np.concatenate(steps, axis=1) - want).max() < TOL


@pytest.mark.parametrize("name", ["gpt2", "llama", "mistral-window", "opt"])
def test_greedy_generation_matches_hf(rng, tmp_path, name):
    ref, ours = MODELS[name](tmp_path)
    got = assert_generate_matches_hf(ref, ours, rng.integers(3, 97, size=(2, 9)), max_new_tokens=50)
    assert got.shape == (2, 59)


@pytest.mark.parametrize("name", ["llama", "opt", "gpt2"])
def test_left_padded_batch_generation(rng, tmp_path, name):
    ref, ours = MODELS[name](tmp_path)
    ids = rng.integers(3, 97, size=(2, 12))
    mask = np.ones((2, 12), np.int64)
    mask[1, :5] = 0  # left padding
    ids[1, :5] = 0
    with torch.no_grad():
        want = ref.generate(
            torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            max_new_tokens=20,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=None,
        ).numpy()
    got = ours.generate(ids, attention_mask=mask, max_new_tokens=20, pad_token_id=0, eos_token_id=[])
    assert np.array_equal(got, want)


def test_eos_stops_and_pads(tmp_path, rng):
    ref, ours = gpt2(tmp_path)
    ids = rng.integers(3, 97, size=(3, 5))
    free = ours.generate(ids, max_new_tokens=12, eos_token_id=[])
    eos = int(free[0, 7])  # a token row 0 produces at step 3
    got = ours.generate(ids, max_new_tokens=12, eos_token_id=eos, pad_token_id=0)
    for b in range(3):
        new = list(got[b, 5:])
        if eos in new:
            k = new.index(eos)
            assert all(t == 0 for t in new[k + 1 :])  # finished rows are padded
            assert new[: k + 1] == list(free[b, 5 : 5 + k + 1])


def test_sampling_is_reproducible_and_follows_the_filters(rng, tmp_path):
    ref, ours = gpt2(tmp_path)
    ids = rng.integers(3, 97, size=(2, 6))
    a = ours.generate(
        ids, max_new_tokens=15, do_sample=True, top_k=5, temperature=0.7, seed=123, eos_token_id=[]
    )
    b = ours.generate(
        ids, max_new_tokens=15, do_sample=True, top_k=5, temperature=0.7, seed=123, eos_token_id=[]
    )
    c = ours.generate(
        ids, max_new_tokens=15, do_sample=True, top_k=5, temperature=0.7, seed=124, eos_token_id=[]
    )
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # top_k=1 sampling is greedy
    greedy = ours.generate(ids, max_new_tokens=15, eos_token_id=[])
    assert np.array_equal(
        ours.generate(ids, max_new_tokens=15, do_sample=True, top_k=1, seed=5, eos_token_id=[]), greedy
    )
    # the first sampled token's empirical distribution follows the filtered softmax
    from tfcore.generation import filter_top_k_top_p

    logits = ours(ids[:1]).logits[0, -1].astype(np.float64)
    p = np.exp(filter_top_k_top_p(logits[None] / 0.9, 10, 0.8)[0] - logits.max() / 0.9)
    p /= p.sum()
    draws = [
        ours.generate(
            ids[:1],
            max_new_tokens=1,
            do_sample=True,
            top_k=10,
            top_p=0.8,
            temperature=0.9,
            seed=s,
            eos_token_id=[],
        )[0, -1]
        for s in range(400)
    ]
    freq = np.bincount(draws, minlength=97) / 400
    assert set(np.nonzero(freq)[0]) <= set(np.nonzero(p)[0])  # never outside the nucleus
    assert np.abs(freq - p).max() < 0.1  # 400 draws: 3-sigma of a Bernoulli <= 0.075


def test_generate_errors(rng, tmp_path):
    ref, ours = gpt2(tmp_path)
    ids = rng.integers(3, 97, size=(1, 4))
    with pytest.raises(tfcore.TfcoreValueError, match="num_beams must be >= 1"):
        ours.generate(ids, num_beams=0)
    with pytest.raises(tfcore.TfcoreValueError, match="num_return_sequences=3 exceeds num_beams=2"):
        ours.generate(ids, num_beams=2, num_return_sequences=3)
    with pytest.raises(tfcore.TfcoreValueError, match="beam sampling"):
        ours.generate(ids, num_beams=2, do_sample=True)
    with pytest.raises(tfcore.TfcoreValueError, match="temperature"):
        ours.generate(ids, do_sample=True, temperature=0.0)
    with pytest.raises(tfcore.TfcoreValueError, match="input_ids holds 97"):
        ours(np.array([[97]]))
    with pytest.raises(tfcore.TfcoreValueError, match="attention_mask has shape"):
        ours(ids, attention_mask=np.ones((1, 3)))


@pytest.mark.parametrize("name", ["gpt2", "llama"])
@pytest.mark.parametrize(
    "kw",
    [
        dict(num_beams=4),
        dict(num_beams=4, length_penalty=0.5, num_return_sequences=2),
        dict(num_beams=3, early_stopping=True),
        dict(num_beams=2, repetition_penalty=1.3),
    ],
)
def test_beam_search_matches_hf(rng, tmp_path, name, kw):
    ref, ours = MODELS[name](tmp_path)
    ids = rng.integers(3, 97, size=(2, 7))
    # end-of-sequence: the last token of the best 3-token beam, so hypotheses finish mid-search
    eos = int(ours.generate(ids, max_new_tokens=3, eos_token_id=[], num_beams=kw["num_beams"])[0, -1])
    with torch.no_grad():
        want = ref.generate(
            torch.from_numpy(ids),
            attention_mask=torch.ones(2, 7, dtype=torch.long),
            max_new_tokens=20,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=0,
            **kw,
        ).numpy()
    got = ours.generate(ids, max_new_tokens=20, eos_token_id=eos, pad_token_id=0, **kw)
    assert got.shape == want.shape
    assert np.array_equal(got, want)


@pytest.mark.parametrize("policy", ["sink_window", "tova"])
def test_generation_with_cache_policies(rng, tmp_path, policy):
    ref, ours = llama(tmp_path)
    ids = rng.integers(3, 97, size=(2, 10))
    full = ours.generate(ids, max_new_tokens=30, eos_token_id=[])
    # a budget that never evicts gives the full-cache result exactly
    same = ours.generate(ids, max_new_tokens=30, eos_token_id=[], cache_policy=policy, cache_budget=64)
    assert np.array_equal(same, full)
    # a small budget evicts; tokens before the first eviction are unchanged
    small = ours.generate(
        ids, max_new_tokens=30, eos_token_id=[], cache_policy=policy, cache_budget=16, n_sink=2
    )
    assert small.shape == full.shape
    assert np.array_equal(small[:, : 16 + 1], full[:, : 16 + 1])
    with pytest.raises(tfcore.TfcoreValueError, match="needs cache_budget"):
        ours.generate(ids, cache_policy=policy)


def test_gpt2_model_hidden_states_and_attentions(rng, tmp_path):
    from transformers import GPT2Config, GPT2Model

    cfg = GPT2Config(
        vocab_size=97, n_embd=60, n_layer=3, n_head=5, n_positions=128, attn_implementation="eager"
    )
    ref = GPT2Model(cfg).eval()
    ref.save_pretrained(tmp_path)
    ours = tfcore.AutoModel.from_pretrained(tmp_path)
    assert isinstance(ours, models.GPT2Model)
    ids = rng.integers(0, 97, size=(2, 13))
    with torch.no_grad():
        want = ref(torch.from_numpy(ids), output_hidden_states=True, output_attentions=True)
    got = ours(ids, output_hidden_states=True, output_attentions=True)
    assert np.abs(got.last_hidden_state - want.last_hidden_state.numpy()).max() < TOL
    for a, b in zip(got.hidden_states, want.hidden_states, strict=True):
        assert np.abs(a - b.numpy()).max() < TOL
    for a, b in zip(got.attentions, want.attentions, strict=True):
        assert np.abs(a - b.numpy()).max() < 1e-5


def test_streamer_sees_every_new_token(rng, tmp_path):
    ref, ours = gpt2(tmp_path)
    ids = rng.integers(3, 97, size=(2, 5))
    seen = []
    out = ours.generate(ids, max_new_tokens=7, eos_token_id=[], streamer=lambda t: seen.append(t.copy()))
    assert np.array_equal(np.stack(seen, axis=1), out[:, 5:])
