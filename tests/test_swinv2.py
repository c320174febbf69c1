"""Swinv2Model and Swinv2ForImageClassification against transformers (eval, eager) on tiny
random checkpoints written with save_pretrained: odd image sizes (padding of the image, of the
windows and of the merged maps), shifted and clipped windows, pretrained window sizes,
absolute positions, every hidden state, attention and head <= 1e-4 of the output scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import tfcore
from tfcore import models


def _hf(cls=None, randomize=True, max_logit_scale=30.0, **kw):
    cfg = transformers.Swinv2Config(
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
    torch.manual_seed(0)
    model = (cls or transformers.Swinv2Model)(cfg).eval()
    if randomize:  # HF initialises logit scales, the cpb MLP's bias and norms to constants
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "logit_scale" in name:  # exp(logit_scale) in [3, max): HF initialises it to 10
                    p.copy_(torch.log(torch.empty_like(p).uniform_(3, max_logit_scale)))
                elif "continuous_position_bias_mlp" in name or "position_embeddings" in name:
                    p.add_(0.3 * torch.randn_like(p))
                elif "norm" in name:
                    p.add_(0.2 * torch.randn_like(p))
    return model


def _pixels(rng, B, H, W):
    return rng.standard_normal((B, 3, H, W)).astype(np.float32)


def _close(a, b):
    b = b.numpy() if isinstance(b, torch.Tensor) else b
    assert a.shape == tuple(b.shape)
    scale = float(np.abs(b).max())
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


@pytest.mark.parametrize("size", [(32, 32), (37, 45), (29, 31)])
def test_swinv2_matches_hf(rng, tmp_path_factory, size):
    """37x45 with patch 4: the image is padded to 40x48, 10x12 patches padded to 12x12 for
    window 3, merged maps with odd sides padded; the last stage's window is clipped at load
    (2x2 at image_size 32: window 2, no shift), as HF builds it."""
    d = tmp_path_factory.mktemp("swinv2")
    ref = _hf()
    ref.save_pretrained(d)
    ours = tfcore.AutoModel.from_pretrained(d)
    assert type(ours) is models.Swinv2Model and ours.unexpected_keys == []
    assert ours.stages[2].layers[0].window_size == 2 and ours.stages[2].layers[0].shift_size == 0
    assert ours.stages[0].layers[1].shift_size == 1
    _compare(ref, ours, _pixels(rng, 2, *size))


def test_swinv2_logit_scale_at_the_clamp(rng, tmp_path):
    """exp(logit_scale) up to 200, clamped to 100 as HF does: logits reach +-116 and the
    softmax amplifies float32 rounding of the cosines (1 ulp of cos ~6e-8, x100 per logit), so
    HF's own float32 output is off its float64 result by up to ~3e-4 of the scale on these
    inputs. tfcore must be as close to the float64 truth as 4x HF's float32 error (and 1e-4)."""
    import copy

    ref = _hf(max_logit_scale=200.0)
    ref.save_pretrained(tmp_path)
    ours = models.Swinv2Model.from_pretrained(tmp_path)
    ref64 = copy.deepcopy(ref).double()
    for size in ((32, 32), (37, 45), (29, 31)):
        px = _pixels(rng, 2, *size)
        with torch.no_grad():
            want32 = ref(torch.from_numpy(px)).last_hidden_state.numpy()
            want64 = ref64(torch.from_numpy(px).double()).last_hidden_state.numpy()
        scale = np.abs(want64).max()
        hf_err = np.abs(want32 - want64).max() / scale
        err = np.abs(ours(px).last_hidden_state - want64).max() / scale
        assert err < max(4 * hf_err, 1e-4), (size, err, hf_err)


def test_swinv2_pretrained_windows_without_qkv_bias(rng, tmp_path):
    """pretrained_window_sizes rescale the cpb coordinates; no query/value biases. (HF's
    Swinv2 absolute position embeddings have num_patches + 1 rows and fail in its own forward;
    tfcore refuses them with a message naming the mismatch.)"""
    ref = _hf(
        image_size=40,
        depths=[2, 2],
        num_heads=[2, 4],
        window_size=5,
        pretrained_window_sizes=[3, 4],
        qkv_bias=False,
    )
    ref.save_pretrained(tmp_path)
    ours = models.Swinv2Model.from_pretrained(tmp_path)
    assert ours.unexpected_keys == []
    _compare(ref, ours, _pixels(rng, 2, 40, 40))


def test_swinv2_for_image_classification(rng, tmp_path):
    ref = _hf(transformers.Swinv2ForImageClassification, num_labels=5)
    ref.save_pretrained(tmp_path)
    ours = models.Swinv2ForImageClassification.from_pretrained(tmp_path)
    assert ours.unexpected_keys == []
    got = _compare(ref, ours, _pixels(rng, 2, 35, 41))
    assert got.logits.shape == (2, 5)
    base = tfcore.AutoModel.from_pretrained(tmp_path)  # the base model under the "swinv2." prefix
    assert type(base) is models.Swinv2Model
    auto = tfcore.AutoModelForImageClassification.from_pretrained(tmp_path)
    assert type(auto) is models.Swinv2ForImageClassification
    px = _pixels(rng, 1, 35, 41)
    np.testing.assert_array_equal(auto(px).logits, ours(px).logits)


@pytest.mark.parametrize("dtype,tol,pooled_tol", [("bfloat16", 0.06, 0.01), ("int8", 0.3, 0.05)])
def test_swinv2_low_precision(rng, tmp_path, dtype, tol, pooled_tol):
    """bf16 / int8 projections against the fp32 model at HF's initialisation (logit scale 10),
    relative to the output scale. Measured 0.031 / 0.0039 (bf16) and 0.15 / 0.019 (int8) for
    the tokens / the pooled output, far above Swin's (0.004 / 0.010): res-post-norm puts a
    LayerNorm on every branch, rescaling the branch's relative error (bf16: 2^-8 per rounding;
    int8: the per-tensor activation step, 1/127 of the tensor's range, over 4 GEMMs) to the
    unit scale of the output, and the cosine logits multiply q/k errors by the logit scale;
    the pooled mean averages the per-token errors down."""
    if dtype not in tfcore.supported_dtypes():
        pytest.skip(f"{dtype} matmul not available on this CPU")
    _hf(randomize=False, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=3).save_pretrained(
        tmp_path
    )
    px = _pixels(rng, 2, 29, 31)
    want = models.Swinv2Model.from_pretrained(tmp_path)(px)
    low = models.Swinv2Model.from_pretrained(tmp_path, dtype=dtype)
    assert low.dtype == dtype
    got = low(px)
    scale = float(np.abs(want.last_hidden_state).max())
    assert np.abs(got.last_hidden_state - want.last_hidden_state).max() < tol * scale
    assert np.abs(got.pooler_output - want.pooler_output).max() < pooled_tol * scale


def test_cpb_table_matches_hf_module():
    """The continuous position bias evaluated once at load equals HF's per-call computation."""
    from tfcore.models.swinv2 import cpb_bias_table

    cfg = transformers.Swinv2Config(embed_dim=12, num_heads=[3], depths=[1])
    torch.manual_seed(0)
    for window, pretrained in ((1, 0), (4, 0), (5, 3)):
        att = transformers.models.swinv2.modeling_swinv2.Swinv2SelfAttention(
            cfg, 12, 3, window, pretrained_window_size=[pretrained, pretrained]
        )
        with torch.no_grad():
            for p in att.continuous_position_bias_mlp.parameters():
                p.add_(0.3 * torch.randn_like(p))
            t = att.continuous_position_bias_mlp(att.relative_coords_table).view(-1, 3)
            want = (16 * torch.sigmoid(t)).numpy()
        m = att.continuous_position_bias_mlp
        got = cpb_bias_table(
            m[0].weight.detach().numpy(),
            m[0].bias.detach().numpy(),
            m[2].weight.detach().numpy(),
            window,
            pretrained,
        )
        assert got.shape == ((2 * window - 1) ** 2, 3)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_bad_inputs(rng, tmp_path):
    _hf(depths=[1, 1], num_heads=[3, 3]).save_pretrained(tmp_path)
    ours = models.Swinv2Model.from_pretrained(tmp_path)
    with pytest.raises(tfcore.TfcoreValueError, match="3, height, width"):
        ours(_pixels(rng, 1, 32, 32)[:, :2])
    with pytest.raises(tfcore.TfcoreValueError, match="NaN"):
        ours(np.full((1, 3, 32, 32), np.nan, np.float32))
    with pytest.raises(tfcore.TfcoreTypeError, match="float32"):
        ours(np.zeros((1, 3, 32, 32)))
