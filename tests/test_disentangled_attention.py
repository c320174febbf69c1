"""DeBERTa's disentangled attention in the fused kernel (scaled_dot_product_attention(...,
disentangled=(c2p, p2c, index))) against a float64 NumPy reference that builds the full
(B, H, L, S) bias, on every kernel path; and deberta_relative_index against HF's
make_log_bucket_position."""

import numpy as np
import pytest
import torch

import tfcore
import tfcore.functional as F

modeling = pytest.importorskip("transformers.models.deberta_v2.modeling_deberta_v2")


def hf_index(L, S, buckets, max_pos):
    """HF's c2p index clamp(rel + span, 0, 2 span - 1) (B=1) as the (L + S - 1) vector."""
    span = buckets if buckets > 0 else max_pos
    rel = modeling.build_relative_position(torch.zeros(L, 1), torch.zeros(S, 1), buckets, max_pos)[0]
    p = torch.clamp(rel + span, 0, 2 * span - 1).numpy()  # (L, S), depends on i - j only
    out = np.empty(L + S - 1, np.int64)
    for i in range(L):
        for j in range(S):
            out[i - j + S - 1] = p[i, j]
    return out


@pytest.mark.parametrize(
    "buckets,max_pos,L",
    [(256, 512, 700), (8, 20, 61), (7, 33, 90), (-1, 24, 50), (32, 128, 300), (4, 9, 17)],
)
def test_relative_index_equals_hf(buckets, max_pos, L):
    got = F.deberta_relative_index(L, L, position_buckets=buckets, max_relative_positions=max_pos)
    assert got.dtype == np.int32 and got.shape == (2 * L - 1,)
    np.testing.assert_array_equal(got, hf_index(L, L, buckets, max_pos))


def reference(q, k, v, c2p, p2c, idx, scale, key_mask=None):
    """float64: softmax(scale q kᵀ + c2p[i, idx] + p2c[j, idx] + mask) v."""
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    L, S = q.shape[2], k.shape[2]
    p = idx[(np.arange(L)[:, None] - np.arange(S)[None, :]) + S - 1]  # (L, S)
    s = np.einsum("bhld,bhsd->bhls", q, k) * scale
    if c2p is not None:
        s = s + np.take_along_axis(c2p.astype(np.float64), np.broadcast_to(p, c2p.shape[:2] + p.shape), -1)
    if p2c is not None:
        g = np.take_along_axis(p2c.astype(np.float64), np.broadcast_to(p.T, p2c.shape[:2] + p.T.shape), -1)
        s = s + g.transpose(0, 1, 3, 2)
    if key_mask is not None:
        s = s + key_mask
    s = s - s.max(-1, keepdims=True)
    e = np.exp(s)
    return np.einsum("bhls,bhsd->bhld", e / e.sum(-1, keepdims=True), v)


@pytest.mark.parametrize("L", [3, 37, 131])
@pytest.mark.parametrize("terms", ["both", "c2p", "p2c"])
def test_disentangled_matches_reference(path, L, terms):
    rng = np.random.default_rng(L)
    B, H, D, P = 2, 3, 24, 16  # 2 span = 16 positions
    q, k, v = (rng.standard_normal((B, H, L, D)).astype(np.float32) for _ in range(3))
    c2p = rng.standard_normal((B, H, L, P)).astype(np.float32) if terms != "p2c" else None
    p2c = rng.standard_normal((B, H, L, P)).astype(np.float32) if terms != "c2p" else None
    idx = F.deberta_relative_index(L, L, position_buckets=8, max_relative_positions=20)
    idx = (idx - idx.min()).astype(np.int32)
    assert idx.max() < P
    mask = np.zeros((B, 1, 1, L), np.float32)
    mask[1, ..., L - L // 3 :] = -np.inf
    out = F.scaled_dot_product_attention(q, k, v, mask, scale=0.3, disentangled=(c2p, p2c, idx))
    ref = reference(q, k, v, c2p, p2c, idx, 0.3, mask)
    # float32 scores over D=24 terms plus two float32 bias terms, softmax and a weighted sum of
    # unit-normal values: absolute error a few 1e-7; 2e-5 leaves room for the exp polynomial
    np.testing.assert_allclose(out, ref, atol=2e-5, rtol=0)


def test_disentangled_with_general_mask_and_views(path):
    """A per-(query, key) bool mask takes the scalar extras path; q/k/v as strided views of a
    (B, L, 3, H, D) projection."""
    rng = np.random.default_rng(5)
    B, H, L, D, P = 2, 2, 45, 16, 9
    qkv = rng.standard_normal((B, L, 3, H, D)).astype(np.float32)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    c2p = rng.standard_normal((1, H, L, P)).astype(np.float32)  # batch-broadcast
    p2c = rng.standard_normal((B, H, L, P)).astype(np.float32)
    idx = np.clip(np.arange(2 * L - 1) - (L - 1) + P // 2, 0, P - 1).astype(np.int32)
    keep = rng.random((B, 1, L, L)) > 0.3
    keep[..., 0] = True
    out = F.scaled_dot_product_attention(q, k, v, keep, disentangled=(c2p, p2c, idx))
    add = np.where(keep, 0.0, -np.inf)
    ref = reference(q, k, v, np.broadcast_to(c2p, (B, H, L, P)), p2c, idx, 1 / np.sqrt(D), add)
    np.testing.assert_allclose(out, ref, atol=2e-5, rtol=0)


def test_disentangled_weights_match(path):
    rng = np.random.default_rng(1)
    B, H, L, D, P = 1, 2, 20, 8, 7
    q, k, v = (rng.standard_normal((B, H, L, D)).astype(np.float32) for _ in range(3))
    c2p, p2c = (rng.standard_normal((B, H, L, P)).astype(np.float32) for _ in range(2))
    idx = np.clip(np.arange(2 * L - 1) - (L - 1) + 3, 0, P - 1).astype(np.int32)
    out, w = F.scaled_dot_product_attention(q, k, v, return_weights=True, disentangled=(c2p, p2c, idx))
    eye = np.broadcast_to(np.eye(L, dtype=np.float32), (B, H, L, L))  # values = I: output = weights
    wref = reference(q, k, eye, c2p, p2c, idx, 1 / np.sqrt(D))
    np.testing.assert_allclose(w, wref, atol=1e-6)


@pytest.mark.parametrize(
    "bad,match",
    [
        (lambda c, p, i: (c, p), "tuple"),
        (lambda c, p, i: (c, p, i.astype(np.int64)), "int32"),
        (lambda c, p, i: (c, p, i[:-1]), "entries"),
        (lambda c, p, i: (c, p, i + 100), "outside"),
        (lambda c, p, i: (None, None, i), "c2p or p2c"),
        (lambda c, p, i: (c[:, :, :-1], p, i), "shape"),
        (lambda c, p, i: (c.astype(np.float64), p, i), "float32"),
        (lambda c, p, i: (np.where(c > 0, np.nan, c).astype(np.float32), p, i), "NaN"),
    ],
)
def test_disentangled_bad_arguments(bad, match):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 2, 6, 4)).astype(np.float32)
    c2p = rng.standard_normal((1, 2, 6, 5)).astype(np.float32)
    idx = np.full(11, 2, np.int32)
    with pytest.raises(tfcore.TfcoreError, match=match):
        F.scaled_dot_product_attention(q, q, q, disentangled=bad(c2p, c2p.copy(), idx))


def test_relative_index_bad_arguments():
    with pytest.raises(tfcore.TfcoreError, match="max_relative_positions"):
        F.deberta_relative_index(4, 4, position_buckets=8, max_relative_positions=5)
    with pytest.raises(tfcore.TfcoreError, match="query_length"):
        F.deberta_relative_index(0, 4, position_buckets=8, max_relative_positions=20)
    with pytest.raises(tfcore.TfcoreError, match=">= 1"):
        F.deberta_relative_index(3, 4)


# ---- disentangled_positions: the kernel multiplies the projected relative embeddings itself


def tables(q, k, pos_key, pos_query, scale):
    """The score tables disentangled_positions stands for, in float64:
    c2p = scale q pos_keyᵀ (B, H, L, P), p2c = scale k pos_queryᵀ (B, H, S, P)."""
    c2p = scale * np.einsum("bhld,hpd->bhlp", q, np.broadcast_to(pos_key, (q.shape[1],) + pos_key.shape[1:]))
    p2c = scale * np.einsum(
        "bhsd,hpd->bhsp", k, np.broadcast_to(pos_query, (k.shape[1],) + pos_query.shape[1:])
    )
    return c2p, p2c


@pytest.mark.parametrize("L,S", [(7, 7), (97, 97), (131, 131), (200, 131), (3, 50)])
@pytest.mark.parametrize("terms", ["both", "c2p", "p2c"])
def test_positions_match_reference(path, L, S, terms):
    """Every kernel path (vector tiles, decode for L <= 4, reference), odd sizes, L != S, a
    padding mask, heads broadcast for pos_query, positions as a sliced view like the model's."""
    rng = np.random.default_rng(L + S)
    B, H, D = 2, 3, 24
    q = rng.standard_normal((B, H, L, D)).astype(np.float32)
    k, v = (rng.standard_normal((B, H, S, D)).astype(np.float32) for _ in range(2))
    idx = F.deberta_relative_index(L, S, position_buckets=8, max_relative_positions=20)
    lo = int(idx.min())
    idx = (idx - lo).astype(np.int32)
    P = int(idx.max()) + 1
    full_key = rng.standard_normal((H, P + 5, D)).astype(np.float32)
    pos_key = full_key[:, 2 : 2 + P] if terms != "p2c" else None  # a view: rows contiguous
    pos_query = rng.standard_normal((1, P, D)).astype(np.float32) if terms != "c2p" else None
    mask = np.zeros((B, 1, 1, S), np.float32)
    mask[1, ..., S - S // 3 :] = -np.inf
    out = F.scaled_dot_product_attention(
        q, k, v, mask, scale=0.3, disentangled_positions=(pos_key, pos_query, idx)
    )
    zeros = np.zeros((H, P, D))
    c2p, p2c = tables(
        q.astype(np.float64),
        k.astype(np.float64),
        zeros if pos_key is None else pos_key.astype(np.float64),
        zeros if pos_query is None else pos_query.astype(np.float64),
        0.3,
    )
    ref = reference(
        q, k, v, c2p if pos_key is not None else None, p2c if pos_query is not None else None, idx, 0.3, mask
    )
    # as test_disentangled_matches_reference, plus the float32 dot products of the two terms
    # over D=24 (relative error ~1e-7 of |terms| ~ 0.3 * 5)
    np.testing.assert_allclose(out, ref, atol=3e-5, rtol=0)
    # and the same as the table form the model used before
    tab = F.scaled_dot_product_attention(
        q,
        k,
        v,
        mask,
        scale=0.3,
        disentangled=(
            c2p.astype(np.float32) if pos_key is not None else None,
            p2c.astype(np.float32) if pos_query is not None else None,
            idx,
        ),
    )
    np.testing.assert_allclose(out, tab, atol=3e-5, rtol=0)


def test_positions_weights_and_general_mask(path):
    """return_weights (the weights pass recomputes the terms) and a per-(query, key) bool mask
    (the scalar extras path) with the in-kernel terms."""
    rng = np.random.default_rng(9)
    B, H, L, D, P = 2, 2, 45, 16, 9
    q, k = (rng.standard_normal((B, H, L, D)).astype(np.float32) for _ in range(2))
    eye = np.ascontiguousarray(np.broadcast_to(np.eye(L, dtype=np.float32), (B, H, L, L)))
    pk, pq = (rng.standard_normal((H, P, D)).astype(np.float32) for _ in range(2))
    idx = np.clip(np.arange(2 * L - 1) - (L - 1) + P // 2, 0, P - 1).astype(np.int32)
    keep = rng.random((B, 1, L, L)) > 0.3
    keep[..., 0] = True
    out, w = F.scaled_dot_product_attention(
        q, k, eye, keep, return_weights=True, disentangled_positions=(pk, pq, idx)
    )
    c2p, p2c = tables(q.astype(np.float64), k.astype(np.float64), pk, pq, 1 / np.sqrt(D))
    wref = reference(q, k, eye, c2p, p2c, idx, 1 / np.sqrt(D), np.where(keep, 0.0, -np.inf))
    np.testing.assert_allclose(out, wref, atol=2e-5, rtol=0)  # values = I: output = weights
    np.testing.assert_allclose(w, wref, atol=2e-5, rtol=0)


@pytest.mark.parametrize(
    "bad,match",
    [
        (lambda k, q, i: [k, q, i], "tuple"),
        (lambda k, q, i: (None, None, i), "pos_key or pos_query"),
        (lambda k, q, i: (k[:, :-1], q, i), "as the other table"),
        (lambda k, q, i: (k[:, :, :-1], q, i), "head_dim"),
        (lambda k, q, i: (np.concatenate([k, k]), q, i), "heads"),
        (lambda k, q, i: (k[0], q, i), "dimensions"),
        (lambda k, q, i: (k.astype(np.float64), q, i), "float32"),
        (lambda k, q, i: (np.where(k > 0, np.inf, k).astype(np.float32), q, i), "NaN or Inf"),
        (lambda k, q, i: (k, q.transpose(1, 0, 2).copy().transpose(1, 0, 2), i), "contiguous rows"),
        (lambda k, q, i: (k, q, i + 100), "outside"),
        (lambda k, q, i: (k, q, i[:-1]), "entries"),
        (lambda k, q, i: (k, q, i.astype(np.int64)), "int32"),
    ],
)
def test_positions_bad_arguments(bad, match):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 2, 6, 4)).astype(np.float32)
    pk = rng.standard_normal((2, 5, 4)).astype(np.float32)
    idx = np.full(11, 2, np.int32)
    with pytest.raises(tfcore.TfcoreError, match=match):
        F.scaled_dot_product_attention(q, q, q, disentangled_positions=bad(pk, pk.copy(), idx))


def test_positions_and_tables_are_exclusive():
    q = np.ones((1, 1, 3, 4), np.float32)
    idx = np.zeros(5, np.int32)
    with pytest.raises(tfcore.TfcoreError, match="not both"):
        F.scaled_dot_product_attention(
            q,
            q,
            q,
            disentangled=(np.ones((1, 1, 3, 1), np.float32), None, idx),
            disentangled_positions=(np.ones((1, 1, 4), np.float32), None, idx),
        )
