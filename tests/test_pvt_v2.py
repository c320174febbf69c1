"""PvtV2Model and PvtV2ForImageClassification against transformers (eval, eager) on tiny random
checkpoints written with save_pretrained: image sizes that are not multiples of the strides
(the overlapping patch convolutions' padding, odd maps under the stride-sr reduction), the
spatial-reduction and linear (pooled) attention, every stage's hidden state, every block's
attention weights and the logits <= 1e-4 of the output scale; bf16 / int8; the image processor
from preprocessor_config.json against HF's."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
import transformers

import tfcore
from tfcore import models
from tfcore.image import ImageProcessor
from tfcore.models.mix_transformer import adaptive_avg_pool


def _hf(cls=None, **kw):
    cfg = transformers.PvtV2Config(
        **{
            **dict(
                image_size=32,
                num_encoder_blocks=3,
                depths=[2, 1, 2],
                hidden_sizes=[8, 16, 24],
                num_attention_heads=[1, 2, 3],
                patch_sizes=[7, 3, 3],
                strides=[4, 2, 2],
                sr_ratios=[4, 2, 1],
                mlp_ratios=[2, 2, 2],
                attn_implementation="eager",
            ),
            **kw,
        }
    )
    torch.manual_seed(0)
    model = (cls or transformers.PvtV2Model)(cfg).eval()
    with torch.no_grad():  # HF initialises biases to 0 and norms to 1: perturb them all
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _pixels(rng, B, H, W):
    return rng.standard_normal((B, 3, H, W)).astype(np.float32)


def _close(a, b):
    b = b.numpy() if isinstance(b, torch.Tensor) else b
    assert a.shape == tuple(b.shape)
    scale = float(np.abs(b).max())
    err = float(np.abs(a - b).max())
    # float32 through ~10 GEMMs / convolutions with K <= 8 * 24 * 9 terms: ~1e-6 of the scale
    assert err < 1e-4 * max(scale, 1.0), (err, scale)


def _compare(ref, ours, px):
    with torch.no_grad():
        want = ref(torch.from_numpy(px), output_hidden_states=True, output_attentions=True)
    got = ours(px, output_hidden_states=True, output_attentions=True)
    for field in ("last_hidden_state", "logits"):
        if getattr(want, field, None) is not None:
            _close(got[field], getattr(want, field))
    assert len(got.hidden_states) == len(want.hidden_states)
    for a, b in zip(got.hidden_states, want.hidden_states, strict=True):
        _close(a, b)
    assert len(got.attentions) == len(want.attentions)
    for stage_got, stage_want in zip(got.attentions, want.attentions, strict=True):
        for a, b in zip(stage_got, stage_want, strict=True):
            _close(a, b)
    return got


@pytest.mark.parametrize("size", [(32, 32), (37, 45), (29, 23)])
def test_pvt_v2_matches_hf(rng, tmp_path_factory, path, size):
    """37x45: 10x12 -> 5x6 -> 3x3 maps; at stage 0 the 4x4 reduction conv drops the last
    rows/columns (floor), at stage 1 the 2x2 one on a 5x6 map too; the last stage (sr 1) is
    plain self-attention. On every kernel level."""
    d = tmp_path_factory.mktemp("pvt")
    ref = _hf()
    ref.save_pretrained(d)
    ours = tfcore.AutoModel.from_pretrained(d)
    assert type(ours) is models.PvtV2Model and ours.unexpected_keys == []
    got = _compare(ref, ours, _pixels(rng, 2, *size))
    assert got.last_hidden_state.shape[1] == 24


def test_pvt_v2_linear_attention(rng, tmp_path):
    """PVT v2-li: keys/values from 7x7 adaptive average pooling (maps smaller than 7 repeat
    cells, larger ones overlap them), a 1x1 conv, LayerNorm, GELU; ReLU in the Mix-FFN."""
    ref = _hf(linear_attention=True, qkv_bias=False)
    ref.save_pretrained(tmp_path)
    ours = models.PvtV2Model.from_pretrained(tmp_path)
    assert ours.unexpected_keys == []
    for size in ((37, 45), (61, 35)):
        _compare(ref, ours, _pixels(rng, 2, *size))


def test_adaptive_avg_pool_matches_torch(rng):
    for h, w in ((3, 3), (10, 12), (7, 7), (15, 8), (1, 20)):
        x = rng.standard_normal((2, h, w, 5)).astype(np.float32)
        want = torch.nn.AdaptiveAvgPool2d(7)(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        np.testing.assert_allclose(adaptive_avg_pool(x, 7), want.numpy(), rtol=1e-6, atol=1e-6)


def test_pvt_v2_for_image_classification(rng, tmp_path):
    ref = _hf(transformers.PvtV2ForImageClassification, num_labels=5, hidden_act="gelu_new")
    ref.save_pretrained(tmp_path)
    ours = models.PvtV2ForImageClassification.from_pretrained(tmp_path)
    assert type(ours) is models.PvtV2ForImageClassification and ours.unexpected_keys == []
    got = _compare(ref, ours, _pixels(rng, 3, 35, 41))
    assert got.logits.shape == (3, 5)
    base = tfcore.AutoModel.from_pretrained(tmp_path)  # the backbone under the "pvt_v2." prefix
    assert type(base) is models.PvtV2Model
    px = _pixels(rng, 1, 33, 33)
    with torch.no_grad():
        want = ref.pvt_v2(torch.from_numpy(px)).last_hidden_state
    _close(base(px).last_hidden_state, want)


@pytest.mark.parametrize("dtype,tol", [("bfloat16", 0.02), ("int8", 0.1)])
def test_pvt_v2_low_precision(rng, tmp_path, dtype, tol):
    """bf16 / int8 projections and convolutions against the fp32 model, relative to the
    logits' scale: bf16 rounds weights and inputs to 8 mantissa bits (2^-9 relative per
    rounding, ~25 chained GEMMs/convs); int8 rounds every activation to 1/127 of its tensor's
    range (per-tensor), the weights per output channel. Measured (hidden states / logits):
    bf16 0.0055 / 0.0039 at every ISA; int8 0.027 / 0.011 with VNNI, 0.035 / 0.020 on the
    AVX2 path."""
    if dtype not in tfcore.supported_dtypes():
        pytest.skip(f"{dtype} matmul not available on this CPU")
    _hf(transformers.PvtV2ForImageClassification, num_labels=7).save_pretrained(tmp_path)
    px = _pixels(rng, 2, 37, 45)
    want = models.PvtV2ForImageClassification.from_pretrained(tmp_path)(px, output_hidden_states=True)
    low = models.PvtV2ForImageClassification.from_pretrained(tmp_path, dtype=dtype)
    assert low.dtype == dtype
    got = low(px, output_hidden_states=True)
    for a, b in zip(got.hidden_states, want.hidden_states, strict=True):
        assert np.abs(a - b).max() < tol * np.abs(b).max()
    assert np.abs(got.logits - want.logits).max() < tol * np.abs(want.logits).max()


def test_pvt_v2_image_processor_end_to_end(rng, tmp_path):
    """preprocessor_config.json of HF's PvtImageProcessor (224x224 bilinear, ImageNet mean/std)
    -> the same pixel_values as HF's processor -> the same logits as HF's model."""
    cls = getattr(transformers, "PvtImageProcessorPil", None) or transformers.PvtImageProcessor
    cls(size={"height": 45, "width": 37}).save_pretrained(tmp_path)
    ref = _hf(transformers.PvtV2ForImageClassification, num_labels=3)
    ref.save_pretrained(tmp_path)
    hf_proc, ours_proc = cls.from_pretrained(tmp_path), ImageProcessor.from_pretrained(tmp_path)
    images = [rng.integers(0, 256, size=s + (3,), dtype=np.uint8) for s in ((97, 131), (50, 21), (224, 224))]
    want_px = hf_proc([PIL.Image.fromarray(im) for im in images], return_tensors="np")["pixel_values"]
    got_px = ours_proc(images)["pixel_values"]
    np.testing.assert_array_equal(got_px, want_px)
    with torch.no_grad():
        want = ref(torch.from_numpy(want_px)).logits
    _close(models.PvtV2ForImageClassification.from_pretrained(tmp_path)(got_px).logits, want)


def test_bad_inputs(rng, tmp_path):
    _hf().save_pretrained(tmp_path)
    ours = models.PvtV2Model.from_pretrained(tmp_path)
    with pytest.raises(tfcore.TfcoreValueError, match="3, height, width"):
        ours(_pixels(rng, 1, 32, 32)[:, :2])
    with pytest.raises(tfcore.TfcoreValueError, match="NaN"):
        ours(np.full((1, 3, 32, 32), np.nan, np.float32))
    with pytest.raises(tfcore.TfcoreTypeError, match="float32"):
        ours(np.zeros((1, 3, 32, 32)))
    with pytest.raises(tfcore.TfcoreValueError, match="empty"):
        ours(np.zeros((0, 3, 32, 32), np.float32))
