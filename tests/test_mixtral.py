"""MixtralForCausalLM against Hugging Face (eager experts, float32): a tiny random model with
top-2 of 4 experts and odd sizes. Prefill logits, cached decoding == full forward, greedy 50
tokens, beam search in two settings, a left-padded batch, both checkpoint layouts, bf16/int8."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hf_generate import assert_generate_matches_hf, left_padded
from safetensors.numpy import load_file, save_file

import tfcore
from tfcore import models

TOL = 1e-4  # relative to the largest logit: float32 on both sides through 3 layers


@pytest.fixture(scope="module")
def mixtral(tmp_path_factory):
    """(HF model, its directory): hidden 42 (3 heads of 14, one KV head), 53 intermediate,
    4 experts top-2, 3 layers. The router weights are scaled up so routing is decided by
    clear margins, not by float32 rounding (random init leaves it near uniform)."""
    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(0)
    cfg = MixtralConfig(
        vocab_size=97,
        hidden_size=42,
        intermediate_size=53,
        num_hidden_layers=3,
        num_attention_heads=3,
        num_key_value_heads=1,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        attn_implementation="eager",
        experts_implementation="eager",  # the reference loop (grouped_mm refuses odd strides)
    )
    ref = MixtralForCausalLM(cfg).eval()
    with torch.no_grad():
        for layer in ref.model.layers:
            layer.mlp.gate.weight.mul_(40.0)
    path = tmp_path_factory.mktemp("mixtral")
    ref.save_pretrained(path)
    return ref, path


def hf_logits(ref, ids, mask=None):
    with torch.no_grad():
        return ref(
            torch.from_numpy(ids), attention_mask=None if mask is None else torch.from_numpy(mask)
        ).logits.numpy()


def rel(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def test_prefill_logits_and_cached_decoding(mixtral, rng):
    ref, path = mixtral
    ours = tfcore.AutoModelForCausalLM.from_pretrained(path)
    assert isinstance(ours, models.MixtralForCausalLM)
    assert isinstance(ours.model.layers[0].feed_forward, tfcore.MixtureOfExperts)
    ids = rng.integers(3, 97, size=(2, 23))
    want = hf_logits(ref, ids)
    # every expert of every layer gets some tokens here (the routing is not degenerate)
    assert rel(ours(ids).logits, want) < TOL
    cache = ours.new_cache(2, 4)
    steps = [ours(np.ascontiguousarray(ids[:, :11]), past_key_values=cache).logits]
    for t in range(11, 23):
        steps.append(ours(np.ascontiguousarray(ids[:, t : t + 1]), past_key_values=cache).logits)
    assert rel(np.concatenate(steps, axis=1), want) < TOL
    base = models.MixtralModel.from_pretrained(path)
    with torch.no_grad():
        hidden = ref.model(torch.from_numpy(ids)).last_hidden_state.numpy()
    assert rel(base(ids).last_hidden_state, hidden) < TOL


def test_greedy_50_tokens_match_hf(mixtral, rng):
    ref, path = mixtral
    ours = models.MixtralForCausalLM.from_pretrained(path)
    got = assert_generate_matches_hf(ref, ours, rng.integers(3, 97, size=(2, 9)), max_new_tokens=50)
    assert got.shape == (2, 59)


@pytest.mark.parametrize(
    "kw", [dict(num_beams=4), dict(num_beams=3, length_penalty=0.5, num_return_sequences=2)]
)
def test_beam_search_matches_hf(mixtral, rng, kw):
    ref, path = mixtral
    ours = models.MixtralForCausalLM.from_pretrained(path)
    assert_generate_matches_hf(ref, ours, rng.integers(3, 97, size=(2, 7)), max_new_tokens=16, **kw)


def test_left_padded_batch(mixtral, rng):
    ref, path = mixtral
    ours = models.MixtralForCausalLM.from_pretrained(path)
    assert_generate_matches_hf(ref, ours, *left_padded(rng, 97), max_new_tokens=20)


def test_fused_expert_layout_loads_the_same(mixtral, rng, tmp_path):
    """transformers 5's in-memory keys (mlp.gate, mlp.experts.gate_up_proj / down_proj)."""
    import shutil

    ref, path = mixtral
    tensors = load_file(str(path / "model.safetensors"))
    L, E = 3, 4
    for i in range(L):
        p = f"model.layers.{i}.block_sparse_moe"
        w = [[tensors.pop(f"{p}.experts.{j}.{n}.weight") for n in ("w1", "w3", "w2")] for j in range(E)]
        tensors[f"model.layers.{i}.mlp.gate.weight"] = tensors.pop(f"{p}.gate.weight")
        tensors[f"model.layers.{i}.mlp.experts.gate_up_proj"] = np.stack([np.concatenate(e[:2]) for e in w])
        tensors[f"model.layers.{i}.mlp.experts.down_proj"] = np.stack([e[2] for e in w])
    shutil.copy(path / "config.json", tmp_path / "config.json")
    save_file(tensors, str(tmp_path / "model.safetensors"))
    fused = models.MixtralForCausalLM.from_pretrained(tmp_path)
    assert fused.unexpected_keys == []
    ids = rng.integers(3, 97, size=(1, 15))
    assert np.array_equal(fused(ids).logits, models.MixtralForCausalLM.from_pretrained(path)(ids).logits)


@pytest.mark.parametrize("dtype, tol", [("bfloat16", 5e-2), ("int8", 1e-1)])
def test_low_precision_weights(mixtral, rng, dtype, tol):
    ref, path = mixtral
    ours = models.MixtralForCausalLM.from_pretrained(path, dtype=dtype)
    ids = rng.integers(3, 97, size=(1, 17))
    # a bf16 / int8 GEMM moves the router's input slightly, which can flip a close routing
    # choice; the logits stay within the precision's error of float32
    assert rel(ours(ids).logits, hf_logits(ref, ids)) < tol


def test_config_errors(mixtral, tmp_path):
    import json
    import shutil

    _, path = mixtral
    shutil.copy(path / "model.safetensors", tmp_path / "model.safetensors")
    cfg = json.loads((path / "config.json").read_text())
    cfg["num_experts_per_tok"] = 5
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        tfcore.CheckpointError, match="num_experts_per_tok=5 must be an integer in 1..num_local_experts=4"
    ):
        models.MixtralForCausalLM.from_pretrained(tmp_path)
    cfg["num_experts_per_tok"], cfg["num_local_experts"] = 2, 5
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        tfcore.CheckpointError, match=r"block_sparse_moe.gate.weight' has shape \(4, 42\), expected \(5, 42\)"
    ):
        models.MixtralForCausalLM.from_pretrained(tmp_path)
