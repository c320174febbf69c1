"""Elementwise activations, GLU and rotary embedding against NumPy/torch/HF."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import dense, ops

import tfcore

F = tfcore.functional


@pytest.mark.parametrize("kind", ["gelu", "gelu_tanh", "relu", "silu", "tanh"])
@pytest.mark.parametrize("n", [1, 7, 97, 131, 100003])
def test_activations(rng, path, kind, n):
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    got = F.activation(x, kind)
    # vectorised exp/tanh: a few ulp of |y|, so 2e-6 relative + 1e-6 absolute
    want = dense.activation(x, kind)
    assert np.all(np.abs(got - want) <= 2e-6 * np.abs(want) + 1e-6)


def test_named_activations_match_torch(rng):
    x = (rng.standard_normal((3, 50)) * 3).astype(np.float32)
    tx = torch.from_numpy(x)
    assert np.abs(F.gelu(x) - torch.nn.functional.gelu(tx).numpy()).max() < 1e-6
    assert (
        np.abs(F.gelu(x, approximate="tanh") - torch.nn.functional.gelu(tx, approximate="tanh").numpy()).max()
        < 2e-6
    )
    assert np.abs(F.silu(x) - torch.nn.functional.silu(tx).numpy()).max() < 2e-6
    assert np.array_equal(F.relu(x), torch.relu(tx).numpy())
    out = np.empty_like(x)
    assert F.silu(x, out=out) is out
    assert np.shares_memory(F.relu(x, out=x), x)  # in place


@pytest.mark.parametrize("kind", ["silu", "gelu", "gelu_tanh"])
def test_glu(rng, path, kind):
    x = rng.standard_normal((2, 5, 2 * 97)).astype(np.float32)
    got = F.glu(x, kind)
    want = dense.activation(x[..., :97], kind) * x[..., 97:]
    assert got.shape == (2, 5, 97)
    assert np.abs(got - want).max() < 1e-5


def test_activation_errors():
    with pytest.raises(tfcore.TfcoreValueError, match="unknown activation 'sigmoid'"):
        F.activation(np.zeros(3, np.float32), "sigmoid")
    with pytest.raises(tfcore.TfcoreValueError, match="approximate must be"):
        F.gelu(np.zeros(3, np.float32), approximate="fast")
    with pytest.raises(tfcore.TfcoreValueError, match="even last dim"):
        F.glu(np.zeros((2, 7), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="Inf"):
        F.silu(np.array([np.inf], np.float32))
    with pytest.raises(tfcore.TfcoreTypeError, match="float32"):
        F.relu(np.zeros(3, np.float64))


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize(
    "D,rotary_dim", [(8, 8), (64, 64), (80, 32), (97, 2), (97, 14), (131, 130), (7, 6), (2100, 2098)]
)
def test_rotary_embedding(rng, path, interleaved, D, rotary_dim):
    B, T, H = 2, 13, 3
    x = rng.standard_normal((B, T, H, D)).astype(np.float32)
    inv = F.rope_inv_freq(D, 10000.0, rotary_dim=rotary_dim)
    pos = rng.integers(0, 4000, size=(B, T))
    got = F.rotary_embedding(x, inv, pos, interleaved=interleaved)
    want = ops.rope(x, pos, inv, interleaved)
    # angles up to 4000 rad in float32 (like HF): |error| ~ 4000 * eps ~ 5e-4 at most
    assert np.abs(got - want).max() < 1e-3
    assert np.array_equal(got[..., rotary_dim:], x[..., rotary_dim:])
    got0 = F.rotary_embedding(x, inv, offset=5, interleaved=interleaved)
    want0 = ops.rope(x, np.broadcast_to(np.arange(T) + 5, (B, T)), inv, interleaved)
    assert np.abs(got0 - want0).max() < 1e-5
    if path != "reference":
        # same float32 angles, same rounded products: the vector paths give the reference's bits
        prev = tfcore._C._set_isa("reference")
        try:
            ref = F.rotary_embedding(x, inv, pos, interleaved=interleaved)
        finally:
            tfcore._C._set_isa(prev)
        np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize(
    "scaling",
    [
        None,
        {"rope_type": "linear", "factor": 4.0},
        {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    ],
)
def test_rope_matches_hf_llama(rng, scaling):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    cfg = LlamaConfig(
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rope_theta=500000.0,
        rope_scaling=scaling,
    )
    rope = LlamaRotaryEmbedding(cfg)
    inv = F.rope_inv_freq(16, 500000.0, scaling=scaling)
    assert np.abs(inv - rope.inv_freq.numpy()).max() <= 1e-7 * np.abs(inv).max()
    B, T = 2, 31
    q = rng.standard_normal((B, 4, T, 16)).astype(np.float32)  # HF layout (B, H, T, D)
    pos = torch.arange(T)[None].expand(B, T) + 100
    with torch.no_grad():
        cos, sin = rope(torch.from_numpy(q), pos)
        want, _ = apply_rotary_pos_emb(torch.from_numpy(q), torch.from_numpy(q), cos, sin)
    got = F.rotary_embedding(np.ascontiguousarray(q.transpose(0, 2, 1, 3)), inv, pos.numpy().copy())
    assert np.abs(got.transpose(0, 2, 1, 3) - want.numpy()).max() < 2e-5  # float32 angles on both sides


def test_rope_errors(rng):
    x = rng.standard_normal((1, 3, 2, 8)).astype(np.float32)
    inv = F.rope_inv_freq(8)
    with pytest.raises(tfcore.TfcoreValueError, match="x must have 4 dimensions"):
        F.rotary_embedding(x[0], inv)
    with pytest.raises(tfcore.TfcoreValueError, match="rotary dim"):
        F.rotary_embedding(x, np.ones(5, np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match=r"positions has shape \(1, 2\)"):
        F.rotary_embedding(x, inv, np.zeros((1, 2), np.int64))
    with pytest.raises(tfcore.TfcoreTypeError, match="int64"):
        F.rotary_embedding(x, inv, np.zeros((1, 3), np.int32))
    with pytest.raises(ValueError, match="unsupported rope_scaling"):
        F.rope_inv_freq(8, scaling={"rope_type": "yarn", "factor": 2.0})
    with pytest.raises(ValueError, match="rotary_dim must be even"):
        F.rope_inv_freq(8, rotary_dim=3)
