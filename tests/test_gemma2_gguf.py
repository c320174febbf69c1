"""Gemma 2 GGUF files (llama.cpp's layout, written by the gguf package from tiny random HF
models; tests/gguf_files.py): config from the metadata (soft-caps, sliding window, head_dim,
query_pre_attn_scalar as llama.cpp derives it), norms stored as 1 + w, tensors mapped to
tfcore's Gemma2ForCausalLM; logits and greedy tokens against HF on the same weights."""

import numpy as np
import pytest
import torch
from gguf_files import write_gemma2_gguf

import tfcore
from tfcore import gguf as G


def tiny_gemma2(seed=0):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(seed)
    cfg = Gemma2Config(
        vocab_size=101,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,  # != 64 / 4
        query_pre_attn_scalar=32,  # llama.cpp: head_dim (every Gemma 2 but the 27B)
        sliding_window=6,
        attn_logit_softcapping=4.0,
        final_logit_softcapping=6.0,
        max_position_embeddings=128,
        attn_implementation="eager",
    )
    model = Gemma2ForCausalLM(cfg).eval()
    with torch.no_grad():  # norms start at 0 (1 + w = 1): make them matter
        for n, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.3 * torch.randn_like(p))
    return model


def test_config_from_metadata(tmp_path):
    path = write_gemma2_gguf(tiny_gemma2(), tmp_path / "g.gguf")
    cfg = G.read_config(path)
    assert cfg.model_type == "gemma2"
    assert (cfg.head_dim, cfg.query_pre_attn_scalar, cfg.sliding_window) == (32, 32, 6)
    assert (cfg.attn_logit_softcapping, cfg.final_logit_softcapping) == (4.0, 6.0)
    assert cfg.tie_word_embeddings is True


def test_27b_shape_scales_by_hidden_over_heads():
    md = {
        "general.architecture": "gemma2",
        "gemma2.block_count": 46,
        "gemma2.embedding_length": 4608,
        "gemma2.feed_forward_length": 36864,
        "gemma2.attention.head_count": 32,
        "gemma2.attention.head_count_kv": 16,
        "gemma2.attention.key_length": 128,
        "gemma2.vocab_size": 256000,
    }
    cfg, _ = G.config_from_metadata(md, ["token_embd.weight"], "27b.gguf")
    assert cfg.query_pre_attn_scalar == 144 and cfg.head_dim == 128
    assert (cfg.attn_logit_softcapping, cfg.final_logit_softcapping) == (50.0, 30.0)


@pytest.mark.parametrize("qtype", ["F32", "Q8_0", "Q4_0"])
def test_logits_and_greedy_match_hf(tmp_path, qtype):
    ref = tiny_gemma2()
    path = write_gemma2_gguf(ref, tmp_path / "g.gguf", qtype)
    model = tfcore.AutoModelForCausalLM.from_pretrained(path)
    assert type(model) is tfcore.models.Gemma2ForCausalLM and not model.unexpected_keys
    # HF on the weights the file holds (dequantized by tfcore's reader, checked bit-equal to
    # the gguf package's in test_gguf.py); norms as HF stores them (1 + w - 1)
    ck = G.load(path)[1]
    sd = {k: torch.from_numpy(np.ascontiguousarray(ck.float32(k))) for k in ck}
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    ref.load_state_dict(sd)
    ids = np.random.default_rng(0).integers(0, 101, (2, 15))  # past the window of 6
    with torch.no_grad():
        want = ref(torch.from_numpy(ids)).logits.numpy()
    got = model(ids).logits
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    ref.generation_config.eos_token_id = None  # the file names no end-of-sequence token
    with torch.no_grad():
        hf = ref.generate(torch.from_numpy(ids[:1, :4]), max_new_tokens=30, do_sample=False).numpy()
    np.testing.assert_array_equal(model.generate(ids[:1, :4], max_new_tokens=30), hf)
    if qtype == "Q4_0":  # the 4-bit blocks kept in 4 bits: prefill equals float32
        # (the base model: the tied head, an embedding table, runs in int8 under int4).
        # 3 x 15 = 45 rows: past the 32 rows up to which int4 Linears take the integer-dot
        # kernel with int8-quantized activations; above, the 4-bit weights are dequantized
        # for oneDNN's float32 GEMM (exact)
        rows = np.random.default_rng(1).integers(0, 101, (3, 15))
        h4 = tfcore.models.Gemma2Model.from_pretrained(path, dtype="int4")(rows).last_hidden_state
        h32 = tfcore.models.Gemma2Model.from_pretrained(path)(rows).last_hidden_state
        assert np.abs(h4 - h32).max() <= 1e-4 * np.abs(h32).max()
