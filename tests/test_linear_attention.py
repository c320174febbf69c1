"""tfcore.functional.linear_attention: the recurrent, chunkwise and parallel modes equal a
float64 NumPy recurrence (tests/reference/linear_attention.py) at odd lengths, chunk sizes
that do and don't divide L, Dk != Dv, every decay kind, normalization and feature map, initial
and final state, on every kernel path; and equal flash-linear-attention's pure-PyTorch
naive.py references (loaded by path: importing the fla package pulls Triton)."""

from __future__ import annotations

import functools
import importlib.util
from importlib.metadata import files

import numpy as np
import pytest
from reference.linear_attention import linear_attention as reference
from reference.linear_attention import parallel_weights

import tfcore
from tfcore import functional as F

# (name, kwargs of the op); normalize only with a positive feature map (a denominator
# phi(q) . z near 0 would make any comparison meaningless)
VARIANTS = {
    "plain": {},
    "decay": {"decay": "per-head"},
    "gate": {"gate": "gate"},
    # the chunkwise kernel factors exp(b_i - b_j) through a sub-block's start when its decay
    # is mild (every gate here) and goes pair by pair where it is strong (-8 per step above,
    # and a burst of strong gates mid-sequence in "gate-burst": both ways in one call)
    "gate-mild": {"gate": "mild"},
    "gate-burst": {"gate": "burst"},
    "elu+1-normalize": {"feature_map": "elu+1", "normalize": True},
    "relu-gate": {"feature_map": "relu", "gate": "gate"},
    "elu+1-decay-normalize": {"feature_map": "elu+1", "decay": "per-head", "normalize": True},
}


def tolerance(L):
    # float32 sums of up to L terms (state and intra-chunk) against float64: measured
    # 1e-7..4e-7 of max|ref| at L = 37 and below 3e-6 at L = 1000; the bound leaves ~10x
    return 1e-5 * max(1.0, (L / 100) ** 0.5)


@functools.lru_cache(maxsize=None)
def case(L, variant):
    """Inputs, op kwargs and the float64 reference (o, S, z) of one (L, variant)."""
    rng = np.random.default_rng(L * 31 + len(variant))
    B, H, Dk, Dv = (2, 3, 5, 7) if L < 500 else (1, 2, 16, 24)
    q, k = (rng.standard_normal((B, H, L, Dk)).astype(np.float32) for _ in range(2))
    v = rng.standard_normal((B, H, L, Dv)).astype(np.float32)
    kw = dict(VARIANTS[variant])
    if kw.get("decay"):
        kw["decay"] = (1.0 - 2.0 ** (-5.0 - np.arange(H))).astype(np.float32)  # RetNet's gammas
        kw["decay"][-1] = 1.0  # the edge of (0, 1]
    if kw.get("gate"):
        # GLA: logsigmoid(x) / 16 (gate_logit_normalizer), plus a few strong gates
        x = rng.standard_normal((B, H, L, Dk))
        g = -np.log1p(np.exp(-x)) / 16.0
        if kw["gate"] == "gate":
            g[..., 0] = -8.0
        elif kw["gate"] == "burst":
            g[:, :, L // 3 : L // 3 + 5, :] = -6.0
        kw["gate"] = g.astype(np.float32)
    o, S, z = reference(
        q,
        k,
        v,
        decay=kw.get("decay"),
        gate=kw.get("gate"),
        feature_map_name=kw.get("feature_map"),
        normalize=kw.get("normalize", False),
    )
    return q, k, v, kw, o, S, z


def chunk_sizes(L):
    """1 and L divide every L; 8 divides 1000; 3, 16 and 64 divide none of the odd lengths."""
    return sorted({c for c in (1, 3, 8, 16, 64) if c <= L} | {L})


def rel_err(got, want):
    return np.abs(got - want).max() / max(np.abs(want).max(), 1e-30)


def state_of(st, normalize):
    return st if not normalize else st[0]


@pytest.mark.parametrize("L", [1, 7, 97, 131, 1000])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_all_modes_equal_the_reference(path, L, variant):
    q, k, v, kw, o, S, z = case(L, variant)
    tol = tolerance(L)
    runs = [("recurrent", 64), ("parallel", 64)] + [("chunkwise", c) for c in chunk_sizes(L)]
    for mode, chunk in runs:
        got, st = F.linear_attention(q, k, v, mode=mode, chunk_size=chunk, return_state=True, **kw)
        assert got.shape == v.shape and got.dtype == np.float32
        err = rel_err(got, o)
        assert err < tol, (mode, chunk, err)
        assert rel_err(state_of(st, kw.get("normalize")), S) < tol, (mode, chunk)
        if kw.get("normalize"):
            assert rel_err(st[1], z) < tol, (mode, chunk)


def test_default_mode_and_scale():
    q, k, v, kw, o, _, _ = case(97, "decay")
    got = F.linear_attention(q, k, v, decay=kw["decay"])  # chunkwise, chunk_size=64
    assert rel_err(got, o) < tolerance(97)
    scaled = F.linear_attention(q, k, v, decay=kw["decay"], scale=0.25)
    want, _, _ = reference(q, k, v, decay=kw["decay"], scale=0.25)
    assert rel_err(scaled, want) < tolerance(97)


@pytest.mark.parametrize("variant", ["decay", "gate-burst", "elu+1-decay-normalize"])
@pytest.mark.parametrize("mode", ["recurrent", "chunkwise", "parallel"])
def test_out_is_written_whole_and_returned(path, variant, mode):
    """out= receives the result (the same object comes back, alone or first in the tuple):
    every element written, none read, so a buffer full of NaN from an earlier use is fine."""
    q, k, v, kw, o, S, _ = case(131, variant)
    out = np.full(v.shape, np.nan, np.float32)
    got = F.linear_attention(q, k, v, mode=mode, chunk_size=16, out=out, **kw)
    assert got is out
    assert rel_err(out, o) < tolerance(131)
    out[...] = np.nan
    got, st = F.linear_attention(q, k, v, mode=mode, chunk_size=16, out=out, return_state=True, **kw)
    assert got is out
    assert rel_err(out, o) < tolerance(131)
    assert rel_err(state_of(st, kw.get("normalize")), S) < tolerance(131)


@pytest.mark.parametrize("variant", ["plain", "gate", "elu+1-decay-normalize"])
@pytest.mark.parametrize("mode", ["recurrent", "chunkwise", "parallel"])
def test_two_calls_equal_one_call(path, variant, mode):
    """Prefill then continue from the returned state (also across modes: the decode path
    continues a chunkwise prefill)."""
    q, k, v, kw, o, S, z = case(131, variant)
    cut = 50
    first = {**kw, "gate": kw["gate"][:, :, :cut].copy()} if "gate" in kw else kw
    rest = {**kw, "gate": kw["gate"][:, :, cut:].copy()} if "gate" in kw else kw
    head = lambda x: np.ascontiguousarray(x[:, :, :cut])  # noqa: E731
    tail = lambda x: np.ascontiguousarray(x[:, :, cut:])  # noqa: E731
    o1, st = F.linear_attention(
        head(q), head(k), head(v), mode="chunkwise", chunk_size=16, return_state=True, **first
    )
    o2, st2 = F.linear_attention(
        tail(q), tail(k), tail(v), mode=mode, initial_state=st, return_state=True, **rest
    )
    tol = tolerance(131)
    assert rel_err(np.concatenate([o1, o2], axis=2), o) < tol
    assert rel_err(state_of(st2, kw.get("normalize")), S) < tol


def test_initial_state_matches_reference(path):
    rng = np.random.default_rng(5)
    q, k, v, kw, _, _, _ = case(97, "gate")
    B, H, _, Dk = q.shape
    s0 = rng.standard_normal((B, H, Dk, v.shape[-1])).astype(np.float32)
    want, S, _ = reference(q, k, v, gate=kw["gate"], initial_state=s0)
    for mode in ("recurrent", "chunkwise", "parallel"):
        got, st = F.linear_attention(q, k, v, gate=kw["gate"], mode=mode, initial_state=s0, return_state=True)
        assert rel_err(got, want) < tolerance(97), mode
        assert rel_err(st, S) < tolerance(97), mode


def test_parallel_weights(path):
    for variant in ("decay", "relu-gate", "elu+1-normalize"):
        q, k, v, kw, o, _, _ = case(97, variant)
        got, w = F.linear_attention(q, k, v, mode="parallel", return_weights=True, **kw)
        assert w.shape == (q.shape[0], q.shape[1], 97, 97)
        assert not np.triu(w, 1).any()  # causal
        if not kw.get("normalize"):
            want = parallel_weights(
                q, k, decay=kw.get("decay"), gate=kw.get("gate"), feature_map_name=kw.get("feature_map")
            )
            assert rel_err(w, want) < tolerance(97)
        else:
            np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)  # normalized rows
        np.testing.assert_allclose(w @ v.astype(np.float64), o, atol=1e-4 * np.abs(o).max())


def test_strong_gates_stay_finite(path):
    """Cumulative log-gates far below float32's exp range inside one chunk: the chunkwise form
    never exponentiates a positive sum, so nothing overflows (the q exp(b), k exp(-b) split would)."""
    rng = np.random.default_rng(7)
    B, H, L, D = 1, 2, 200, 8
    q, k, v = (rng.standard_normal((B, H, L, D)).astype(np.float32) for _ in range(3))
    gate = np.full((B, H, L, D), -30.0, np.float32)  # -30 per step: -6000 over the sequence
    gate[..., ::3, :] = -1e-3
    want, _, _ = reference(q, k, v, gate=gate)
    for mode, chunk in (("chunkwise", 200), ("chunkwise", 64), ("parallel", 64), ("recurrent", 64)):
        got = F.linear_attention(q, k, v, gate=gate, mode=mode, chunk_size=chunk)
        assert np.isfinite(got).all(), (mode, chunk)
        # exp(b_i - b_j) from float32 cumulative log-gates b carries an absolute error of about
        # |b| 2^-24 in its argument: |b| reaches 30 * 2/3 * min(chunk, L) within a chunk (the
        # parallel form cumulates over all of L); measured 1.9e-5 at chunk 200, 1e-7 recurrent
        reach = 30 * 2 / 3 * (L if mode == "parallel" else min(chunk, L) if mode == "chunkwise" else 1)
        assert rel_err(got, want) < 1e-5 + 4 * reach * 2.0**-24, (mode, chunk)


@pytest.mark.parametrize("kind", ["decay", "gate", "elu+1-normalize"])
@pytest.mark.parametrize("chunk", [64, 128])
def test_chunkwise_wide_heads(path, kind, chunk):
    """Head sizes that fill several register tiles with ragged edges (Dk 40, Dv 72: neither a
    multiple of 16) and chunks of several 16-row sub-blocks, against the float64 recurrence."""
    rng = np.random.default_rng(chunk + len(kind))
    B, H, L, Dk, Dv = 1, 2, 301, 40, 72
    q, k = (rng.standard_normal((B, H, L, Dk)).astype(np.float32) for _ in range(2))
    v = rng.standard_normal((B, H, L, Dv)).astype(np.float32)
    kw = {}
    if kind == "decay":
        kw["decay"] = np.array([0.97, 0.999], np.float32)
    elif kind == "gate":
        kw["gate"] = (-np.log1p(np.exp(-rng.standard_normal((B, H, L, Dk)))) / 16).astype(np.float32)
    else:
        kw = {"feature_map": "elu+1", "normalize": True}
    s0 = rng.standard_normal((B, H, Dk, Dv)).astype(np.float32)
    if kind == "elu+1-normalize":
        s0 = np.abs(s0)  # a positive state: the denominator stays away from 0
        z0 = np.abs(rng.standard_normal((B, H, Dk))).astype(np.float32)
        init = (s0, z0)
    else:
        z0, init = None, s0
    want, S, _ = reference(
        q,
        k,
        v,
        decay=kw.get("decay"),
        gate=kw.get("gate"),
        feature_map_name=kw.get("feature_map"),
        normalize=kw.get("normalize", False),
        initial_state=s0,
        initial_z=z0,
    )
    got, st = F.linear_attention(q, k, v, chunk_size=chunk, initial_state=init, return_state=True, **kw)
    assert rel_err(got, want) < tolerance(L)
    assert rel_err(state_of(st, kw.get("normalize")), S) < tolerance(L)


@pytest.mark.parametrize("variant", ["relu-gate", "gate-mild", "decay"])
def test_vector_paths_match_reference_path(vector_path, variant):
    q, k, v, kw, _, _, _ = case(131, variant)
    fast = F.linear_attention(q, k, v, chunk_size=16, **kw)
    prev = tfcore._C._set_isa("reference")
    try:
        ref = F.linear_attention(q, k, v, chunk_size=16, **kw)
    finally:
        tfcore._C._set_isa(prev)
    assert rel_err(fast, ref) < 1e-5


# ---------------------------------------------------------------- flash-linear-attention


def fla_naive(rel):
    """A naive.py of fla-core (the `test` extra installs it without Triton), loaded by path."""
    path = next(f.locate() for f in files("fla-core") if str(f).replace("\\", "/").endswith(f"fla/ops/{rel}"))
    spec = importlib.util.spec_from_file_location(f"fla_naive_{rel.replace('/', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_against_fla_naive_retention():
    import torch

    naive = fla_naive("retention/naive.py")
    rng = np.random.default_rng(11)
    B, H, L, D = 2, 4, 131, 16
    q, k, v = (rng.standard_normal((B, H, L, D)).astype(np.float32) for _ in range(3))
    want = naive.naive_retention(*(torch.from_numpy(x) for x in (q, k, v))).numpy()
    gammas = 1.0 - 2.0 ** (-5.0 - np.arange(H))  # the gammas naive_retention hard-codes
    for mode in ("recurrent", "chunkwise", "parallel"):
        got = F.linear_attention(q, k, v, decay=gammas, mode=mode)
        assert rel_err(got, want) < 1e-5, mode


def test_against_fla_naive_gla():
    import torch

    naive = fla_naive("gla/naive.py")
    rng = np.random.default_rng(12)
    B, H, L, Dk, Dv = 2, 3, 97, 8, 12
    q, k = (rng.standard_normal((B, H, L, Dk)).astype(np.float32) for _ in range(2))
    v = rng.standard_normal((B, H, L, Dv)).astype(np.float32)
    gk = (np.log(1 / (1 + np.exp(-rng.standard_normal((B, H, L, Dk))))) / 16).astype(np.float32)
    s0 = rng.standard_normal((B, H, Dk, Dv)).astype(np.float32)
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1, 3)))  # noqa: E731
    o, h = naive.naive_recurrent_gla(
        t(q), t(k), t(v), t(gk), initial_state=torch.from_numpy(s0), output_final_state=True
    )
    want = o.numpy().transpose(0, 2, 1, 3)
    for mode in ("recurrent", "chunkwise", "parallel"):
        got, st = F.linear_attention(q, k, v, gate=gk, mode=mode, initial_state=s0, return_state=True)
        assert rel_err(got, want) < 1e-5, mode
        assert rel_err(st, h.numpy()) < 1e-5, mode


@pytest.mark.parametrize("normalize", [False, True])
def test_against_fla_naive_linear_attn(normalize):
    import torch

    naive = fla_naive("linear_attn/naive.py")
    rng = np.random.default_rng(13)
    B, H, L, Dk, Dv = 2, 2, 128, 16, 8  # naive_chunk_linear_attn needs L % 64 == 0
    # already-mapped (positive) features, as a layer with a learned map would pass them
    q, k = (np.exp(rng.standard_normal((B, H, L, Dk)) * 0.3).astype(np.float32) for _ in range(2))
    v = rng.standard_normal((B, H, L, Dv)).astype(np.float32)
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1, 3)))  # noqa: E731
    rec, _ = naive.naive_recurrent_linear_attn(t(q), t(k), t(v), normalize=normalize)
    chunk = naive.naive_chunk_linear_attn(t(q), t(k), t(v), normalize=normalize)
    for want in (rec.numpy().transpose(0, 2, 1, 3), chunk.numpy().transpose(0, 2, 1, 3)):
        for mode in ("recurrent", "chunkwise", "parallel"):
            got = F.linear_attention(q, k, v, normalize=normalize, mode=mode)
            # fla adds 1e-10 to the denominator (of order 1e2 here) and sums in float32
            assert rel_err(got, want) < 2e-5, mode


def test_against_fla_naive_simple_gla():
    """simple GLA: one scalar gate per (token, head), i.e. gate broadcast over Dk."""
    import torch

    naive = fla_naive("simple_gla/naive.py")
    rng = np.random.default_rng(14)
    B, H, L, Dk, Dv = 1, 2, 100, 8, 8
    q, k, v = (rng.standard_normal((B, H, L, d)).astype(np.float32) for d in (Dk, Dk, Dv))
    g = (np.log(1 / (1 + np.exp(-rng.standard_normal((B, L, H))))) / 4).astype(np.float32)
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1, 3)))  # noqa: E731
    o, S = naive.naive_chunk_simple_gla(t(q), t(k), t(v), torch.from_numpy(g), output_final_state=True)
    want = o.numpy().transpose(0, 2, 1, 3)
    gate = np.ascontiguousarray(np.broadcast_to(g.transpose(0, 2, 1)[..., None], (B, H, L, Dk)))
    for mode in ("recurrent", "chunkwise", "parallel"):
        got, st = F.linear_attention(q, k, v, gate=gate, mode=mode, return_state=True)
        assert rel_err(got, want) < 1e-5, mode
        assert rel_err(st, S.numpy()) < 1e-5, mode


# ---------------------------------------------------------------- bad input


def bad_inputs():
    r = np.random.default_rng(0).standard_normal
    q = r((1, 2, 5, 4)).astype(np.float32)
    v = r((1, 2, 5, 3)).astype(np.float32)
    VE, TE = tfcore.TfcoreValueError, tfcore.TfcoreTypeError
    nan = q.copy()
    nan[0, 1, 2, 3] = np.nan
    return (
        [
            ("gate > 0", dict(gate=np.full_like(q, 0.5)), VE, "gate holds 0.5 > 0"),
            ("gate shape", dict(gate=np.zeros((1, 2, 5, 3), np.float32)), VE, "gate has shape"),
            ("gate NaN", dict(gate=np.where(np.isnan(nan), np.nan, -1.0).astype(np.float32)), VE, "NaN"),
            ("decay 0", dict(decay=[0.0, 0.5]), VE, r"decay\[0\] = 0 is outside \(0, 1\]"),
            ("decay > 1", dict(decay=[0.5, 1.5]), VE, "outside"),
            ("decay NaN", dict(decay=[0.5, np.nan]), VE, "outside"),
            ("decay length", dict(decay=[0.5]), VE, r"shape \(heads,\) = \(2,\)"),
            ("decay type", dict(decay="fast"), TE, "decay"),
            ("decay and gate", dict(decay=[0.5, 0.5], gate=np.zeros_like(q)), VE, "not both"),
            ("mode", dict(mode="fast"), VE, "mode must be"),
            ("chunk 0", dict(chunk_size=0), VE, "chunk_size"),
            ("feature map", dict(feature_map="softmax"), VE, "feature_map"),
            ("feature map type", dict(feature_map=3), TE, "feature_map"),
            ("scale inf", dict(scale=float("inf")), VE, "scale"),
            ("scale type", dict(scale="big"), TE, "scale"),
            ("state shape", dict(initial_state=np.zeros((1, 2, 4, 4), np.float32)), VE, "initial_state"),
            ("state dtype", dict(initial_state=np.zeros((1, 2, 4, 3))), TE, "float64"),
            (
                "normalize state not a pair",
                dict(normalize=True, initial_state=np.zeros((1, 2, 4, 3), np.float32)),
                TE,
                "pair",
            ),
            ("weights not parallel", dict(return_weights=True), VE, "parallel"),
            ("query NaN", dict(query=nan), VE, "NaN"),
            ("query float64", dict(query=q.astype(np.float64)), TE, "float64"),
            ("query non-contiguous", dict(query=np.repeat(q, 2, axis=3)[..., ::2]), VE, "contiguous"),
            ("query 3-D", dict(query=q[0]), VE, "dim"),
            ("key shape", dict(key=q[:, :, :4].copy()), VE, "key has shape"),
            ("value length", dict(value=v[:, :, :4].copy()), VE, "value has shape"),
            (
                "empty",
                dict(query=q[:, :, :0].copy(), key=q[:, :, :0].copy(), value=v[:, :, :0].copy()),
                VE,
                "empty",
            ),
            ("query list", dict(query=q.tolist()), TE, "numpy"),
            ("out shape", dict(out=np.empty((1, 2, 5, 4), np.float32)), VE, r"out has shape \(1, 2, 5, 4\)"),
            ("out dtype", dict(out=np.empty((1, 2, 5, 3))), TE, "out must have dtype float32"),
            ("out list", dict(out=[0.0]), TE, "out must be a numpy.ndarray"),
            (
                "out non-contiguous",
                dict(out=np.empty((1, 2, 5, 6), np.float32)[..., ::2]),
                VE,
                "C-contiguous",
            ),
            (
                "out read-only",
                dict(out=np.frombuffer(bytes(120), np.float32).reshape(1, 2, 5, 3)),
                VE,
                "read-only",
            ),
            ("out is value", dict(value="out"), VE, "out must not share memory with value"),
        ],
        q,
        v,
    )


@pytest.mark.parametrize("i", range(len(bad_inputs()[0])), ids=[c[0] for c in bad_inputs()[0]])
def test_bad_inputs_raise_clear_errors(i):
    cases, q, v = bad_inputs()
    _, kw, exc, match = cases[i]
    args = {"query": q, "key": q, "value": v}
    for name in ("query", "key", "value"):
        if name in kw:
            args[name] = kw.pop(name)
    if isinstance(args["value"], str):  # "out": the output buffer passed as the value too
        args["value"] = kw["out"] = v.copy()
    with pytest.raises(exc, match=match):
        F.linear_attention(args["query"], args["key"], args["value"], **kw)


@pytest.mark.parametrize("mode", ["chunkwise", "recurrent", "parallel"])
@pytest.mark.parametrize(
    "where, bad, match",
    [
        ("query", np.nan, "query contains NaN"),
        ("key", np.inf, "key contains Inf"),
        ("value", -np.inf, "value contains Inf"),
        ("gate", np.nan, "gate contains NaN"),
        ("gate", 0.25, "gate holds 0.25 > 0"),
    ],
)
def test_bad_value_deep_in_the_input(path, mode, where, bad, match):
    """The kernel checks each chunk's rows as it first reads them (no separate pass): a bad
    value in a late chunk of one head among several is still refused, with the message and
    flat index of a check before the call, and a good call afterwards is unaffected."""
    rng = np.random.default_rng(3)
    B, H, L, Dk, Dv = 2, 3, 150, 8, 5
    arrays = {
        "query": rng.standard_normal((B, H, L, Dk)).astype(np.float32),
        "key": rng.standard_normal((B, H, L, Dk)).astype(np.float32),
        "value": rng.standard_normal((B, H, L, Dv)).astype(np.float32),
        "gate": np.full((B, H, L, Dk), -0.05, np.float32),
    }
    good = {n: a.copy() for n, a in arrays.items()}
    index = (1, 2, 133, 3)  # the last head, the third chunk of 64, a ragged chunk
    arrays[where][index] = bad
    flat = np.ravel_multi_index(index, arrays[where].shape)
    kw = dict(gate=arrays["gate"], mode=mode, chunk_size=64)
    with pytest.raises(tfcore.TfcoreValueError, match=f"{match}.* flat index {flat}"):
        F.linear_attention(arrays["query"], arrays["key"], arrays["value"], **kw)
    got = F.linear_attention(good["query"], good["key"], good["value"], gate=good["gate"], mode=mode)
    want, _, _ = reference(good["query"], good["key"], good["value"], gate=good["gate"])
    assert rel_err(got, want) < tolerance(L)
