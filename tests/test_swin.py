"""Swin: the window-attention kernel against a float64 NumPy reference that does HF's
pad / roll / partition / reverse with real copies (tests/reference/window.py), the
WindowAttention layer (projections, HF's window clipping), and SwinModel /
SwinForImageClassification against Hugging Face on tiny random checkpoints with odd image
sizes (padding of the image, of the feature maps for the windows and for patch merging),
several stages, batch 2, hidden states and attentions.

Tolerances: the kernel computes in float32 (the reference in float64) over windows of at
most 81 keys: 5e-6 absolute (measured <= 8e-7) on outputs and weights of size O(1). Models: float32 on both
sides through up to 5 layers of width <= 48: max abs < 1e-4 relative to the output's
largest value (measured ~3e-7)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from reference.window import window_attention as ref_window_attention

import tfcore
from tfcore import models

OP_TOL = 5e-6


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ------------------------------------------------------------------ the kernel

# (B, Hh, Ww, heads, head_dim, window, shift, table window)
CASES = [
    (2, 7, 7, 2, 8, 7, 0, 7),  # one window, no padding
    (2, 7, 7, 2, 8, 7, 3, 7),  # Swin's shift ws // 2 on a map of exactly one window
    (2, 9, 13, 3, 5, 3, 1, 3),  # odd map: padded to 9 x 15; odd head_dim
    (1, 10, 12, 2, 16, 5, 2, 7),  # padding both ways; table of a larger window (clipped)
    (2, 11, 10, 2, 33, 9, 4, 9),  # 81 tokens per window: two query blocks; head_dim % 4 != 0
    (1, 4, 6, 1, 4, 3, 1, 3),  # tiny
    (2, 14, 21, 3, 12, 7, 3, 7),  # several full windows, Swin's real window
]


def _inputs(rng, B, Hh, Ww, H, D, tw):
    qkv = rng.standard_normal((B, Hh, Ww, 3, H, D)).astype(np.float32)
    table = rng.standard_normal(((2 * tw - 1) ** 2, H)).astype(np.float32)
    pad = rng.standard_normal((3, H, D)).astype(np.float32)
    return qkv, table, pad


@pytest.mark.parametrize("case", CASES, ids=[str(c) for c in CASES])
def test_kernel_matches_reference(rng, path, case):
    B, Hh, Ww, H, D, ws, shift, tw = case
    qkv, table, pad = _inputs(rng, B, Hh, Ww, H, D, tw)
    want, want_w = ref_window_attention(qkv, ws, shift, table, pad)
    got, got_w = tfcore.functional.window_attention(
        qkv, ws, shift, relative_position_bias_table=table, pad_qkv=pad, output_attentions=True
    )
    assert got.shape == (B, Hh, Ww, H, D) and got_w.shape == want_w.shape
    assert np.abs(got - want).max() < OP_TOL
    assert np.abs(got_w - want_w).max() < OP_TOL
    # the weights of real queries sum to 1 over the window's keys
    assert np.allclose(got_w.sum(-1), 1.0, atol=1e-5)


def test_kernel_defaults_and_out(rng, path):
    """No table, zero padding tokens, a custom scale, out= written in place."""
    qkv, _, _ = _inputs(rng, 2, 5, 8, 2, 6, 3)
    want, _ = ref_window_attention(qkv, 3, 1, scale=0.3)
    out = np.full((2, 5, 8, 2, 6), np.nan, np.float32)
    got = tfcore.functional.window_attention(qkv, 3, 1, scale=0.3, out=out)
    assert got is out
    assert np.abs(out - want).max() < OP_TOL
    # default scale 1/sqrt(D), shift 0
    want0, _ = ref_window_attention(qkv, 4)
    assert np.abs(tfcore.functional.window_attention(qkv, 4) - want0).max() < OP_TOL


def test_kernel_mask_value(rng, path):
    """mask_value replaces HF Swin's -100 between shifted-window regions (SwinV2 in
    transformers adds it twice: -200), on logits large enough for the difference to show."""
    qkv, table, pad = _inputs(rng, 2, 9, 13, 3, 5, 3)
    qkv *= 6  # logits of O(100)
    for mask in (-100.0, -200.0, -1.0):
        want, want_w = ref_window_attention(qkv, 3, 1, table, pad, scale=1.0, mask_value=mask)
        got, got_w = tfcore.functional.window_attention(
            qkv,
            3,
            1,
            relative_position_bias_table=table,
            pad_qkv=pad,
            scale=1.0,
            output_attentions=True,
            mask_value=mask,
        )
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err < 1e-5 and np.abs(got_w - want_w).max() < 1e-4, (mask, err)
    strong, _ = ref_window_attention(qkv, 3, 1, table, pad, scale=1.0, mask_value=-200.0)
    assert np.abs(strong - want).max() > 1e-2  # the value matters on these logits (want: -1)


def test_kernel_fast_path_matches_reference_path(rng, vector_path):
    qkv, table, pad = _inputs(rng, 2, 15, 11, 3, 32, 7)
    outs = []
    for ref in (False, True):
        prev = tfcore._C._set_reference_kernels(ref)
        try:
            outs.append(
                tfcore.functional.window_attention(
                    qkv, 7, 3, relative_position_bias_table=table, pad_qkv=pad, output_attentions=True
                )
            )
        finally:
            tfcore._C._set_reference_kernels(prev)
    (a, aw), (b, bw) = outs
    assert np.abs(a - b).max() < 1e-5 and np.abs(aw - bw).max() < 1e-5


def test_kernel_errors(rng):
    wa = tfcore.functional.window_attention
    qkv, table, pad = _inputs(rng, 1, 6, 6, 2, 4, 3)
    with pytest.raises(tfcore.TfcoreValueError, match="6"):
        wa(qkv[0], 3)
    with pytest.raises(tfcore.TfcoreTypeError, match="float32"):
        wa(qkv.astype(np.float64), 3)
    with pytest.raises(tfcore.TfcoreValueError, match=r"\(batch, height, width, 3, num_heads, head_dim\)"):
        wa(np.zeros((1, 6, 6, 2, 2, 4), np.float32), 3)
    with pytest.raises(tfcore.TfcoreValueError, match="shift_size must be in"):
        wa(qkv, 3, 3)
    with pytest.raises(tfcore.TfcoreValueError, match="window_size must be in"):
        wa(qkv, 0)
    with pytest.raises(tfcore.TfcoreValueError, match="window_size must be in"):
        wa(qkv, 1 << 20)
    with pytest.raises(tfcore.TfcoreValueError, match="relative_position_bias_table has shape"):
        wa(qkv, 3, relative_position_bias_table=table[:-1])
    with pytest.raises(tfcore.TfcoreValueError, match="relative_position_bias_table has shape"):
        wa(qkv, 3, relative_position_bias_table=np.ascontiguousarray(table[:, :1]))
    with pytest.raises(tfcore.TfcoreValueError, match="smaller than window_size=4"):
        wa(qkv, 4, relative_position_bias_table=table)
    with pytest.raises(tfcore.TfcoreValueError, match="pad_qkv has shape"):
        wa(qkv, 3, pad_qkv=pad[:2])
    with pytest.raises(tfcore.TfcoreValueError, match="out has shape"):
        wa(qkv, 3, out=np.zeros((1, 6, 6, 8), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="empty"):
        wa(np.zeros((0, 6, 6, 3, 2, 4), np.float32), 3)
    bad = qkv.copy()
    bad[0, 2, 3, 1, 0, 0] = np.nan
    with pytest.raises(tfcore.TfcoreValueError, match="NaN"):
        wa(bad, 3)
    bad_table = table.copy()
    bad_table[0, 0] = np.inf
    with pytest.raises(tfcore.TfcoreValueError, match="relative_position_bias_table"):
        wa(qkv, 3, relative_position_bias_table=bad_table)


# ------------------------------------------------------------------ the layer


def _layer_inputs(rng, C, H, tw, bias=True):
    w = lambda *s: (rng.standard_normal(s) / np.sqrt(s[-1])).astype(np.float32)  # noqa: E731
    return dict(
        qkv_weight=w(3 * C, C),
        qkv_bias=w(3 * C) if bias else None,
        o_weight=w(C, C),
        o_bias=w(C),
        relative_position_bias_table=rng.standard_normal(((2 * tw - 1) ** 2, H)).astype(np.float32),
    )


def _layer_reference(x, p, H, ws, shift):
    """HF's SwinLayer attention half in float64: padded tokens are zeros before the projection."""
    B, Hh, Ww, C = x.shape
    qkv = x.astype(np.float64) @ p["qkv_weight"].T.astype(np.float64)
    pad = np.zeros(3 * C)
    if p["qkv_bias"] is not None:
        qkv = qkv + p["qkv_bias"]
        pad = p["qkv_bias"].astype(np.float64)
    D = C // H
    ctx, w = ref_window_attention(
        qkv.reshape(B, Hh, Ww, 3, H, D), ws, shift, p["relative_position_bias_table"], pad.reshape(3, H, D)
    )
    return ctx.reshape(B, Hh, Ww, C) @ p["o_weight"].T.astype(np.float64) + p["o_bias"], w


@pytest.mark.parametrize("bias", [True, False])
def test_layer_clips_the_window_like_hf(rng, path, bias):
    C, H = 12, 3
    p = _layer_inputs(rng, C, H, 7, bias)
    attn = tfcore.WindowAttention(C, H, 7, shift_size=3, **p)
    assert (attn.window_size, attn.shift_size, attn.head_dim) == (7, 3, 4)
    res = rng.standard_normal((2, 5, 6, C)).astype(np.float32)
    x = rng.standard_normal((2, 5, 6, C)).astype(np.float32)
    # min(5, 6) <= 7: one window of side 5, no shift (HF's set_shift_and_window_size)
    want, want_w = _layer_reference(x, p, H, 5, 0)
    got, got_w = attn(x, res, output_attentions=True)
    assert got_w.shape == (2 * 2, H, 25, 25)
    assert np.abs(got - (want + res)).max() < 1e-4
    assert np.abs(got_w - want_w).max() < 1e-5
    # always_partition: the configured window and shift, on a padded map
    want, _ = _layer_reference(x, p, H, 7, 3)
    assert np.abs(attn(x, always_partition=True) - want).max() < 1e-4
    # a map larger than the window: shifted windows over the padded map
    x = rng.standard_normal((1, 9, 16, C)).astype(np.float32)
    want, _ = _layer_reference(x, p, H, 7, 3)
    assert np.abs(attn(x) - want).max() < 1e-4


def test_layer_errors(rng):
    p = _layer_inputs(rng, 8, 2, 3)
    with pytest.raises(tfcore.TfcoreValueError, match="multiple of num_heads"):
        tfcore.WindowAttention(8, 3, 3, **p)
    with pytest.raises(tfcore.TfcoreValueError, match="shift_size must be in"):
        tfcore.WindowAttention(8, 2, 3, shift_size=5, **p)
    with pytest.raises(tfcore.TfcoreValueError, match="qkv_weight maps"):
        tfcore.WindowAttention(8, 2, 3, **{**p, "qkv_weight": p["qkv_weight"][:16], "qkv_bias": None})
    with pytest.raises(tfcore.TfcoreValueError, match="smaller than window_size=4"):
        tfcore.WindowAttention(8, 2, 4, **p)
    with pytest.raises(tfcore.TfcoreValueError, match="required"):
        tfcore.WindowAttention(8, 2, 3)
    attn = tfcore.WindowAttention(8, 2, 3, **p)
    with pytest.raises(tfcore.TfcoreValueError, match="hidden_states"):
        attn(np.zeros((2, 9, 8), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="last dim 7"):
        attn(np.zeros((1, 3, 3, 7), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="residual"):
        attn(np.zeros((1, 3, 3, 8), np.float32), np.zeros((1, 3, 4, 8), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="NaN"):
        attn(np.full((1, 3, 3, 8), np.nan, np.float32))
    assert "WindowAttention(hidden_size=8" in repr(attn)


@pytest.mark.parametrize("shape", [(2, 5, 6), (1, 9, 16)])  # clipped to one 5-window; shifted 7-windows
def test_swin_layer_is_its_parts(rng, path, shape):
    C, H, F = 12, 3, 20
    p = _layer_inputs(rng, C, H, 7)
    attn = tfcore.WindowAttention(C, H, 7, shift_size=3, **p)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    ffn = tfcore.FeedForward(r(F, C), r(C, F), up_bias=r(F), down_bias=r(C), activation="gelu")
    n1, n2 = tfcore.LayerNorm(r(C), r(C), eps=1e-5), tfcore.LayerNorm(r(C), r(C), eps=1e-5)
    layer = tfcore.SwinLayer(attn, ffn, n1, n2)
    assert layer.attention is attn and layer.feed_forward is ffn and layer.hidden_size == C
    x = r(*shape, C)
    h, w = attn(n1(x), x, output_attentions=True)
    want = ffn(n2(h), h)
    got, got_w = layer(x, output_attentions=True)
    assert np.abs(got - want).max() < 1e-5 and np.abs(got_w - w).max() < 1e-6
    out = np.empty_like(x)
    assert layer(x, out=out) is out and np.abs(out - want).max() < 1e-5
    assert (
        np.abs(
            layer(x, always_partition=True) - ffn(n2(h2 := attn(n1(x), x, always_partition=True)), h2)
        ).max()
        < 1e-5
    )
    with pytest.raises(tfcore.TfcoreTypeError, match="WindowAttention"):
        tfcore.SwinLayer(ffn, ffn, n1, n2)
    with pytest.raises(tfcore.TfcoreTypeError, match="FeedForward"):
        tfcore.SwinLayer(attn, attn, n1, n2)
    with pytest.raises(tfcore.TfcoreValueError, match="norm2 normalizes 4"):
        tfcore.SwinLayer(attn, ffn, n1, tfcore.LayerNorm(r(4)))
    with pytest.raises(tfcore.TfcoreValueError, match="feed_forward maps"):
        tfcore.SwinLayer(attn, tfcore.FeedForward(r(F, C + 1), r(C + 1, F)), n1, n2)
    with pytest.raises(tfcore.TfcoreValueError, match="hidden_states"):
        layer(x.reshape(shape[0], -1, C))


def test_no_leaks_and_no_kept_references(rng):
    from memory import rss_growth

    p = _layer_inputs(rng, 8, 2, 3)
    attn = tfcore.WindowAttention(8, 2, 3, shift_size=1, **p)
    x = rng.standard_normal((2, 5, 4, 8)).astype(np.float32)
    qkv, table, pad = _inputs(rng, 2, 5, 4, 2, 4, 3)
    before = [sys.getrefcount(a) for a in (x, qkv, table, pad)]

    def calls():
        attn(x, x, output_attentions=True)
        attn(x, always_partition=True)
        tfcore.functional.window_attention(
            qkv, 3, 1, relative_position_bias_table=table, pad_qkv=pad, output_attentions=True
        )
        with pytest.raises(tfcore.TfcoreValueError):
            attn(x[..., :7].copy())

    with tfcore.threads(1):  # one thread: a busy machine cannot stall the tiny calls
        growth = rss_growth(calls, calls=1000, warmup=100)
        assert growth < 2 * 2**20, growth  # measured: 0 MiB
        growth = rss_growth(lambda: tfcore.WindowAttention(8, 2, 3, **p), calls=100, warmup=30)
        assert growth < 2 * 2**20, growth  # measured: 0 MiB
    assert [sys.getrefcount(a) for a in (x, qkv, table, pad)] == before


# ------------------------------------------------------------------ models against HF


def _hf_swin(cls=None, randomize=True, **kw):
    from transformers import SwinConfig, SwinModel

    cls = cls or SwinModel
    cfg = SwinConfig(
        **{
            **dict(
                image_size=32,
                patch_size=4,
                embed_dim=12,
                depths=[2, 2, 1],
                num_heads=[3, 3, 6],
                window_size=3,
                mlp_ratio=2.0,
                attn_implementation="eager",
            ),
            **kw,
        }
    )
    model = cls(cfg).eval()
    if randomize:  # HF initialises tables, position embeddings and norms to constants
        _randomize(model)
    return model


def _randomize(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name or "position_embeddings" in name:
                p.uniform_(-1, 1)
            elif "norm" in name:
                p.add_(0.2 * torch.randn_like(p))


def _pixels(rng, B, H, W):
    return rng.standard_normal((B, 3, H, W)).astype(np.float32)


def _close(a, b, scale=None):
    b = b.numpy() if isinstance(b, torch.Tensor) else b
    scale = float(np.abs(b).max()) if scale is None else scale
    assert a.shape == tuple(b.shape)
    err = float(np.abs(a - b).max())
    assert err < 1e-4 * max(scale, 1.0), (err, scale)


def _compare(ref, ours, px, **kw):
    with torch.no_grad():
        want = ref(torch.from_numpy(px), output_hidden_states=True, output_attentions=True, **kw)
    got = ours(px, output_hidden_states=True, output_attentions=True, **kw)
    for field in ("last_hidden_state", "pooler_output", "logits"):
        if getattr(want, field, None) is not None:
            _close(got[field], getattr(want, field))
    for name in ("hidden_states", "reshaped_hidden_states", "attentions"):
        assert len(got[name]) == len(getattr(want, name))
        for a, b in zip(got[name], getattr(want, name), strict=True):
            _close(a, b)
    return got


def test_swin_odd_image_window_3(rng, tmp_path, path):
    """37x45 with patch 4: the image is padded to 40x48; 10x12 patches padded to 12x12 for
    window 3, merged from 10x12 to 5x6 (padded to 6x6), then 3x3 (window clipped: shift 0)."""
    ref = _hf_swin()
    ref.save_pretrained(tmp_path)
    ours = tfcore.AutoModel.from_pretrained(tmp_path)
    assert type(ours) is models.SwinModel and not ours.unexpected_keys
    got = _compare(ref, ours, _pixels(rng, 2, 37, 45))
    assert got.last_hidden_state.shape == (2, 9, 48) and got.pooler_output.shape == (2, 48)
    assert [a.shape for a in got.attentions] == [(2 * 16, 3, 9, 9), (2 * 4, 3, 9, 9), (2, 6, 9, 9)]
    assert [r.shape for r in got.reshaped_hidden_states] == [
        (2, 12, 10, 12),
        (2, 24, 5, 6),
        (2, 48, 3, 3),
        (2, 48, 3, 3),
    ]
    _compare(ref, ours, _pixels(rng, 1, 48, 36))  # no padding for the patches nor the first windows


def test_swin_window_7(rng, tmp_path, path):
    """Swin's window 7 with shift 3 on 16x17 then 8x9 maps (padded to 21x21 and 14x14);
    qkv_bias=False, so padded tokens have zero q/k/v; tanh GELU; a layer_norm_eps that only
    the layers' norms use."""
    ref = _hf_swin(
        embed_dim=16,
        depths=[2, 3],
        num_heads=[2, 4],
        window_size=7,
        qkv_bias=False,
        hidden_act="gelu_new",
        layer_norm_eps=1e-3,
    )  # the embedding/merging norms keep 1e-5
    ref.save_pretrained(tmp_path)
    ours = models.SwinModel.from_pretrained(tmp_path)
    _compare(ref, ours, _pixels(rng, 2, 61, 67))


def test_swin_window_clipped_to_the_map(rng, tmp_path):
    """Window 5 on a 5x6 second stage: HF clips it (window 5, shift 0 instead of 2)."""
    from transformers import SwinModel

    ref = _hf_swin(embed_dim=8, depths=[2, 2], num_heads=[2, 2], window_size=5)
    ref.save_pretrained(tmp_path)
    ours = models.SwinModel.from_pretrained(tmp_path)
    px = _pixels(rng, 2, 40, 48)
    # always_partition keeps window 5 with shift 2 on the 5x6 map (padded to 5x10); HF's
    # layers remember a clipped shift, so that runs first on a fresh copy
    fresh = SwinModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    _compare(fresh, ours, px, always_partition=True)
    _compare(ref, ours, px)


def test_swin_clipped_table_from_older_hf(rng, tmp_path):
    """Older HF clipped the window when building the model, so a stage smaller than the
    window stored a smaller bias table; rebuild that with window 7 on a 5x6 second stage
    (transformers 5 keeps the 13x13 table there and fails at run time)."""
    from transformers.models.swin.modeling_swin import SwinRelativePositionBias

    ref = _hf_swin(embed_dim=8, depths=[2, 2], num_heads=[2, 2], window_size=7, randomize=False)
    for block in ref.encoder.layers[1].blocks:
        block.attention.relative_position_bias = SwinRelativePositionBias(2, (5, 5))
    _randomize(ref)
    ref.save_pretrained(tmp_path)
    ours = models.SwinModel.from_pretrained(tmp_path)
    assert ours.stages[1].layers[1].attention.window_size == 5
    assert ours.stages[1].layers[1].attention.shift_size == 0
    # 37x45, patch 4: 10x12 patches in shifted 7-windows (padded to 14x14), then 5x6 in one
    # 5-window (padded to 5x10)
    _compare(ref, ours, _pixels(rng, 2, 37, 45))


def test_swin_absolute_positions(rng, tmp_path):
    ref = _hf_swin(use_absolute_embeddings=True, depths=[1, 1], num_heads=[3, 3])
    ref.save_pretrained(tmp_path)
    ours = models.SwinModel.from_pretrained(tmp_path)
    _compare(ref, ours, _pixels(rng, 2, 32, 32))
    _compare(ref, ours, _pixels(rng, 1, 48, 40), interpolate_pos_encoding=True)  # 8x8 grid -> 12x10
    with pytest.raises(tfcore.TfcoreValueError, match="interpolate_pos_encoding=True"):
        ours(_pixels(rng, 1, 48, 40))


def test_swin_for_image_classification(rng, tmp_path):
    from transformers import SwinForImageClassification

    ref = _hf_swin(SwinForImageClassification, num_labels=5)
    ref.save_pretrained(tmp_path)
    ours = models.SwinForImageClassification.from_pretrained(tmp_path)
    got = _compare(ref, ours, _pixels(rng, 2, 35, 41))
    assert got.logits.shape == (2, 5)
    base = tfcore.AutoModel.from_pretrained(tmp_path)  # the base model under the "swin." prefix
    assert type(base) is models.SwinModel and base.unexpected_keys == ["classifier.bias", "classifier.weight"]


@pytest.mark.parametrize("dtype,tol", [("bfloat16", 0.02), ("int8", 0.05)])  # measured 0.004, 0.010
def test_swin_low_precision(rng, tmp_path, dtype, tol):
    """bf16 / int8 projections against the fp32 model: relative to the output scale."""
    if dtype not in tfcore.supported_dtypes():
        pytest.skip(f"{dtype} matmul not available on this CPU")
    _hf_swin(embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=3).save_pretrained(tmp_path)
    px = _pixels(rng, 2, 29, 31)
    want = models.SwinModel.from_pretrained(tmp_path)(px)
    low = models.SwinModel.from_pretrained(tmp_path, dtype=dtype)
    assert low.dtype == dtype
    got = low(px)
    scale = float(np.abs(want.last_hidden_state).max())
    assert np.abs(got.last_hidden_state - want.last_hidden_state).max() < tol * scale
    assert np.abs(got.pooler_output - want.pooler_output).max() < tol * scale


def test_swin_errors(rng, tmp_path):
    from safetensors.numpy import load_file, save_file

    ref = _hf_swin(depths=[1], num_heads=[3])
    ref.save_pretrained(tmp_path)
    ours = models.SwinModel.from_pretrained(tmp_path)
    with pytest.raises(tfcore.TfcoreTypeError, match="float32"):
        ours(np.zeros((1, 3, 16, 16)))
    with pytest.raises(tfcore.TfcoreTypeError, match="numpy.ndarray"):
        ours([[0.0]])
    with pytest.raises(tfcore.TfcoreValueError, match=r"\(batch, 3, height, width\)"):
        ours(np.zeros((1, 1, 16, 16), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="empty"):
        ours(np.zeros((1, 3, 0, 16), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="NaN"):
        ours(np.full((1, 3, 16, 16), np.nan, np.float32))
    tiny = ours(np.ones((1, 3, 1, 1), np.float32))  # one padded patch, one 1x1 window
    assert tiny.last_hidden_state.shape == (1, 1, 12)
    # a checkpoint without a layer's bias table
    f = tmp_path / "model.safetensors"
    tensors = load_file(str(f))
    del tensors["encoder.layers.0.blocks.0.attention.self.relative_position_bias_table"]
    save_file(tensors, str(f), metadata={"format": "pt"})
    with pytest.raises(tfcore.CheckpointError, match="relative_position_bias_table"):
        models.SwinModel.from_pretrained(tmp_path)
    tensors["encoder.layers.0.blocks.0.attention.self.relative_position_bias_table"] = np.zeros(
        (24, 3), np.float32
    )
    save_file(tensors, str(f), metadata={"format": "pt"})
    with pytest.raises(tfcore.CheckpointError, match=r"not \(2 w - 1\)\^2"):
        models.SwinModel.from_pretrained(tmp_path)


def test_assert_close_to_reference_runs_swin(tmp_path):
    _hf_swin(image_size=48).save_pretrained(tmp_path)  # 12x12 patches -> 6x6 -> 3x3
    from tfcore.testing import assert_close_to_reference

    stats = assert_close_to_reference(tmp_path)
    assert stats["max_abs_error"] < 1e-4 and stats["elements"] == 2 * 9 * 48
