"""BigBirdModel against Hugging Face's (eval mode, tiny random weights): block-sparse path
at lengths above HF's full-attention fallback threshold (odd lengths padded to the block
size, padding masks, batch 2), the fallback at and below the threshold, config variants,
bf16/int8 loading.

Each comparison uses a freshly loaded HF model: HF's fallback switches a model to full
attention for good (set_attention_type), which would silently turn later block-sparse
comparisons into full-attention ones; the tests also check HF stayed block-sparse.

Tolerance: float32 on both sides through 2 layers of width 48; observed max abs
differences ~1e-6; 3e-5 as in test_encoders.py (a wrong block, a lost random-block
repetition or a missed mask moves outputs by > 1e-3, checked below)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tfcore
from tfcore import models

TOL = 3e-5


def config(**kw):
    from transformers import BigBirdConfig

    base = dict(
        vocab_size=61,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=3,
        intermediate_size=61,
        max_position_embeddings=256,
        block_size=4,
        num_random_blocks=2,
        sep_token_id=3,
        attn_implementation="eager",
    )
    base.update(kw)
    return BigBirdConfig(**base)


def save(cfg, path):
    from transformers import BigBirdModel

    torch.manual_seed(0)
    BigBirdModel(cfg).eval().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The default tiny checkpoint, written once for the tests that only read it."""
    return save(config(), tmp_path_factory.mktemp("bigbird"))


def hf_outputs(path, ids, mask=None, tt=None, attention_type=None, pos=None):
    """HF outputs from a fresh model (see module docstring) and the attention type it ran."""
    from transformers import BigBirdModel

    ref = BigBirdModel.from_pretrained(path, attn_implementation="eager").eval()
    if attention_type is not None:
        ref.set_attention_type(attention_type)
    args = dict(
        attention_mask=None if mask is None else torch.from_numpy(mask),
        token_type_ids=None if tt is None else torch.from_numpy(tt),
        position_ids=None if pos is None else torch.from_numpy(pos),
    )
    with torch.no_grad():
        out = ref(torch.from_numpy(ids), output_hidden_states=True, **args)
    return out, ref.attention_type


def compare(got, want, T, sel=None):
    sel = np.ones(got.last_hidden_state.shape[:2], bool) if sel is None else sel
    assert got.last_hidden_state.shape == tuple(want.last_hidden_state.shape)
    assert np.abs(got.last_hidden_state[sel] - want.last_hidden_state.numpy()[sel]).max() < TOL
    assert np.abs(got.pooler_output - want.pooler_output.numpy()).max() < TOL
    assert len(got.hidden_states) == len(want.hidden_states)
    for a, b in zip(got.hidden_states, want.hidden_states):
        assert a.shape[1] == T  # HF returns the padded length for all but the last
        assert np.abs(a[sel] - b.numpy()[:, :T][sel]).max() < TOL


@pytest.mark.parametrize("T", [37, 45, 52, 97])
def test_block_sparse_matches_hf(rng, tiny, T):
    """Threshold (5 + 2*2) * 4 = 36: all lengths run block-sparse; 37, 45, 97 need padding
    to a multiple of 4 (37 -> 40 = 10 blocks, the fewest the pattern allows here)."""
    path = tiny
    ours = models.BigBirdModel.from_pretrained(path)
    assert ours.full_attention_threshold == 36 and ours.uses_block_sparse(T)
    ids = rng.integers(4, 61, size=(2, T))
    mask = np.ones((2, T), np.int64)
    mask[1, T - 13 :] = 0  # right padding over more than a block
    tt = rng.integers(0, 2, size=(2, T))
    want, kind = hf_outputs(path, ids, mask, tt)
    assert kind == "block_sparse"
    got = ours(ids, attention_mask=mask, token_type_ids=tt, output_hidden_states=True)
    compare(got, want, T)  # every position, padded ones included (computed like HF)
    # the test can fail: full attention gives clearly different outputs
    full, _ = hf_outputs(path, ids, mask, tt, attention_type="original_full")
    assert np.abs(got.last_hidden_state - full.last_hidden_state.numpy()).max() > 1e-3


def test_block_sparse_left_padding_and_larger_blocks(rng, tmp_path):
    """block_size 8, one random block (threshold 56), T = 131 -> 136 = 17 blocks; row 0 is
    left-padded (its first block is all padding), row 1 has no padding."""
    path = save(config(block_size=8, num_random_blocks=1, hidden_size=60, num_attention_heads=5), tmp_path)
    ours = tfcore.AutoModel.from_pretrained(path)
    assert isinstance(ours, models.BigBirdModel)
    T = 131
    ids = rng.integers(4, 61, size=(2, T))
    mask = np.ones((2, T), np.int64)
    mask[0, :11] = 0
    want, kind = hf_outputs(path, ids, mask)
    assert kind == "block_sparse"
    compare(ours(ids, attention_mask=mask, output_hidden_states=True), want, T)
    # no mask at all: the kernel skips masking
    want, _ = hf_outputs(path, ids)
    compare(ours(ids, output_hidden_states=True), want, T)
    # explicit position ids are padded with pad_token_id, as HF does
    pos = np.stack([np.arange(T) + 3, np.arange(T)[::-1]]).astype(np.int64)
    want, _ = hf_outputs(path, ids, mask, pos=pos)
    compare(ours(ids, attention_mask=mask, position_ids=pos, output_hidden_states=True), want, T)


@pytest.mark.parametrize("T", [20, 36])
def test_full_attention_fallback(rng, tiny, T):
    """At or below the threshold HF (and tfcore) run full attention."""
    path = tiny
    ours = models.BigBirdModel.from_pretrained(path)
    assert not ours.uses_block_sparse(T)
    ids = rng.integers(4, 61, size=(2, T))
    mask = np.ones((2, T), np.int64)
    mask[1, T - 7 :] = 0
    want, kind = hf_outputs(path, ids, mask)
    assert kind == "original_full"
    compare(ours(ids, attention_mask=mask, output_hidden_states=True, padding_free=False), want, T)
    real = mask.astype(bool)
    compare(ours(ids, attention_mask=mask, output_hidden_states=True), want, T, sel=real)  # padding-free
    out = ours(ids, attention_mask=mask, output_attentions=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 3, T, T)


def test_config_variants_original_full_no_bias_rescale(rng, tmp_path):
    """use_bias=False (no q/k/v biases), rescale_embeddings=True, and attention_type
    'original_full' in config.json (never block-sparse)."""
    path = save(config(use_bias=False, rescale_embeddings=True), tmp_path / "a")
    ours = models.BigBirdModel.from_pretrained(path)
    assert ours.unexpected_keys == []
    ids = rng.integers(4, 61, size=(2, 45))
    want, _ = hf_outputs(path, ids)
    compare(ours(ids, output_hidden_states=True), want, 45)

    path = save(config(attention_type="original_full"), tmp_path / "b")
    ours = models.BigBirdModel.from_pretrained(path)
    assert not ours.uses_block_sparse(97)
    ids = rng.integers(4, 61, size=(2, 97))
    want, kind = hf_outputs(path, ids)
    assert kind == "original_full"
    compare(ours(ids, output_hidden_states=True), want, 97)


@pytest.mark.skipif("bfloat16" not in tfcore.supported_dtypes(), reason="CPU without bf16 matmul")
def test_bf16_and_int8(rng, tiny):
    from reference.quant import emulate_int8
    from transformers import BigBirdModel

    path = tiny
    ids = rng.integers(4, 61, size=(2, 45))
    mask = np.ones((2, 45), np.int64)
    mask[1, 30:] = 0
    fp32 = models.BigBirdModel.from_pretrained(path)(ids, attention_mask=mask).last_hidden_state
    bf16 = models.BigBirdModel.from_pretrained(path, dtype="bfloat16")(
        ids, attention_mask=mask
    ).last_hidden_state
    assert np.abs(bf16 - fp32).max() < 3e-2  # bf16-rounded GEMM inputs; LayerNorm outputs are O(1)
    if "int8" in tfcore.supported_dtypes():
        got = models.BigBirdModel.from_pretrained(path, dtype="int8")(
            ids, attention_mask=mask
        ).last_hidden_state
        hf = emulate_int8(BigBirdModel.from_pretrained(path, attn_implementation="eager").eval())
        with torch.no_grad():
            emulated = hf(
                torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
            ).last_hidden_state.numpy()
        assert np.abs(got - emulated).max() < 1e-3  # same quantization emulated in float32
        assert np.abs(got - fp32).max() < 0.1


def test_bad_inputs(rng, tmp_path):
    path = save(config(max_position_embeddings=62), tmp_path)
    ours = models.BigBirdModel.from_pretrained(path)
    with pytest.raises(tfcore.TfcoreValueError, match="output_attentions is not available with block-sparse"):
        ours(rng.integers(4, 61, size=(1, 45)), output_attentions=True)
    with pytest.raises(
        tfcore.TfcoreValueError, match="61 padded to 64 .* exceeds max_position_embeddings=62"
    ):
        ours(rng.integers(4, 61, size=(1, 61)))
    with pytest.raises(tfcore.TfcoreValueError, match="attention_mask has shape"):
        ours(rng.integers(4, 61, size=(1, 45)), attention_mask=np.ones((1, 44)))
    with pytest.raises(tfcore.TfcoreValueError, match="token_type_ids has shape"):
        ours(rng.integers(4, 61, size=(1, 45)), token_type_ids=np.zeros((1, 44), np.int64))
    with pytest.raises(tfcore.TfcoreValueError, match=r"input_ids holds 61, outside \[0, 61\)"):
        ours(np.full((1, 45), 61))
    import json

    from tfcore.safetensors import CheckpointError

    cfg = json.loads((tmp_path / "config.json").read_text())
    for key, value, message in [
        ("is_decoder", True, "decoder"),
        ("attention_type", "sparse", "attention_type"),
        ("block_size", 0, "block_size=0"),
    ]:
        (tmp_path / "config.json").write_text(json.dumps({**cfg, key: value}))
        with pytest.raises(CheckpointError, match=message):
            models.BigBirdModel.from_pretrained(tmp_path)
