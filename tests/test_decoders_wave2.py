"""Decoder wave 2 against Hugging Face (eval mode, float32, eager attention): Qwen2 (q/k/v
biases, sliding-window layers), Phi-3 (fused qkv/gate-up, LongRoPE short factors, partial
rotary), GPT-NeoX (parallel residual, partial rotary), Falcon (multi-query, grouped
new architecture, sequential) and Gemma 2 (soft-capped attention and logits, alternating
sliding-window layers, sandwich norms, scaled embeddings, GeGLU, query_pre_attn_scalar): prefill logits <= 1e-4 relative, cached decoding == full
forward, greedy 50 tokens, beam search, a left-padded batch, bfloat16 and int8 loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hf_generate import assert_generate_matches_hf, left_padded

import tfcore
from tfcore import models

REL = 1e-4  # logits: max |tfcore - HF| / max |HF|, float32 both sides


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """HF's tiny-model generate() with one thread: on a loaded 2-core machine its 2-thread
    parallel regions wait on each other (~50x slower here); results do not depend on it."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _hf(kind, **kw):
    import transformers as T

    Cfg, Model = {
        "qwen2": (T.Qwen2Config, T.Qwen2ForCausalLM),
        "qwen3": (T.Qwen3Config, T.Qwen3ForCausalLM),
        "phi3": (T.Phi3Config, T.Phi3ForCausalLM),
        "gpt_neox": (T.GPTNeoXConfig, T.GPTNeoXForCausalLM),
        "falcon": (T.FalconConfig, T.FalconForCausalLM),
        "gemma2": (T.Gemma2Config, T.Gemma2ForCausalLM),
    }[kind]
    base = dict(
        vocab_size=97,
        num_hidden_layers=3,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        attn_implementation="eager",
    )
    base.update(kw)
    return Model(Cfg(**base)).eval()


LLAMA_LIKE = dict(hidden_size=60, num_attention_heads=6, num_key_value_heads=2, intermediate_size=97)

FAMILIES = {
    # GQA 6/2, q/k/v biases, full attention
    "qwen2": lambda: _hf("qwen2", **LLAMA_LIKE),
    # layers 1 and 2 slide over 8 keys (HF: from max_window_layers on)
    "qwen2-window": lambda: _hf(
        "qwen2", **LLAMA_LIKE, use_sliding_window=True, sliding_window=8, max_window_layers=1
    ),
    # per-head q/k RMSNorm before rotary; head_dim 12 != hidden/heads (Qwen3 states it)
    "qwen3": lambda: _hf("qwen3", **LLAMA_LIKE, head_dim=12, rms_norm_eps=1e-5),
    "qwen3-window-tied": lambda: _hf(
        "qwen3",
        **LLAMA_LIKE,
        head_dim=12,
        use_sliding_window=True,
        sliding_window=8,
        max_window_layers=2,
        tie_word_embeddings=True,
    ),
    "phi3": lambda: _hf(
        "phi3", **LLAMA_LIKE, max_position_embeddings=256, original_max_position_embeddings=256
    ),
    # LongRoPE: factor 256/64 = 4, attention factor sqrt(1 + ln 4 / ln 64), short factors below 64 positions
    "phi3-longrope": lambda: _hf(
        "phi3",
        **LLAMA_LIKE,
        max_position_embeddings=256,
        original_max_position_embeddings=64,
        rope_scaling={
            "rope_type": "longrope",
            "short_factor": [1.0, 1.3, 1.9, 2.6, 4.1],
            "long_factor": [1.5, 2.0, 3.0, 5.0, 8.0],
        },
    ),
    "phi3-partial-rotary": lambda: _hf(
        "phi3", **LLAMA_LIKE, partial_rotary_factor=0.6, max_position_embeddings=256
    ),
    # D = 16, rotary on the first 4 dims of each head, parallel residual
    "gpt_neox": lambda: _hf(
        "gpt_neox", hidden_size=64, num_attention_heads=4, intermediate_size=97, rotary_pct=0.25
    ),
    "gpt_neox-sequential": lambda: _hf(
        "gpt_neox",
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=97,
        rotary_pct=0.5,
        use_parallel_residual=False,
    ),
    # Falcon-7B shape: one K/V head, one shared layer norm, parallel
    "falcon-mqa": lambda: _hf("falcon", hidden_size=60, num_attention_heads=6, ffn_hidden_size=97),
    # Falcon-40B/180B shape: grouped qkv with 2 KV heads, ln_attn + ln_mlp, biases
    "falcon-new-arch": lambda: _hf(
        "falcon",
        hidden_size=60,
        num_attention_heads=6,
        num_kv_heads=2,
        new_decoder_architecture=True,
        ffn_hidden_size=97,
        bias=True,
    ),
    # per-head [H, 3, D] qkv, sequential pre-norm layer
    "falcon-sequential": lambda: _hf(
        "falcon",
        hidden_size=60,
        num_attention_heads=6,
        multi_query=False,
        parallel_attn=False,
        ffn_hidden_size=97,
        bias=True,
    ),
    # head_dim 16 != 60 / 6, scale 20 ** -0.5, layers 0 and 2 slide over 8 keys (HF's
    # default layer_types), attention scores capped at 3 and logits at 5 (small caps so that
    # tanh saturates: the default 50 / 30 barely touch a random tiny model's scores)
    "gemma2": lambda: _hf(
        "gemma2",
        **LLAMA_LIKE,
        head_dim=16,
        query_pre_attn_scalar=20,
        sliding_window=8,
        attn_logit_softcapping=3.0,
        final_logit_softcapping=5.0,
    ),
    # no soft-capping, untied head, sliding layers given explicitly (window 5)
    "gemma2-layer-types": lambda: _hf(
        "gemma2",
        **LLAMA_LIKE,
        head_dim=12,
        query_pre_attn_scalar=12,
        sliding_window=5,
        layer_types=["full_attention", "sliding_attention", "sliding_attention"],
        attn_logit_softcapping=None,
        final_logit_softcapping=None,
        tie_word_embeddings=False,
    ),
}

CLASSES = {
    "qwen2": models.Qwen2ForCausalLM,
    "qwen3": models.Qwen3ForCausalLM,
    "phi3": models.Phi3ForCausalLM,
    "gpt_neox": models.GPTNeoXForCausalLM,
    "falcon": models.FalconForCausalLM,
    "gemma2": models.Gemma2ForCausalLM,
}


def load(name, tmp_path, **kw):
    torch.manual_seed(0)
    ref = FAMILIES[name]()
    with torch.no_grad():  # HF starts norms at 1 and biases at 0: make them matter
        for p in ref.parameters():
            if p.dim() == 1:
                p.add_(0.2 * torch.randn_like(p))
    ref.save_pretrained(tmp_path)
    ours = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path, **kw)
    assert type(ours) is CLASSES[name.split("-")[0]]
    return ref, ours


def hf_logits(ref, ids, mask=None):
    with torch.no_grad():
        m = None if mask is None else torch.from_numpy(mask)
        return ref(torch.from_numpy(ids), attention_mask=m).logits.numpy()


def rel_err(got, want):
    return np.abs(got - want).max() / np.abs(want).max()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_prefill_logits_and_cached_decoding(rng, tmp_path, name):
    ref, ours = load(name, tmp_path)
    assert not ours.unexpected_keys
    ids = rng.integers(3, 97, size=(2, 23))
    want = hf_logits(ref, ids)
    got = ours(ids).logits
    assert got.shape == want.shape and rel_err(got, want) <= REL
    # prompt of 11 then one token at a time through the cache == HF's full forward
    cache = ours.new_cache(2, 4)
    steps = [ours(np.ascontiguousarray(ids[:, :11]), past_key_values=cache).logits]
    for t in range(11, 23):
        steps.append(ours(np.ascontiguousarray(ids[:, t : t + 1]), past_key_values=cache).logits)
    assert rel_err(np.concatenate(steps, axis=1), want) <= REL


# every family; the other variants differ only in what the prefill test above already pins down
GREEDY = [
    "qwen2-window",
    "qwen3",
    "phi3-longrope",
    "phi3-partial-rotary",
    "gpt_neox",
    "falcon-mqa",
    "falcon-new-arch",
    "gemma2",
    "gemma2-layer-types",
]


@pytest.mark.parametrize("name", GREEDY)
def test_greedy_50_tokens_match_hf(rng, tmp_path, name):
    ref, ours = load(name, tmp_path)
    got = assert_generate_matches_hf(ref, ours, rng.integers(3, 97, size=(2, 9)), max_new_tokens=50)
    assert got.shape == (2, 59)


@pytest.mark.parametrize("name", ["qwen2-window", "phi3-longrope", "gpt_neox", "falcon-new-arch", "gemma2"])
def test_beam_search_and_left_padding_match_hf(rng, tmp_path, name):
    ref, ours = load(name, tmp_path)
    ids = rng.integers(3, 97, size=(2, 7))
    # end-of-sequence: the last token of the best 3-token beam, so hypotheses finish mid-search
    eos = int(ours.generate(ids, max_new_tokens=3, eos_token_id=[], num_beams=3)[0, -1])
    kw = dict(num_beams=3, length_penalty=0.7, num_return_sequences=2)
    assert_generate_matches_hf(ref, ours, ids, max_new_tokens=20, eos_token_id=eos, **kw)
    # left-padded batch: row 1 has 5 padding tokens
    ids, mask = left_padded(rng, 97)
    assert_generate_matches_hf(ref, ours, ids, mask, max_new_tokens=20)


LOW_PRECISION = ["qwen2", "qwen3", "phi3-longrope", "gpt_neox", "falcon-new-arch", "falcon-mqa"]


@pytest.mark.skipif("bfloat16" not in tfcore.supported_dtypes(), reason="no fast bf16 matmul on this CPU")
@pytest.mark.parametrize("name", LOW_PRECISION)
def test_bfloat16_loads_and_runs(rng, tmp_path, name):
    """bf16 projections from a bfloat16 checkpoint against HF in float32 on the same
    bf16-rounded weights; cached decoding equals the full forward of the bf16 model."""
    ref, _ = load(name, tmp_path / "f32")
    ref.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    ref = (
        type(ref).from_pretrained(tmp_path / "bf16", dtype=torch.float32, attn_implementation="eager").eval()
    )
    model = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path / "bf16", dtype="bfloat16")
    assert model.lm_head.dtype == "bfloat16"
    ids = rng.integers(3, 97, size=(2, 17))
    want, got = hf_logits(ref, ids), model(ids).logits
    assert rel_err(got, want) < 2e-2  # rows rounded to bf16 before each GEMM: ~3 digits
    cache = model.new_cache(2, 4)
    steps = [model(np.ascontiguousarray(ids[:, :14]), past_key_values=cache).logits]
    for t in range(14, 17):
        steps.append(model(np.ascontiguousarray(ids[:, t : t + 1]), past_key_values=cache).logits)
    assert np.abs(np.concatenate(steps, axis=1) - got).max() < 1e-4 * np.abs(got).max()


@pytest.mark.skipif("int8" not in tfcore.supported_dtypes(), reason="no fast int8 matmul on this CPU")
@pytest.mark.parametrize("name", LOW_PRECISION + ["gemma2"])
def test_int8_loads_and_runs(rng, tmp_path, name):
    """int8 against HF with the same fake quantization (weights per output channel,
    activations per token) in every projection, and near float32."""
    from reference.quant import emulate_int8

    ref, _ = load(name, tmp_path)
    ids = rng.integers(3, 97, size=(2, 17))
    full = hf_logits(ref, ids)
    with torch.no_grad():
        emulated = emulate_int8(ref)(torch.from_numpy(ids)).logits.numpy()
    model = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path, dtype="int8")
    assert model.lm_head.dtype == "int8"
    got = model(ids).logits
    # the same integers: nearly every position agrees to float32 rounding; a row scale that
    # lands an activation on the other side of a rounding boundary moves one position by
    # one quantization step (seen: 3e-3 on one of the 34 positions for gpt_neox)
    per_position = np.abs(got - emulated).max(-1) / np.abs(emulated).max()
    assert np.median(per_position) < 2e-4 and per_position.max() < 1e-2
    assert rel_err(got, full) < 5e-2
    # greedy decoding through the int8 cache path agrees with the int8 full forward
    out = model.generate(ids[:1, :5], max_new_tokens=8, eos_token_id=[])
    assert np.array_equal(model(out[:, :-1]).logits[0, 4:].argmax(-1), out[0, 5:])


def test_what_is_not_supported_is_refused(rng, tmp_path):
    """Positions where HF switches Phi-3's LongRoPE to long_factor raise (never silently
    different numbers); ALiBi Falcons and odd partial-rotary sizes fail at load, naming why."""
    import json

    _, phi3 = load("phi3-longrope", tmp_path / "phi3")
    phi3(rng.integers(3, 97, size=(1, 64)))  # original_max_position_embeddings = 64: fine
    with pytest.raises(tfcore.TfcoreValueError, match="long_factor"):
        phi3(rng.integers(3, 97, size=(1, 65)))
    with pytest.raises(tfcore.TfcoreValueError, match="long_factor"):
        phi3.generate(rng.integers(3, 97, size=(1, 60)), max_new_tokens=10, eos_token_id=[])

    def edited(name, **changes):
        path = tmp_path / name
        cfg = json.loads((path / "config.json").read_text())
        cfg.update(changes)
        (path / "config.json").write_text(json.dumps(cfg))
        return path

    load("falcon-mqa", tmp_path / "falcon")
    with pytest.raises(tfcore.CheckpointError, match="alibi"):
        tfcore.AutoModelForCausalLM.from_pretrained(edited("falcon", alibi=True))
    load("gpt_neox", tmp_path / "neox")
    params = json.loads((tmp_path / "neox" / "config.json").read_text()).get("rope_parameters", {})
    with pytest.raises(tfcore.CheckpointError, match="rotary dims"):
        tfcore.AutoModelForCausalLM.from_pretrained(
            edited("neox", rope_parameters={**params, "partial_rotary_factor": 0.2})  # 16 * 0.2 -> 3 dims
        )
