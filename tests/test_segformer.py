"""SegformerModel, SegformerForImageClassification and SegformerForSemanticSegmentation against
transformers (eval, eager) on tiny random checkpoints written with save_pretrained: image sizes
not multiples of the strides, every stage's hidden state, every block's attention weights and
the decoder's logits at the first stage's resolution <= 1e-4 of the output scale (the decoder's
projections, fuse and BatchNorm folded at load); bf16 / int8."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers

import tfcore
from tfcore import models
from tfcore.models.segformer import resize_bilinear


def _hf(cls=None, **kw):
    cfg = transformers.SegformerConfig(
        **{
            **dict(
                num_encoder_blocks=3,
                depths=[1, 2, 1],
                hidden_sizes=[8, 16, 24],
                num_attention_heads=[1, 2, 3],
                sr_ratios=[4, 2, 1],
                mlp_ratios=[2, 2, 2],
                decoder_hidden_size=12,
                num_labels=5,
                attn_implementation="eager",
            ),
            **kw,
        }
    )
    torch.manual_seed(0)
    model = (cls or transformers.SegformerForSemanticSegmentation)(cfg).eval()
    with torch.no_grad():  # HF initialises biases to 0, norms to 1, BatchNorm statistics to 0 / 1
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return model


def _pixels(rng, B, H, W):
    return rng.standard_normal((B, 3, H, W)).astype(np.float32)


def _close(a, b):
    b = b.numpy() if isinstance(b, torch.Tensor) else b
    assert a.shape == tuple(b.shape)
    scale = float(np.abs(b).max())
    err = float(np.abs(a - b).max())
    # float32 through ~10 GEMMs / convolutions with K <= 200 terms (the folded decoder's
    # weights are rounded once from float64): ~1e-6 of the scale
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
    for a, b in zip(got.attentions, want.attentions, strict=True):
        _close(a, b)
    return got


@pytest.mark.parametrize("size", [(32, 32), (37, 45), (29, 23)])
def test_semantic_segmentation_matches_hf(rng, tmp_path_factory, path, size):
    """Logits (B, labels, h0, w0) at the first stage's resolution (37x45 -> 10x12): the
    bilinear upsampling of the 5x6 and 3x3 maps, the folded fuse + BatchNorm + ReLU and the
    classifier; on every kernel level."""
    d = tmp_path_factory.mktemp("segformer")
    ref = _hf()
    ref.save_pretrained(d)
    ours = models.SegformerForSemanticSegmentation.from_pretrained(d)
    assert ours.unexpected_keys == []
    got = _compare(ref, ours, _pixels(rng, 2, *size))
    assert got.logits.shape == (2, 5, (size[0] - 1) // 4 + 1, (size[1] - 1) // 4 + 1)


def test_segformer_model_and_classifier(rng, tmp_path):
    ref = _hf(transformers.SegformerForImageClassification, num_labels=4, sr_ratios=[2, 2, 1])
    ref.save_pretrained(tmp_path)
    ours = models.SegformerForImageClassification.from_pretrained(tmp_path)
    assert ours.unexpected_keys == []
    _compare(ref, ours, _pixels(rng, 2, 41, 35))
    base = tfcore.AutoModel.from_pretrained(tmp_path)  # the encoder under "segformer."
    assert type(base) is models.SegformerModel
    _compare(ref.segformer, base, _pixels(rng, 1, 33, 27))
    auto = tfcore.AutoModelForImageClassification.from_pretrained(tmp_path)
    assert type(auto) is models.SegformerForImageClassification
    assert auto.id2label == {i: f"LABEL_{i}" for i in range(4)} and auto.num_labels == 4  # as HF's config
    px = _pixels(rng, 2, 29, 31)
    np.testing.assert_array_equal(auto(px).logits, ours(px).logits)


def test_auto_semantic_segmentation(rng, tmp_path):
    """AutoModelForSemanticSegmentation gives SegformerForSemanticSegmentation; a checkpoint
    whose model_type has no such head (BERT) is refused naming the task."""
    _hf().save_pretrained(tmp_path / "seg")
    auto = tfcore.AutoModelForSemanticSegmentation.from_pretrained(tmp_path / "seg")
    assert type(auto) is models.SegformerForSemanticSegmentation
    px = _pixels(rng, 1, 37, 45)
    direct = models.SegformerForSemanticSegmentation.from_pretrained(tmp_path / "seg")
    np.testing.assert_array_equal(auto(px).logits, direct(px).logits)
    transformers.BertModel(
        transformers.BertConfig(
            vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
        )
    ).save_pretrained(tmp_path / "bert")
    for auto_cls in (tfcore.AutoModelForSemanticSegmentation, tfcore.AutoModelForImageClassification):
        with pytest.raises(tfcore.CheckpointError, match="bert"):
            auto_cls.from_pretrained(tmp_path / "bert")


def test_resize_bilinear_matches_torch(rng):
    for (h, w), (H, W) in (((3, 3), (10, 12)), ((5, 6), (10, 12)), ((10, 12), (10, 12)), ((7, 2), (3, 9))):
        x = rng.standard_normal((2, h, w, 4)).astype(np.float32)
        want = torch.nn.functional.interpolate(
            torch.from_numpy(x).permute(0, 3, 1, 2), size=(H, W), mode="bilinear", align_corners=False
        ).permute(0, 2, 3, 1)
        out = np.empty((2, H, W, 4), np.float32)
        resize_bilinear(x, H, W, out)
        np.testing.assert_allclose(out, want.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype,tol", [("bfloat16", 0.02), ("int8", 0.1)])
def test_segformer_low_precision(rng, tmp_path, dtype, tol):
    """bf16 / int8 against the fp32 model, relative to the logits' scale: bf16 rounds weights
    and inputs to 8 mantissa bits over ~20 chained GEMMs / convolutions; int8 rounds every
    activation to 1/127 of its tensor's range. Same bounds as PVT v2 (the same blocks).
    Measured: bf16 0.0048, int8 0.014 (VNNI) / 0.020 (AVX2 path)."""
    if dtype not in tfcore.supported_dtypes():
        pytest.skip(f"{dtype} matmul not available on this CPU")
    _hf().save_pretrained(tmp_path)
    px = _pixels(rng, 2, 37, 45)
    want = models.SegformerForSemanticSegmentation.from_pretrained(tmp_path)(px)
    low = models.SegformerForSemanticSegmentation.from_pretrained(tmp_path, dtype=dtype)
    assert low.dtype == dtype
    got = low(px)
    assert np.abs(got.logits - want.logits).max() < tol * np.abs(want.logits).max()


def test_bad_inputs_and_config(rng, tmp_path):
    _hf().save_pretrained(tmp_path)
    ours = models.SegformerForSemanticSegmentation.from_pretrained(tmp_path)
    with pytest.raises(tfcore.TfcoreValueError, match="3, height, width"):
        ours(_pixels(rng, 1, 32, 32)[:, :1])
    with pytest.raises(tfcore.TfcoreValueError, match="NaN"):
        ours(np.full((1, 3, 32, 32), np.inf, np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="too small"):
        ours(_pixels(rng, 1, 8, 8))
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["reshape_last_stage"] = False
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(tfcore.CheckpointError, match="reshape_last_stage"):
        models.SegformerForSemanticSegmentation.from_pretrained(tmp_path)
