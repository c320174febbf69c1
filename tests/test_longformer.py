"""Longformer: sliding_window_attention against the float64 NumPy reference
(tests/reference/longformer.py), and LongformerModel against Hugging Face's.

Tolerances: the attention kernel accumulates in float32 with an online softmax; outputs stay
within ~1e-6 of float64 for unit-variance inputs (measured <= 7e-7 at L = 1000), weights
within ~5e-7; 5e-5 and 1e-5 leave headroom without hiding a wrong mask or window (those move
outputs by O(0.1)). Model: float32 on both sides through 3 layers of width 60, observed max
abs differences ~1e-6; 3e-5 as in test_encoders.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from memory import rss_growth
from reference.attention import sdpa as sdpa_ref
from reference.longformer import sliding_window_attention as swa_ref

import tfcore

F = tfcore.functional
TOL, WTOL, MODEL_TOL = 5e-5, 1e-5, 3e-5


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def masks(B, L, rng):
    """Padding at the end of item 1 (a third of it), globals at both edges and the middle of
    item 0, the first token of every item, and one global on a padding token (ignored)."""
    real = np.ones((B, L), np.int64)
    if B > 1:
        real[1, L - L // 3 :] = 0
    glob = np.zeros((B, L), np.int64)
    glob[:, 0] = 1
    glob[0, [L // 2, L - 1]] = 1
    if B > 1 and L > 3:
        glob[1, L - 1] = 1  # padding: not global
    return real, glob


CASES = [
    (7, 1, 1),
    (7, 2, 3),
    (7, 10, 2),
    (97, 4, 1),
    (97, 5, 2),
    (97, 3, 3),
    (131, 8, 1),
    (131, 6, 2),
    (131, 2, 3),
    (1000, 32, 1),
    (1000, 17, 3),
]


@pytest.mark.parametrize("L,window,dilation", CASES)
def test_matches_reference(rng, path, L, window, dilation):
    B, H, D = 2, 3, 16
    q, k, v, gk, gv = (rand(rng, B, H, L, D) for _ in range(5))
    real, glob = masks(B, L, rng)
    G = int((real & glob).sum(1).max())
    gq = rand(rng, B, H, G, D)
    kw = dict(
        attention_mask=real, global_attention_mask=glob, global_query=gq, global_key=gk, global_value=gv
    )
    out, w, gw = F.sliding_window_attention(q, k, v, window, dilation=dilation, return_weights=True, **kw)
    want, want_w, want_gw = swa_ref(q, k, v, window, dilation, **kw)
    assert out.shape == (B, H, L, D) and w.shape == (B, H, L, G + 2 * window + 1) and gw.shape == (B, H, L, G)
    assert np.abs(out - want).max() < TOL
    assert np.abs(w - want_w).max() < WTOL
    assert np.abs(gw - want_gw).max() < WTOL
    assert np.all(out[1][:, real[1] == 0] == 0)  # padding queries


@pytest.mark.parametrize("L,window,dilation", [(97, 4, 1), (131, 3, 2)])
def test_defaults_use_regular_projections(rng, path, L, window, dilation):
    """Without global_* arrays the global tokens use q/k/v; without masks every token is real."""
    q, k, v = (rand(rng, 2, 2, L, 8) for _ in range(3))
    _, glob = masks(2, L, rng)
    got = F.sliding_window_attention(q, k, v, window, dilation=dilation, global_attention_mask=glob)
    assert np.abs(got - swa_ref(q, k, v, window, dilation, global_attention_mask=glob)[0]).max() < TOL
    plain = F.sliding_window_attention(q, k, v, window, dilation=dilation)
    assert np.abs(plain - swa_ref(q, k, v, window, dilation)[0]).max() < TOL


def test_window_covering_everything_is_full_attention(rng, path):
    """window >= L, no globals: plain attention with a key padding mask (independent reference)."""
    q, k, v = (rand(rng, 2, 3, 131, 16) for _ in range(3))
    real, _ = masks(2, 131, rng)
    got = F.sliding_window_attention(q, k, v, 200, attention_mask=real)
    want, _ = sdpa_ref(q, k, v, attn_mask=(real != 0)[:, None, None, :])
    want[1][:, real[1] == 0] = 0  # padding queries get zeros
    assert np.abs(got - want).max() < TOL


def test_band_equals_sdpa_window(rng, path):
    """dilation 1, no globals: the same as scaled_dot_product_attention(window=(w, w))."""
    q, k, v = (rand(rng, 1, 2, 97, 32) for _ in range(3))
    got = F.sliding_window_attention(q, k, v, 6)
    assert np.abs(got - F.scaled_dot_product_attention(q, k, v, window=(6, 6))).max() < 1e-6


def test_strided_views_and_out(rng, path):
    """Projections laid out (B, L, H, D) are read through transposed views; out= a view."""
    B, L, H, D = 2, 97, 4, 8
    qkv = rand(rng, B, L, 3 * H * D)
    heads = lambda x: x.reshape(B, L, H, D).transpose(0, 2, 1, 3)  # noqa: E731
    q, k, v = heads(qkv[..., : H * D]), heads(qkv[..., H * D : 2 * H * D]), heads(qkv[..., 2 * H * D :])
    real, glob = masks(B, L, rng)
    ctx = np.empty((B, L, H * D), np.float32)
    res = F.sliding_window_attention(
        q, k, v, 5, dilation=2, attention_mask=real, global_attention_mask=glob, out=heads(ctx)
    )
    want = swa_ref(q, k, v, 5, 2, attention_mask=real, global_attention_mask=glob)[0]
    assert np.abs(ctx - want.transpose(0, 2, 1, 3).reshape(B, L, H * D)).max() < TOL
    assert np.shares_memory(res, ctx)


def test_large_dilation_and_uneven_globals(rng, path):
    """dilation >= L (each query sees only itself + globals); items with 0 and 3 globals."""
    q, k, v = (rand(rng, 2, 2, 7, 8) for _ in range(3))
    glob = np.zeros((2, 7), bool)
    glob[1, [0, 3, 6]] = True
    for d in (7, 50):
        got = F.sliding_window_attention(q, k, v, 3, dilation=d, global_attention_mask=glob)
        assert np.abs(got - swa_ref(q, k, v, 3, d, global_attention_mask=glob)[0]).max() < TOL


def test_memory_is_linear_in_length():
    """L = 32768 (dense scores would take 4 GiB per head): the call's peak RSS growth in a
    fresh process stays small — the kernel's temporaries are O(L (H D + G))."""
    code = """
import json, resource, numpy as np, tfcore
L, H, D = 32768, 2, 16
rng = np.random.default_rng(0)
q, k, v = (rng.standard_normal((1, H, L, D)).astype(np.float32) for _ in range(3))
g = np.zeros((1, L), bool); g[0, [0, 100, L - 1]] = True
out = np.empty_like(q)
tfcore.functional.sliding_window_attention(q, k, v, 8, global_attention_mask=g, out=out)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tfcore.functional.sliding_window_attention(q, k, v, 256, dilation=2, global_attention_mask=g, out=out)
print(json.dumps({"grew_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before}))
"""
    # started beside the tfcore under test (a source checkout as cwd would shadow an installed one)
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.dirname(os.path.dirname(tfcore.__file__)),
    )
    assert res.returncode == 0, res.stderr
    grew_mib = json.loads(res.stdout.strip().splitlines()[-1])["grew_kib"] / 1024
    assert grew_mib < 64  # one extra output + log-sum-exps is ~5 MiB here; L x L would be GiBs


def test_repeated_calls_keep_memory_flat(rng):
    """Outputs, weights, masks and temporaries are all released (also on error paths)."""
    q, k, v, gk = (rand(rng, 2, 2, 33, 8) for _ in range(4))
    real, glob = masks(2, 33, rng)
    gq = rand(rng, 2, 2, 3, 8)

    def calls():
        F.sliding_window_attention(
            q,
            k,
            v,
            3,
            dilation=2,
            attention_mask=real,
            global_attention_mask=glob,
            global_query=gq,
            global_key=gk,
            return_weights=True,
        )
        with pytest.raises(tfcore.TfcoreValueError):
            F.sliding_window_attention(q, k, v, 3, global_attention_mask=glob, global_query=gq[:, :, :2])

    assert rss_growth(calls, calls=1000, warmup=100) < 2 * 2**20  # measured: ~0 MiB


def test_errors(rng):
    q, k, v = (rand(rng, 2, 2, 9, 4) for _ in range(3))
    E, T = tfcore.TfcoreValueError, tfcore.TfcoreTypeError
    with pytest.raises(T, match="float32"):
        F.sliding_window_attention(q.astype(np.float64), k, v, 2)
    with pytest.raises(E, match="key has shape"):
        F.sliding_window_attention(q, k[:, :, :5], v, 2)
    with pytest.raises(E, match="4 dimensions"):
        F.sliding_window_attention(q[0], k[0], v[0], 2)
    with pytest.raises(E, match="window"):
        F.sliding_window_attention(q, k, v, -1)
    with pytest.raises(E, match="dilation"):
        F.sliding_window_attention(q, k, v, 2, dilation=0)
    with pytest.raises(E, match="attention_mask has shape"):
        F.sliding_window_attention(q, k, v, 2, attention_mask=np.ones((2, 8)))
    with pytest.raises(T, match="global_attention_mask"):
        F.sliding_window_attention(q, k, v, 2, global_attention_mask=[[1] * 9] * 2)
    with pytest.raises(T, match="0/1 values"):
        F.sliding_window_attention(q, k, v, 2, attention_mask=np.full((2, 9), "a"))
    g = np.zeros((2, 9), bool)
    g[0, [1, 2]] = True
    with pytest.raises(E, match=r"global_query has shape .* \(2, 2, 2, 4\)"):
        F.sliding_window_attention(q, k, v, 2, global_attention_mask=g, global_query=rand(rng, 2, 2, 3, 4))
    with pytest.raises(E, match="global_key has shape"):
        F.sliding_window_attention(q, k, v, 2, global_attention_mask=g, global_key=rand(rng, 2, 2, 8, 4))
    bad = q.copy()
    bad[1, 1, 8, 3] = np.nan
    with pytest.raises(E, match="query contains NaN"):
        F.sliding_window_attention(bad, k, v, 2)
    with pytest.raises(E, match="global_value contains NaN"):
        F.sliding_window_attention(q, k, v, 2, global_attention_mask=g, global_value=bad)
    ro = np.empty_like(q)
    ro.flags.writeable = False
    with pytest.raises(E, match="read-only"):
        F.sliding_window_attention(q, k, v, 2, out=ro)
    with pytest.raises(E, match="share memory"):
        F.sliding_window_attention(q, k, v, 2, out=v)
    with pytest.raises(E, match="empty"):
        F.sliding_window_attention(q[:, :, :0], k[:, :, :0], v[:, :, :0], 2)
    with pytest.raises(E, match="return_weights would need"):
        F.sliding_window_attention(q, k, v, 2**31 - 1, return_weights=True)
    with pytest.raises(T):
        F.sliding_window_attention(q, k, v, 2, scale="x")


# ------------------------------------------------------------------ LongformerModel vs HF


def longformer_config(**kw):
    from transformers import LongformerConfig

    base = dict(
        vocab_size=101,
        hidden_size=60,
        num_hidden_layers=3,
        num_attention_heads=5,
        intermediate_size=97,
        max_position_embeddings=300,
        attention_window=[8, 4, 8],
        type_vocab_size=2,
        attn_implementation="eager",
    )
    base.update(kw)
    return LongformerConfig(**base)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One tiny random Longformer (per-layer windows 8, 4, 8) saved once for the module."""
    from transformers import LongformerModel

    torch.manual_seed(0)
    ref = LongformerModel(longformer_config()).eval()
    path = tmp_path_factory.mktemp("longformer")
    ref.save_pretrained(path, safe_serialization=True)
    return ref, path


def run_hf(ref, ids, **kw):
    t = {k: torch.from_numpy(v) for k, v in kw.items() if v is not None}
    with torch.no_grad():
        return ref(torch.from_numpy(ids), output_hidden_states=True, output_attentions=True, **t)


def inputs(rng, T, B=3):
    """Lengths T (full), about 2/3 and 5 (padded with pad_token_id 1); globals on CLS of every
    item and a few more in item 0 (middle and last) and item 1."""
    lengths = [T, max(1, 2 * T // 3), min(T, 5)][:B]
    mask = (np.arange(T)[None] < np.array(lengths)[:, None]).astype(np.int64)
    ids = np.where(mask == 1, rng.integers(3, 101, size=(B, T)), 1)
    glob = np.zeros((B, T), np.int64)
    glob[:, 0] = 1
    glob[0, [T // 2, T - 1]] = 1
    if B > 1 and T > 3:
        glob[1, 2] = 1
    return ids, mask, glob


def compare(out, want):
    assert np.abs(out.last_hidden_state - want.last_hidden_state.numpy()).max() < MODEL_TOL
    assert np.abs(out.pooler_output - want.pooler_output.numpy()).max() < MODEL_TOL
    assert len(out.hidden_states) == len(want.hidden_states)
    for a, b in zip(out.hidden_states, want.hidden_states):
        assert np.abs(a - b.numpy()).max() < MODEL_TOL
    for a, b in zip(out.attentions, want.attentions):
        assert a.shape == tuple(b.shape)
        assert np.abs(a - b.numpy()).max() < WTOL
    if want.global_attentions is None:
        assert "global_attentions" not in out
    else:
        for a, b in zip(out.global_attentions, want.global_attentions):
            assert a.shape == tuple(b.shape)
            assert np.abs(a - b.numpy()).max() < WTOL


@pytest.mark.parametrize("T", [7, 8, 97, 131])  # below, at and above the windows; odd lengths
def test_model_matches_hf(tiny, rng, T):
    ref, path = tiny
    ours = tfcore.models.LongformerModel.from_pretrained(path)
    assert ours.unexpected_keys == []
    ids, mask, glob = inputs(rng, T)
    tt = rng.integers(0, 2, size=ids.shape)
    out = ours(
        ids,
        attention_mask=mask,
        global_attention_mask=glob,
        token_type_ids=tt,
        output_hidden_states=True,
        output_attentions=True,
    )
    compare(out, run_hf(ref, ids, attention_mask=mask, global_attention_mask=glob, token_type_ids=tt))


def test_model_without_globals_or_mask(tiny, rng):
    ref, path = tiny
    ours = tfcore.AutoModel.from_pretrained(path)
    assert isinstance(ours, tfcore.models.LongformerModel)
    ids, mask, _ = inputs(rng, 97, B=2)
    compare(
        ours(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True),
        run_hf(ref, ids, attention_mask=mask),
    )
    ids = ids[:1]
    compare(ours(ids, output_hidden_states=True, output_attentions=True), run_hf(ref, ids))
    plain = ours(ids)  # default outputs only
    assert set(plain) == {"last_hidden_state", "pooler_output"}
    pos = np.arange(3, 3 + ids.shape[1])[None]  # explicit position_ids
    compare(
        ours(ids, position_ids=pos, output_hidden_states=True, output_attentions=True),
        run_hf(ref, ids, position_ids=pos),
    )


@pytest.mark.parametrize("dtype,tol", [("bfloat16", 0.02), ("int8", 0.05)])
def test_model_low_precision(tiny, rng, dtype, tol):
    """bf16 / int8 projections against the float32 model (LayerNorm'd outputs of scale ~1;
    measured max abs differences 5e-4 (bf16) and 2e-3 (int8) through 3 layers; a wrong or
    missing projection moves outputs by O(1))."""
    if dtype not in tfcore.supported_dtypes():
        pytest.skip(f"{dtype} matmul not available on this CPU")
    _, path = tiny
    ids, mask, glob = inputs(rng, 97)
    fp32 = tfcore.models.LongformerModel.from_pretrained(path)(
        ids, attention_mask=mask, global_attention_mask=glob
    )
    low = tfcore.models.LongformerModel.from_pretrained(path, dtype=dtype)
    got = low(ids, attention_mask=mask, global_attention_mask=glob)
    err = np.abs(got.last_hidden_state - fp32.last_hidden_state).max()
    assert 0 < err < tol


def test_model_config_and_input_errors(tmp_path, tiny, rng):
    from transformers import LongformerModel

    _, path = tiny
    ours = tfcore.models.LongformerModel.from_pretrained(path)
    ids, mask, glob = inputs(rng, 9)
    with pytest.raises(tfcore.TfcoreValueError, match="global_attention_mask has shape"):
        ours(ids, global_attention_mask=glob[:, :8])
    with pytest.raises(tfcore.TfcoreTypeError, match="0/1"):
        ours(ids, attention_mask=mask.astype(str))
    torch.manual_seed(0)
    LongformerModel(longformer_config(num_hidden_layers=1, attention_window=8)).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    for bad in ([8, 8], [7], 0):
        cfg["attention_window"] = bad
        (tmp_path / "config.json").write_text(json.dumps(cfg))
        with pytest.raises(tfcore.CheckpointError, match="attention_window"):
            tfcore.models.LongformerModel.from_pretrained(tmp_path)


def test_model_missing_global_projection(tmp_path):
    """A checkpoint without query_global (e.g. converted from RoBERTa by hand) is refused."""
    from safetensors.numpy import load_file, save_file
    from transformers import LongformerModel

    torch.manual_seed(0)
    LongformerModel(longformer_config(num_hidden_layers=1, attention_window=8)).save_pretrained(tmp_path)
    f = tmp_path / "model.safetensors"
    tensors = load_file(f)
    del tensors["encoder.layer.0.attention.self.query_global.weight"]
    save_file(tensors, f, metadata={"format": "pt"})
    with pytest.raises(tfcore.CheckpointError, match="query_global"):
        tfcore.models.LongformerModel.from_pretrained(tmp_path)
