"""CvtModel and CvtForImageClassification against transformers (eval) on tiny random
checkpoints written with save_pretrained: convolutional token embeddings, depthwise-conv Q/K/V
projections (K/V at stride 2) with BatchNorm folded in at load, the class token of the last
stage, odd image sizes; every stage's map, the class token and the logits <= 1e-4 of the
output scale; bf16 / int8."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import tfcore
from tfcore import models


def _hf(cls=None, **kw):
    # depth[s] > s: transformers indexes its drop-path rates by the stage number
    cfg = transformers.CvtConfig(
        **{**dict(embed_dim=[16, 24, 32], num_heads=[1, 2, 4], depth=[1, 2, 3], num_labels=5), **kw}
    )
    torch.manual_seed(0)
    model = (cls or transformers.CvtModel)(cfg).eval()
    with torch.no_grad():  # HF sets BatchNorm statistics and norms to constants
        for name, buf in model.named_buffers():
            if "running_mean" in name:
                buf.copy_(0.3 * torch.randn_like(buf))
            elif "running_var" in name:
                buf.copy_(torch.rand_like(buf) + 0.5)
        for name, p in model.named_parameters():
            if "normalization" in name or "layernorm" in name:
                p.add_(0.3 * torch.randn_like(p))
    return model


def _close(a, b, tol=1e-4):
    b = b.numpy() if isinstance(b, torch.Tensor) else b
    assert a.shape == tuple(b.shape), (a.shape, tuple(b.shape))
    scale = float(np.abs(b).max())
    err = float(np.abs(a - b).max())
    assert err < tol * max(scale, 1.0), (err, scale)


@pytest.mark.parametrize("size", [(64, 64), (45, 53), (33, 37)])
def test_cvt_matches_hf(rng, tmp_path_factory, size):
    """45x53: every stage's map odd-sized (12x14 -> 6x7 -> 3x4), K/V maps at stride 2 of odd
    maps; 33x37 -> 3x3 in the last stage."""
    d = tmp_path_factory.mktemp("cvt")
    ref = _hf()
    ref.save_pretrained(d)
    ours = models.CvtModel.from_pretrained(d)
    px = rng.standard_normal((2, 3) + size).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(px), output_hidden_states=True)
    got = ours(px, output_hidden_states=True)
    _close(got.last_hidden_state, want.last_hidden_state)
    _close(got.cls_token_value, want.cls_token_value)
    assert len(got.hidden_states) == len(want.hidden_states) == 3
    for a, b in zip(got.hidden_states, want.hidden_states, strict=True):
        _close(a, b)


@pytest.mark.parametrize(
    "options",
    [
        dict(cls_token=[False, False, False]),  # mean-pooled head
        dict(
            qkv_bias=[False, True, False],
            stride_kv=[1, 2, 2],
            kernel_qkv=[3, 5, 3],
            padding_kv=[1, 2, 1],
            padding_q=[1, 2, 1],
        ),
    ],
    ids=["no-cls", "no-bias-kernel5"],
)
def test_cvt_image_classification_matches_hf(rng, tmp_path, options):
    ref = _hf(transformers.CvtForImageClassification, **options)
    ref.save_pretrained(tmp_path)
    ours = tfcore.AutoModel.from_pretrained(tmp_path)
    assert isinstance(ours, models.CvtModel)
    ours = models.CvtForImageClassification.from_pretrained(tmp_path)
    px = rng.standard_normal((3, 3, 47, 41)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(px), output_hidden_states=True)
    got = ours(px, output_hidden_states=True)
    _close(got.logits, want.logits)
    for a, b in zip(got.hidden_states, want.hidden_states, strict=True):
        _close(a, b)


@pytest.mark.parametrize("dtype,tol", [("bfloat16", 0.03), ("int8", 0.1)])
def test_cvt_low_precision(rng, tmp_path, dtype, tol):
    """bf16 / int8 projections and convolutions against the fp32 model, relative to the output
    scale (a few roundings of 2^-8, or activation steps of 1/127 of a row's or map's range,
    through 6 pre-norm layers)."""
    if dtype not in tfcore.supported_dtypes():
        pytest.skip(f"{dtype} matmul not available on this CPU")
    _hf(transformers.CvtForImageClassification).save_pretrained(tmp_path)
    px = rng.standard_normal((2, 3, 49, 45)).astype(np.float32)
    want = models.CvtForImageClassification.from_pretrained(tmp_path)(px, output_hidden_states=True)
    low = models.CvtForImageClassification.from_pretrained(tmp_path, dtype=dtype)
    assert low.dtype == dtype
    got = low(px, output_hidden_states=True)
    scale = float(np.abs(want.hidden_states[-1]).max())
    assert np.abs(got.hidden_states[-1] - want.hidden_states[-1]).max() < tol * scale
    assert np.abs(got.logits - want.logits).max() < tol * max(1.0, float(np.abs(want.logits).max()))


def test_cvt_rejects_bad_pixels(tmp_path):
    _hf().save_pretrained(tmp_path)
    model = models.CvtModel.from_pretrained(tmp_path)
    with pytest.raises(tfcore.TfcoreValueError, match="too small"):
        model(np.zeros((1, 3, 2, 30), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match=r"\(batch, 3, height, width\)"):
        model(np.zeros((1, 1, 32, 32), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="NaN"):
        model(np.full((1, 3, 32, 32), np.nan, np.float32))
