"""tfcore.functional.block_sparse_attention against the float64 NumPy reference
(tests/reference/block_sparse.py), on every kernel path (AVX-512, AVX2, plain C), and against HF's
BigBird block-sparse attention with a training-mode (truly random, per-head) layout.

Tolerance: float32 kernel vs float64 reference on O(1) inputs; observed max abs differences
are ~1e-6; 1e-5 leaves headroom while a wrong block, a lost repetition or a missed mask
changes outputs by O(0.1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference.block_sparse import block_sparse_attention as reference

import tfcore
from tfcore.functional import block_sparse_attention
from tfcore.models.big_bird import bigbird_layout

TOL = 1e-5


def qkv(rng, B, H, L, S, D, Dv=None):
    q = rng.standard_normal((B, H, L, D), dtype=np.float32)
    k = rng.standard_normal((B, H, S, D), dtype=np.float32)
    v = rng.standard_normal((B, H, S, Dv or D), dtype=np.float32)
    return q, k, v


def check(got, *args, **kw):
    want = reference(*args, **kw)
    assert got.shape == want.shape
    err = np.abs(got - want).max()
    assert err < TOL, err


@pytest.mark.parametrize("bs,nb", [(2, 7), (3, 9), (8, 7), (64, 7), (100, 5)])
def test_bigbird_layout_with_padding(rng, path, bs, nb):
    """HF's eval layout (random blocks = block 0, repeated), global first/last blocks,
    padded keys and queries, batch 2, 3 heads. bs=100 splits blocks into 64 + 36 chunks."""
    B, H, D, L = 2, 3, 24, nb * bs
    q, k, v = qkv(rng, B, H, L, L, D)
    lay = bigbird_layout(nb, 2)
    mask = np.ones((B, L), bool)
    mask[1, L - bs - 1 :] = False  # more than the last block
    kw = dict(global_blocks=(0, -1), key_padding_mask=mask, query_mask=mask)
    check(block_sparse_attention(q, k, v, lay, bs, **kw), q, k, v, lay, bs, **kw)
    assert np.all(block_sparse_attention(q, k, v, lay, bs, **kw)[1, :, ~mask[1]] == 0)


def test_repeated_blocks_count_repeatedly(rng, path):
    """Listing a block twice weights its keys twice: not the same as listing it once."""
    B, H, bs, nb, D = 1, 2, 4, 3, 16
    q, k, v = qkv(rng, B, H, nb * bs, nb * bs, D)
    once = np.array([[0, 1, -1], [1, 2, -1], [2, 0, -1]])
    twice = np.array([[0, 1, 0], [1, 2, 2], [2, 0, 0]])
    a = block_sparse_attention(q, k, v, once, bs)
    b = block_sparse_attention(q, k, v, twice, bs)
    check(b, q, k, v, twice, bs)
    check(a, q, k, v, once, bs)
    assert np.abs(a - b).max() > 1e-2


@pytest.mark.parametrize("per", ["head", "batch_head"])
def test_random_layouts_odd_sizes_and_views(rng, path, per):
    """Per-head / per-(batch, head) layouts with -1 holes and duplicates, L != S, D != Dv
    (odd, not multiples of 4), inputs as transposed views and out= a view."""
    B, H, bs, nqb, nkb, D, Dv = 2, 3, 5, 7, 9, 19, 13
    L, S = nqb * bs, nkb * bs
    shape = (H, nqb, 4) if per == "head" else (B, H, nqb, 4)
    lay = rng.integers(-1, nkb, size=shape)
    x = rng.standard_normal((B, L, H, D), dtype=np.float32)
    q = x.transpose(0, 2, 1, 3)  # (B, H, L, D) view
    _, k, v = qkv(rng, B, H, L, S, D, Dv)
    out = np.zeros((B, L, H, Dv), np.float32)
    kmask = rng.random((B, S)) > 0.2
    res = block_sparse_attention(
        q, k, v, lay, bs, global_blocks=[3], key_padding_mask=kmask, scale=0.3, out=out.transpose(0, 2, 1, 3)
    )
    assert res.base is not None and np.shares_memory(res, out)
    check(out.transpose(0, 2, 1, 3), q, k, v, lay, bs, global_blocks=[3], key_padding_mask=kmask, scale=0.3)


def test_queries_that_see_nothing_get_zeros(rng, path):
    B, H, bs, nb, D = 1, 1, 3, 4, 8
    q, k, v = qkv(rng, B, H, nb * bs, nb * bs, D)
    lay = np.array([[0], [1], [-1], [3]])  # block 2 lists nothing
    kmask = np.ones((1, nb * bs), bool)
    kmask[0, 9:] = False  # block 3 fully padded
    out = block_sparse_attention(q, k, v, lay, bs, key_padding_mask=kmask)
    assert np.all(out[0, 0, 6:] == 0)
    check(out, q, k, v, lay, bs, key_padding_mask=kmask)


def test_fast_and_reference_paths_agree(rng, vector_path):
    B, H, bs, nb, D = 2, 2, 64, 7, 64
    q, k, v = qkv(rng, B, H, nb * bs, nb * bs, D)
    lay = bigbird_layout(nb, 3)
    mask = np.ones((B, nb * bs), bool)
    mask[0, 300:] = False
    kw = dict(global_blocks=(0, -1), key_padding_mask=mask, query_mask=mask)
    fast = block_sparse_attention(q, k, v, lay, bs, **kw)
    prev = tfcore._C._set_reference_kernels(True)
    try:
        ref = block_sparse_attention(q, k, v, lay, bs, **kw)
    finally:
        tfcore._C._set_reference_kernels(prev)
    assert np.abs(fast - ref).max() < 2e-6  # float32 online softmax vs double accumulation


def test_matches_hf_training_mode_random_layout(rng, path):
    """HF's block-sparse attention in training mode draws a per-head random plan (seeded);
    that plan through bigbird_layout(rand_attn=...) reproduces HF's attention output."""
    from transformers import BigBirdConfig
    from transformers.models.big_bird.modeling_big_bird import BigBirdBlockSparseAttention

    torch.manual_seed(0)
    bs, r, H, C, T = 4, 2, 3, 24, 52  # 13 blocks: above (2r + 5) blocks, HF's plan in two parts
    cfg = BigBirdConfig(
        hidden_size=C,
        num_attention_heads=H,
        block_size=bs,
        num_random_blocks=r,
        max_position_embeddings=128,
        attention_probs_dropout_prob=0.0,
    )
    att = BigBirdBlockSparseAttention(cfg, seed=5).train()
    x = torch.from_numpy(rng.standard_normal((2, T, C), dtype=np.float32))
    mask = torch.ones(2, T)
    mask[1, 41:] = 0
    from transformers import BigBirdModel

    blocked, band, from_mask, to_mask = BigBirdModel.create_masks_for_block_sparse_attn(mask, bs)
    with torch.no_grad():
        want = att(x, band, from_mask, to_mask, blocked, blocked)[0].numpy()  # (B, T, C)
        np.random.seed(5)  # HF seeds with the layer's seed in training mode, then draws the plan
        plan = att._get_rand_attn_plan(T, bs, r)
        rand = np.stack(att._bigbird_block_rand_mask_with_head(T, T, bs, bs, H, plan[0], plan[1]))
        q, k, v = (
            lin(x).view(2, T, H, C // H).transpose(1, 2).numpy() for lin in (att.query, att.key, att.value)
        )
    assert rand.shape == (H, T // bs - 2, r) and rand.any()  # really random, per head
    m = mask.numpy().astype(bool)
    got = block_sparse_attention(
        q, k, v, bigbird_layout(T // bs, r, rand), bs, global_blocks=(0, -1), key_padding_mask=m, query_mask=m
    )
    assert np.abs(got.transpose(0, 2, 1, 3).reshape(2, T, C) - want).max() < TOL


def test_bad_inputs(rng):
    q, k, v = qkv(rng, 1, 2, 12, 12, 8)
    lay = np.array([[0], [1], [2]])
    with pytest.raises(tfcore.TfcoreValueError, match="multiples of block_size 5"):
        block_sparse_attention(q, k, v, lay, 5)
    with pytest.raises(tfcore.TfcoreValueError, match=r"block_size must be in \[1, 2\^30\], got 0"):
        block_sparse_attention(q, k, v, lay, 0)
    with pytest.raises(tfcore.TfcoreValueError, match="layout holds key block 3 .* 0 .. 2"):
        block_sparse_attention(q, k, v, np.array([[0], [1], [3]]), 4)
    with pytest.raises(tfcore.TfcoreValueError, match="layout holds key block -2"):
        block_sparse_attention(q, k, v, np.array([[0], [-2], [1]]), 4)
    with pytest.raises(tfcore.TfcoreValueError, match=r"leading axes must be \(batch, heads, query_blocks\)"):
        block_sparse_attention(q, k, v, np.array([[0], [1]]), 4)
    with pytest.raises(tfcore.TfcoreValueError, match="layout has shape"):
        block_sparse_attention(q, k, v, np.array([0, 1, 2]), 4)
    with pytest.raises(tfcore.TfcoreTypeError, match="layout must be a numpy.ndarray of integers"):
        block_sparse_attention(q, k, v, lay.astype(np.float32), 4)
    with pytest.raises(tfcore.TfcoreValueError, match="global_blocks holds 3"):
        block_sparse_attention(q, k, v, lay, 4, global_blocks=[3])
    with pytest.raises(tfcore.TfcoreValueError, match=r"key_padding_mask has shape \(1, 11\)"):
        block_sparse_attention(q, k, v, lay, 4, key_padding_mask=np.ones((1, 11), bool))
    with pytest.raises(tfcore.TfcoreTypeError, match="query_mask must hold bool"):
        block_sparse_attention(q, k, v, lay, 4, query_mask=np.ones((1, 12), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="key has shape"):
        block_sparse_attention(q, k[:, :, :, :4].copy(), v, lay, 4)
    with pytest.raises(tfcore.TfcoreValueError, match="value has shape"):
        block_sparse_attention(q, k, v[:, :1].copy(), lay, 4)
    with pytest.raises(tfcore.TfcoreTypeError, match="query must have dtype float32"):
        block_sparse_attention(q.astype(np.float64), k, v, lay, 4)
    with pytest.raises(tfcore.TfcoreValueError, match="out has shape"):
        block_sparse_attention(q, k, v, lay, 4, out=np.zeros((1, 2, 12, 7), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="empty"):
        block_sparse_attention(q[:, :, :0], k, v, lay[:0], 4)
    bad = q.copy()
    bad[0, 1, 5, 2] = np.nan
    with pytest.raises(tfcore.TfcoreValueError, match="non-finite"):
        block_sparse_attention(bad, k, v, lay, 4)
    with pytest.raises(tfcore.TfcoreValueError, match="num_blocks=4"):
        bigbird_layout(4, 1)
    with pytest.raises(tfcore.TfcoreValueError, match="rand_attn must be integers"):
        bigbird_layout(7, 2, np.zeros((5, 3), np.int64))


def test_no_leaks_over_calls_and_errors(rng):
    from memory import rss_growth

    q, k, v = qkv(rng, 2, 2, 64, 64, 64)
    lay = bigbird_layout(16, 2)
    mask = np.ones((2, 64), np.int64)
    mask[1, 40:] = 0
    out = np.empty_like(q)

    def calls():
        block_sparse_attention(
            q, k, v, lay, 4, global_blocks=[0, -1], key_padding_mask=mask, query_mask=mask, out=out
        )
        block_sparse_attention(q, k, v, lay.astype(np.int32), 4)
        for bad in (dict(global_blocks=[99]), dict(key_padding_mask=mask[:, :5])):
            try:
                block_sparse_attention(q, k, v, lay, 4, **bad)
            except tfcore.TfcoreValueError:
                pass

    assert rss_growth(calls, calls=200, warmup=20) < 4 * 2**20  # a leaked output per call would be 13 MB
