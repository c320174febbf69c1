"""tfcore.MixtureOfExperts against a float64 NumPy reference (tests/reference/moe.py) and
Hugging Face's MixtralSparseMoeBlock: routing (softmax, top-k, renormalised or not), ties,
experts no token chooses, residual/out, bf16/int8 experts, and the errors it raises."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import moe as ref

import tfcore

C, F = 37, 53  # odd sizes: no vector width divides them


def make(rng, E, top_k, normalize=True, dtype="float32", router=None):
    """A MixtureOfExperts with random SwiGLU experts and the (router, experts) weights."""
    weights = [
        tuple(
            (rng.standard_normal(shape) / np.sqrt(shape[1])).astype(np.float32)
            for shape in ((F, C), (F, C), (C, F))
        )
        for _ in range(E)
    ]
    if router is None:
        router = rng.standard_normal((E, C)).astype(np.float32)
    experts = [tfcore.FeedForward(u, d, gate_weight=g, activation="silu", dtype=dtype) for g, u, d in weights]
    layer = tfcore.MixtureOfExperts(router, experts, top_k=top_k, normalize_top_k=normalize)
    return layer, router, weights


def rel(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize(
    "E, top_k, normalize", [(4, 2, True), (5, 1, True), (5, 3, False), (8, 2, True), (3, 3, True)]
)
@pytest.mark.parametrize("shape", [(3, 7), (1, 1), (131,)])
def test_matches_float64_reference(rng, E, top_k, normalize, shape):
    layer, router, weights = make(rng, E, top_k, normalize)
    x = rng.standard_normal((*shape, C)).astype(np.float32)
    got = layer(x)
    want = ref.moe(x.reshape(-1, C), router, weights, top_k, normalize).reshape(got.shape)
    assert got.shape == x.shape and got.dtype == np.float32
    assert rel(got, want) < 1e-5  # float32 GEMMs of K <= 53 against float64
    idx, w = layer.route(x)
    ridx, rw = ref.route(x.reshape(-1, C), router, top_k, normalize)
    assert idx.dtype == np.int64 and idx.shape == (x.size // C, top_k)
    assert np.array_equal(idx, ridx)
    assert np.abs(w - rw).max() < 1e-6  # probabilities in [0, 1], float32 softmax


def test_routing_ties_take_the_lower_expert_index(rng):
    x = rng.standard_normal((9, C)).astype(np.float32)
    # every expert equally likely: experts 0 and 1, weight 1/2 each (renormalised), 1/4 (not)
    zero = np.zeros((4, C), np.float32)
    for normalize, share in ((True, 0.5), (False, 0.25)):
        layer, router, weights = make(rng, 4, 2, normalize, router=zero)
        idx, w = layer.route(x)
        assert np.array_equal(idx, np.tile([0, 1], (9, 1)))
        assert np.allclose(w, share, atol=1e-7)
        assert rel(layer(x), ref.moe(x, router, weights, 2, normalize)) < 1e-5
    # a tie at the top-k boundary: rows 1 and 3 identical, so p1 == p3 exactly
    router = rng.standard_normal((4, C)).astype(np.float32)
    router[3] = router[1]
    layer, router, weights = make(rng, 4, 2, router=router)
    idx, _ = layer.route(x)
    ridx, _ = ref.route(x, router, 2)
    assert np.array_equal(idx, ridx)
    assert not np.any(idx == 3) or np.all((idx == 3).any(1) <= (idx == 1).any(1))  # 1 before 3
    assert rel(layer(x), ref.moe(x, router, weights, 2)) < 1e-5


def test_experts_no_token_chooses(rng):
    # x > 0 and router rows of +1 (experts 0, 3) and -1 (1, 2, 4): every row picks 0 and 3
    router = np.array([1, -1, -1, 1, -1], np.float32)[:, None] * np.ones((5, C), np.float32)
    router[3] *= 0.5  # 0 first, then 3
    layer, router, weights = make(rng, 5, 2, router=router)
    x = np.abs(rng.standard_normal((2, 6, C))).astype(np.float32) + 0.1
    idx, _ = layer.route(x)
    assert np.array_equal(idx, np.tile([0, 3], (12, 1)))
    assert rel(layer(x), ref.moe(x.reshape(-1, C), router, weights, 2).reshape(x.shape)) < 1e-5
    # one token only (decoding): two experts run, three are skipped
    one = x[:1, :1]
    assert rel(layer(one), ref.moe(one.reshape(-1, C), router, weights, 2).reshape(one.shape)) < 1e-5


def test_matches_hf_mixtral_block(rng):
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    cfg = MixtralConfig(
        hidden_size=C,
        intermediate_size=F,
        num_local_experts=4,
        num_experts_per_tok=2,
        experts_implementation="eager",
    )
    torch.manual_seed(0)
    block = MixtralSparseMoeBlock(cfg).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.2)
    gu = block.experts.gate_up_proj.detach().numpy()
    down = block.experts.down_proj.detach().numpy()
    experts = [
        tfcore.FeedForward(
            np.ascontiguousarray(gu[j, F:]),
            down[j],
            gate_weight=np.ascontiguousarray(gu[j, :F]),
            activation="silu",
        )
        for j in range(4)
    ]

    def check(x):
        layer = tfcore.MixtureOfExperts(block.gate.weight.detach().numpy(), experts, top_k=2)
        with torch.no_grad():
            want = block(torch.from_numpy(x)).numpy()
        assert rel(layer(x), want) < 1e-5  # float32 on both sides
        return layer

    check(rng.standard_normal((2, 11, C)).astype(np.float32))
    # rows 0 and 2 of the router equal and dominant for x > 0: a tie inside the top-2, both
    # chosen whatever the tie-break (at the top-k boundary torch's pick is implementation-defined)
    with torch.no_grad():
        block.gate.weight[2] = block.gate.weight[0] = 1.0
    x = np.abs(rng.standard_normal((1, 11, C))).astype(np.float32)
    layer = check(x)
    idx, w = layer.route(x)
    assert np.array_equal(idx, np.tile([0, 2], (11, 1))) and np.all(w == 0.5)


def test_residual_and_out(rng):
    layer, _, _ = make(rng, 4, 2)
    x = rng.standard_normal((5, C)).astype(np.float32)
    r = rng.standard_normal((5, C)).astype(np.float32)
    plain = layer(x)
    assert np.array_equal(layer(x, r), plain + r)
    out = r.copy()
    assert layer(x, out, out=out) is out  # out is residual: accumulated in place
    assert np.array_equal(out, r + plain)


@pytest.mark.parametrize("dtype, tol", [("bfloat16", 2e-2), ("int8", 5e-2)])
def test_low_precision_experts(rng, dtype, tol):
    layer32, router, weights = make(rng, 4, 2)
    layer = tfcore.MixtureOfExperts(
        router,
        [tfcore.FeedForward(u, d, gate_weight=g, activation="silu", dtype=dtype) for g, u, d in weights],
        top_k=2,
    )
    x = rng.standard_normal((3, 9, C)).astype(np.float32)
    # the router stays float32, so routing is the float32 layer's exactly
    assert np.array_equal(layer.route(x)[0], layer32.route(x)[0])
    assert rel(layer(x), layer32(x)) < tol  # bf16: 8-bit mantissa; int8: per-row/column scales


def test_attributes_and_block(rng):
    layer, router, _ = make(rng, 5, 3, normalize=False)
    assert (layer.num_experts, layer.top_k, layer.hidden_size, layer.normalize_top_k) == (5, 3, C, False)
    assert len(layer.experts) == 5 and isinstance(layer.experts[0], tfcore.FeedForward)
    assert np.array_equal(layer.router.weight, router)
    assert "MixtureOfExperts(hidden_size=37, num_experts=5, top_k=3" in repr(layer)


def test_errors(rng):
    layer, router, weights = make(rng, 4, 2)
    ffn = [layer.experts[0]] * 4
    with pytest.raises(tfcore.TfcoreTypeError, match="experts must be a sequence of tfcore.FeedForward"):
        tfcore.MixtureOfExperts(router, 3)
    with pytest.raises(tfcore.TfcoreTypeError, match="experts must be a sequence"):
        tfcore.MixtureOfExperts(router, "abcd")
    with pytest.raises(tfcore.TfcoreValueError, match="experts is empty"):
        tfcore.MixtureOfExperts(router, [])
    with pytest.raises(
        tfcore.TfcoreTypeError, match=r"experts\[1\] must be a tfcore.FeedForward, got tfcore.Linear"
    ):
        tfcore.MixtureOfExperts(router, [ffn[0], layer.router, ffn[0], ffn[0]])
    for k in (0, 5, -1):
        with pytest.raises(tfcore.TfcoreValueError, match=f"top_k={k} is out of range"):
            tfcore.MixtureOfExperts(router, ffn, top_k=k)
    with pytest.raises(tfcore.TfcoreValueError, match=r"router_weight has 4 rows \(experts\), but 3 experts"):
        tfcore.MixtureOfExperts(router, ffn[:3])
    small = tfcore.FeedForward(*(np.ones(s, np.float32) for s in ((8, 5), (5, 8))))
    with pytest.raises(tfcore.TfcoreValueError, match=r"experts\[2\] has hidden size 5, expected 37"):
        tfcore.MixtureOfExperts(router, ffn[:2] + [small, ffn[0]])
    bad = router.copy()
    bad[1, 3] = np.nan
    with pytest.raises(tfcore.TfcoreValueError, match="router_weight"):
        tfcore.MixtureOfExperts(bad, ffn)
    with pytest.raises(tfcore.TfcoreValueError, match="router_weight"):
        tfcore.MixtureOfExperts(router[0], ffn)
    x = rng.standard_normal((3, C)).astype(np.float32)
    with pytest.raises(tfcore.TfcoreValueError, match="x has last dim 36, expected in_features=37"):
        layer(x[:, :36].copy())
    with pytest.raises(tfcore.TfcoreTypeError, match="float64"):
        layer(x.astype(np.float64))
    x[1, 2] = np.inf
    with pytest.raises(tfcore.TfcoreValueError, match="x contains Inf at flat index 39"):
        layer(x)
    with pytest.raises(tfcore.TfcoreValueError, match="x contains Inf at flat index 39"):
        layer.route(x)
    with pytest.raises(tfcore.TfcoreValueError, match="empty"):
        layer(np.zeros((0, C), np.float32))
    # a TransformerBlock takes it as its feed-forward, of the attention's hidden size only
    attn = tfcore.MultiHeadAttention(
        36, 4, **{f"{n}_weight": np.eye(36, dtype=np.float32) for n in "qkvo"}, is_causal=True
    )
    norm = tfcore.RMSNorm(np.ones(36, np.float32))
    with pytest.raises(
        tfcore.TfcoreValueError, match="feed_forward has hidden size 37, expected hidden_size=36"
    ):
        tfcore.TransformerBlock(attn, layer, norm, norm)
    with pytest.raises(
        tfcore.TfcoreTypeError, match="FeedForward or tfcore.MixtureOfExperts, got tfcore.Linear"
    ):
        tfcore.TransformerBlock(attn, layer.router, norm, norm)
