"""tfcore.LinearAttention (kernelized linear attention with pluggable feature maps: elu+1,
relu, identity, Hedgehog, Performer FAVOR+) against a float64 NumPy reference written in the
quadratic form (o_t = sum_j<=t (phi(q_t) . phi(k_j)) v_j [/ sum_j<=t phi(q_t) . phi(k_j)]),
prefill + recurrent decoding == one full call, FAVOR+ estimating the softmax kernel, and
bad inputs raising clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import tfcore

C, H, DK, DV = 24, 3, 8, 6


def weights(seed, fm=None, m=32):
    rng = np.random.default_rng(seed)
    w = {
        "q_weight": rng.standard_normal((H * DK, C)).astype(np.float32) * 0.3,
        "k_weight": rng.standard_normal((H * DK, C)).astype(np.float32) * 0.3,
        "v_weight": rng.standard_normal((H * DV, C)).astype(np.float32) * 0.3,
        "o_weight": rng.standard_normal((C, H * DV)).astype(np.float32) * 0.3,
    }
    if fm == "hedgehog":
        w["feature_map_weights"] = (
            (np.eye(DK) + 0.2 * rng.standard_normal((DK, DK))).astype(np.float32),
            (0.1 * rng.standard_normal(DK)).astype(np.float32),
        )
    elif fm == "performer":
        w["feature_map_weights"] = rng.standard_normal((m, DK)).astype(np.float32)
    return w


def phi64(x, fm, fmw):
    """The feature maps in float64, written from their papers' formulas."""
    if fm == "elu+1":
        return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))
    if fm == "relu":
        return np.maximum(x, 0.0)
    if fm == "identity":
        return x
    if fm == "hedgehog":  # fla's HedgehogFeatureMap: softmax([2 (W x + b), -2 (W x + b)])
        W, b = (np.asarray(a, np.float64) for a in fmw)
        y = 2.0 * (x @ W.T + b)
        e = np.exp(np.concatenate([y, -y], -1))
        return e / e.sum(-1, keepdims=True)
    P = np.asarray(fmw, np.float64)  # FAVOR+: exp(P x' - |x'|^2 / 2) / sqrt(m), x' = x d^-1/4
    xs = x * x.shape[-1] ** -0.25
    return np.exp(xs @ P.T - 0.5 * (xs * xs).sum(-1, keepdims=True)) / np.sqrt(P.shape[0])


def reference(x, w, fm, normalize):
    """float64, quadratic form: (B, T, C) -> (B, T, C)."""
    x = x.astype(np.float64)
    B, T, _ = x.shape
    proj = lambda name, d: (x @ w[name].astype(np.float64).T).reshape(B, T, H, d).transpose(0, 2, 1, 3)  # noqa: E731
    q, k, v = proj("q_weight", DK), proj("k_weight", DK), proj("v_weight", DV)
    fq, fk = phi64(q, fm, w.get("feature_map_weights")), phi64(k, fm, w.get("feature_map_weights"))
    scores = np.einsum("bhid,bhjd->bhij", fq, fk) * np.tril(np.ones((T, T)))
    if normalize:
        scores = scores / scores.sum(-1, keepdims=True)
    else:
        scores = scores * fq.shape[-1] ** -0.5
    o = np.einsum("bhij,bhjd->bhid", scores, v).transpose(0, 2, 1, 3).reshape(B, T, H * DV)
    return o @ w["o_weight"].astype(np.float64).T


def rel_err(got, want):
    return np.abs(got - want).max() / np.abs(want).max()


# float32 through two projections and sums of up to T = 70 terms: measured below 2e-6 of the
# output's scale; 2e-5 leaves 10x. Without normalization the identity map's scores may cancel.
TOL = 2e-5

CASES = [
    ("elu+1", True),
    ("elu+1", False),
    ("relu", False),
    ("identity", False),
    ("hedgehog", True),
    ("hedgehog", False),
    ("performer", True),
    ("performer", False),
]


@pytest.mark.parametrize("fm,normalize", CASES)
def test_layer_matches_float64_reference(path, fm, normalize):
    w = weights(1, fm)
    x = np.random.default_rng(2).standard_normal((2, 70, C)).astype(np.float32)
    layer = tfcore.LinearAttention(C, H, feature_map=fm, normalize=normalize, chunk_size=16, **w)
    got = layer(x)
    assert got.shape == x.shape and got.dtype == np.float32
    assert rel_err(got, reference(x, w, fm, normalize)) < TOL


@pytest.mark.parametrize("fm,normalize", [("elu+1", True), ("hedgehog", True), ("performer", False)])
def test_prefill_then_decode_equals_full_call(fm, normalize):
    w = weights(3, fm)
    x = np.random.default_rng(4).standard_normal((2, 40, C)).astype(np.float32)
    layer = tfcore.LinearAttention(C, H, feature_map=fm, normalize=normalize, **w)
    full = layer(x)
    state = tfcore.RecurrentState(1, 2, layer.state_shapes())
    parts = [layer(x[:, :30], state=state)]  # chunkwise prefill
    parts += [layer(x[:, t : t + 1], state=state) for t in range(30, 40)]  # recurrent steps
    assert rel_err(np.concatenate(parts, 1), full) < TOL
    assert state.get(0, "state").shape == (2, *layer.state_shapes()["state"])


def test_phi_matches_the_reference_maps():
    x = np.random.default_rng(5).standard_normal((4, 7, DK)).astype(np.float32)
    for fm in ("elu+1", "relu", "identity", "hedgehog", "performer"):
        w = weights(6, fm)
        layer = tfcore.LinearAttention(C, H, feature_map=fm, **w)
        want = phi64(x.astype(np.float64), fm, w.get("feature_map_weights"))  # keys' form
        np.testing.assert_allclose(layer.phi(x), want, rtol=1e-5, atol=1e-6 * np.abs(want).max(), err_msg=fm)
        assert layer.phi(x).shape[-1] == layer.feature_dim


def test_performer_features_estimate_the_softmax_kernel():
    """FAVOR+'s contract: phi(q) . phi(k) is the mean over the m projection rows of unbiased
    estimates of exp(q . k / sqrt(d)) (P with N(0, I) rows). Checked per (q, k) pair within 5
    standard errors of that mean (the per-row estimates' sample deviation / sqrt(m)): a wrong
    map (missing -|x|^2/2, wrong d^-1/4 or 1/sqrt(m)) is off by far more."""
    d, m = DK, 20000
    rng = np.random.default_rng(8)
    P = rng.standard_normal((m, d)).astype(np.float32)
    layer = tfcore.LinearAttention(C, H, feature_map="performer", feature_map_weights=P, **weights(9))
    q, k = ((0.5 * rng.standard_normal((16, d))).astype(np.float32) for _ in range(2))
    per_row = layer.phi(q).astype(np.float64) * layer.phi(k) * m  # (16, m): each row's estimate
    est, se = per_row.mean(-1), per_row.std(-1) / np.sqrt(m)
    exact = np.exp((q.astype(np.float64) * k).sum(-1) / np.sqrt(d))
    assert (np.abs(est - exact) < 5 * se).all(), np.abs(est - exact) / se
    assert (se < 0.1 * exact).all()  # the check is informative: errors of 10% would show


def test_performer_never_overflows():
    """phi's exponent P x' - |x'|^2 / 2 is at most |P_i|^2 / 2 whatever x is: huge inputs give
    finite features (tiny, not inf) and a finite output."""
    w = weights(10, "performer")
    layer = tfcore.LinearAttention(C, H, feature_map="performer", **w)
    assert np.isfinite(layer.phi(np.full((3, DK), 1e4, np.float32))).all()
    x = np.random.default_rng(11).standard_normal((1, 9, C)).astype(np.float32) * 3
    got = layer(x)  # queries of every size: stabilized per row (exact under normalization)
    assert np.isfinite(got).all()
    assert rel_err(got, reference(x, w, "performer", True)) < TOL


BAD = [
    ({"feature_map": "cosine"}, tfcore.TfcoreValueError, "feature_map must be one of"),
    ({"feature_map": "hedgehog"}, tfcore.TfcoreValueError, "needs feature_map_weights"),
    (
        {"feature_map": "hedgehog", "feature_map_weights": np.eye(DK)},
        tfcore.TfcoreTypeError,
        r"pair \(W, b\)",
    ),
    (
        {"feature_map": "hedgehog", "feature_map_weights": (np.eye(DK + 1), np.zeros(DK + 1))},
        tfcore.TfcoreValueError,
        "hedgehog W has shape",
    ),
    (
        {"feature_map": "performer", "feature_map_weights": np.ones((5, DK + 2))},
        tfcore.TfcoreValueError,
        "shape",
    ),
    ({"feature_map": "performer", "feature_map_weights": np.ones((0, DK))}, tfcore.TfcoreValueError, "empty"),
    ({"feature_map": "performer", "feature_map_weights": [1.0]}, tfcore.TfcoreTypeError, "2-D array"),
    (
        {"feature_map": "performer", "feature_map_weights": np.full((4, DK), np.nan)},
        tfcore.TfcoreValueError,
        "NaN",
    ),
    ({"feature_map": "elu+1", "feature_map_weights": np.ones((4, DK))}, tfcore.TfcoreValueError, "takes no"),
    ({"q_weight": np.ones((H * DK, C + 1), np.float32)}, tfcore.TfcoreValueError, "q_weight must be"),
    ({"k_weight": np.ones((H * DK + H, C), np.float32)}, tfcore.TfcoreValueError, "differ"),
    ({"o_weight": np.ones((C, 5), np.float32)}, tfcore.TfcoreValueError, "o_weight has shape"),
    ({"v_weight": np.full((H * DV, C), np.inf, np.float32)}, tfcore.TfcoreValueError, "NaN or infinity"),
    ({"chunk_size": 0}, tfcore.TfcoreValueError, "chunk_size"),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_construction_raises_clear_errors(i):
    change, exc, msg = BAD[i]
    kw = {**weights(12), **change}
    with pytest.raises(exc, match=msg):
        tfcore.LinearAttention(C, H, **kw)


def test_bad_calls_raise_clear_errors():
    layer = tfcore.LinearAttention(C, H, **weights(13))
    with pytest.raises(tfcore.TfcoreTypeError, match="numpy.ndarray"):
        layer([[1.0] * C])
    with pytest.raises(tfcore.TfcoreValueError, match="hidden_size"):
        layer(np.ones((1, 3, C + 1), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="empty"):
        layer(np.ones((1, 0, C), np.float32))
    bad = np.ones((1, 3, C), np.float32)
    bad[0, 1, 2] = np.nan
    with pytest.raises(tfcore.TfcoreValueError, match="NaN|finite"):
        layer(bad)
    relu = tfcore.LinearAttention(C, H, feature_map="relu", **weights(13))
    with pytest.raises(tfcore.TfcoreValueError, match=r"phi\(q\) \. z = 0"):
        relu(
            -np.abs(np.random.default_rng(0).standard_normal((1, 3, C))).astype(np.float32)
            @ np.zeros((C, C), np.float32)
        )
    wrong = tfcore.RecurrentState(1, 1, {"state": (H, DK + 1, DV), "z": (H, DK + 1)})
    with pytest.raises(tfcore.TfcoreValueError, match="initial_state"):
        layer(np.ones((1, 3, C), np.float32), state=wrong)
