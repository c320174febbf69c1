"""BeitModel and BeitForImageClassification against transformers (eval, eager) on tiny random
checkpoints written with save_pretrained: per-layer and shared relative position biases (the
class-token rows included), layer scale, mean pooling or CLS pooling, absolute positions, odd
image sizes (not multiples of the patch; patch grids other than the config's, where the bias
tables are resized), every hidden state, attention and head <= 1e-4 of the output scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import tfcore
from tfcore import models
from tfcore.models.beit import relative_position_index


def _hf(cls=None, **kw):
    cfg = transformers.BeitConfig(
        **{
            **dict(
                image_size=32,
                patch_size=8,
                hidden_size=32,
                num_hidden_layers=3,
                num_attention_heads=4,
                intermediate_size=48,
                use_relative_position_bias=True,
                use_mean_pooling=True,
                layer_scale_init_value=0.1,
                num_labels=5,
                attn_implementation="eager",
            ),
            **kw,
        }
    )
    torch.manual_seed(0)
    model = (cls or transformers.BeitModel)(cfg).eval()
    with torch.no_grad():  # HF zeroes the bias tables and sets λ, norms and tokens to constants
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name or "lambda_" in name or "norm" in name:
                p.add_(0.3 * torch.randn_like(p))
            elif "cls_token" in name or "position_embeddings" in name:
                p.copy_(torch.randn_like(p))
    return model


def _close(a, b, tol=1e-4):
    b = b.numpy() if isinstance(b, torch.Tensor) else b
    assert a.shape == tuple(b.shape), (a.shape, tuple(b.shape))
    scale = float(np.abs(b).max())
    err = float(np.abs(a - b).max())
    assert err < tol * max(scale, 1.0), (err, scale)


def _compare(ref, ours, px):
    with torch.no_grad():
        want = ref(torch.from_numpy(px), output_hidden_states=True, output_attentions=True)
    got = ours(px, output_hidden_states=True, output_attentions=True)
    for field in ("last_hidden_state", "pooler_output", "logits"):
        if getattr(want, field, None) is not None:
            _close(got[field], getattr(want, field))
    for name in ("hidden_states", "attentions"):
        assert len(got[name]) == len(getattr(want, name))
        for a, b in zip(got[name], getattr(want, name), strict=True):
            _close(a, b)
    return got


def test_relative_position_index_matches_hf():
    for nh, nw in ((4, 4), (3, 5), (1, 2)):
        want = (
            transformers.models.beit.modeling_beit.BeitRelativePositionBias.generate_relative_position_index(
                (nh, nw)
            )
        )
        np.testing.assert_array_equal(relative_position_index(nh, nw), want.numpy())


@pytest.mark.parametrize("size", [(32, 32), (37, 39), (45, 29), (16, 24)])
def test_beit_matches_hf(rng, tmp_path_factory, size):
    """37x39: a 4x4 grid like the config's from an image that is not a multiple of 8 (the
    edge pixels dropped, as the convolution does); 45x29 (5x3) and 16x24 (2x3): other grids,
    the bias tables resized bilinearly as HF does."""
    d = tmp_path_factory.mktemp("beit")
    ref = _hf()
    ref.save_pretrained(d)
    ours = models.BeitModel.from_pretrained(d)
    _compare(ref, ours, rng.standard_normal((2, 3) + size).astype(np.float32))


@pytest.mark.parametrize(
    "options",
    [
        dict(use_relative_position_bias=False, use_shared_relative_position_bias=True),
        dict(use_shared_relative_position_bias=True),  # both: shared + per layer
        dict(use_mean_pooling=False, layer_scale_init_value=0.0),  # CLS pooling, no layer scale
        dict(use_relative_position_bias=False, use_absolute_position_embeddings=True),
    ],
    ids=["shared", "shared+layer", "cls-pool", "absolute"],
)
def test_beit_variants_match_hf(rng, tmp_path, options):
    ref = _hf(**options)
    ref.save_pretrained(tmp_path)
    ours = tfcore.AutoModel.from_pretrained(tmp_path)
    assert isinstance(ours, models.BeitModel)
    _compare(ref, ours, rng.standard_normal((2, 3, 35, 33)).astype(np.float32))
    if options.get("use_absolute_position_embeddings"):  # another grid: bicubic positions
        _compare(ref, ours, rng.standard_normal((1, 3, 24, 40)).astype(np.float32))


def test_beit_image_classification_matches_hf(rng, tmp_path):
    ref = _hf(transformers.BeitForImageClassification)
    ref.save_pretrained(tmp_path)
    ours = models.BeitForImageClassification.from_pretrained(tmp_path)
    got = _compare(ref, ours, rng.standard_normal((3, 3, 33, 41)).astype(np.float32))
    assert got.logits.shape == (3, 5)


@pytest.mark.parametrize("dtype,tol", [("bfloat16", 0.03), ("int8", 0.1)])
def test_beit_low_precision(rng, tmp_path, dtype, tol):
    """bf16 / int8 projections against the fp32 model, relative to the output scale: a few
    roundings of 2^-8 (bf16) or per-row activation steps of 1/127 of the row's range (int8)
    through 3 pre-norm layers, whose residual stream keeps the error relative to the input."""
    if dtype not in tfcore.supported_dtypes():
        pytest.skip(f"{dtype} matmul not available on this CPU")
    _hf(transformers.BeitForImageClassification).save_pretrained(tmp_path)
    px = rng.standard_normal((2, 3, 37, 35)).astype(np.float32)
    want = models.BeitForImageClassification.from_pretrained(tmp_path)(px, output_hidden_states=True)
    low = models.BeitForImageClassification.from_pretrained(tmp_path, dtype=dtype)
    assert low.dtype == dtype
    got = low(px, output_hidden_states=True)
    scale = float(np.abs(want.hidden_states[-1]).max())
    assert np.abs(got.hidden_states[-1] - want.hidden_states[-1]).max() < tol * scale
    assert np.abs(got.logits - want.logits).max() < tol * max(1.0, float(np.abs(want.logits).max()))


def test_beit_rejects_bad_pixels(tmp_path):
    _hf().save_pretrained(tmp_path)
    model = models.BeitModel.from_pretrained(tmp_path)
    with pytest.raises(tfcore.TfcoreValueError, match="holds no 8x8 patch"):
        model(np.zeros((1, 3, 7, 30), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match=r"\(batch, 3, height, width\)"):
        model(np.zeros((1, 4, 32, 32), np.float32))
    with pytest.raises(tfcore.TfcoreTypeError, match="float32"):
        model(np.zeros((1, 3, 32, 32), np.float64))
