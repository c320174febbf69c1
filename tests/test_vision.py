"""Vision transformers against Hugging Face: ViT, DeiT, DINOv2 (plain and SwiGLU MLP,
layer scale), DINOv2 with registers; odd image sizes through position-embedding resizing.

Tolerance: float32 on both sides through 2 layers of width <= 60; 3e-5 absolute."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tfcore
from tfcore import models
from tfcore.models.vision import resize_grid

TOL = 3e-5


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def run_both(ref, ours, pixels, **kw):
    with torch.no_grad():
        want = ref(torch.from_numpy(pixels), output_hidden_states=True, output_attentions=True, **kw)
    got = ours(pixels, output_hidden_states=True, output_attentions=True, **kw)
    assert np.abs(got.last_hidden_state - want.last_hidden_state.numpy()).max() < TOL
    for a, b in zip(got.hidden_states, want.hidden_states, strict=True):
        assert np.abs(a - b.numpy()).max() < TOL
    for a, b in zip(got.attentions, want.attentions, strict=True):
        assert np.abs(a - b.numpy()).max() < 1e-5
    if getattr(want, "pooler_output", None) is not None:
        assert np.abs(got.pooler_output - want.pooler_output.numpy()).max() < TOL
    return got


def pixels(rng, B, H, W):
    return rng.standard_normal((B, 3, H, W)).astype(np.float32)


@pytest.mark.parametrize("kind", ["vit", "deit"])
def test_vit_and_deit(rng, tmp_path, kind):
    from transformers import DeiTConfig, DeiTModel, ViTConfig, ViTModel

    Cfg, Model = (ViTConfig, ViTModel) if kind == "vit" else (DeiTConfig, DeiTModel)
    cfg = Cfg(
        image_size=32,
        patch_size=8,
        hidden_size=60,
        num_hidden_layers=2,
        num_attention_heads=5,
        intermediate_size=97,
        attn_implementation="eager",
    )
    ref = Model(cfg).eval()
    ref.save_pretrained(tmp_path)
    ours = tfcore.AutoModel.from_pretrained(tmp_path)
    assert type(ours).__name__ == Model.__name__
    run_both(ref, ours, pixels(rng, 3, 32, 32))
    # other sizes: interpolate_pos_encoding, like HF (odd, non-square, larger)
    run_both(ref, ours, pixels(rng, 2, 40, 56), interpolate_pos_encoding=True)
    run_both(ref, ours, pixels(rng, 1, 17, 33), interpolate_pos_encoding=True)
    with pytest.raises(tfcore.TfcoreValueError, match="interpolate_pos_encoding=True"):
        ours(pixels(rng, 1, 40, 40))


@pytest.mark.parametrize("swiglu", [False, True])
def test_dinov2(rng, tmp_path, swiglu):
    from transformers import Dinov2Config, Dinov2Model

    cfg = Dinov2Config(
        image_size=28,
        patch_size=7,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=3,
        mlp_ratio=2,
        use_swiglu_ffn=swiglu,
        layerscale_value=0.5,
        attn_implementation="eager",
    )
    ref = Dinov2Model(cfg).eval()
    with torch.no_grad():  # random layer scales so folding them is really tested
        for layer in ref.encoder.layer:
            layer.layer_scale1.lambda1.uniform_(0.2, 2.0)
            layer.layer_scale2.lambda1.uniform_(0.2, 2.0)
    ref.save_pretrained(tmp_path)
    ours = tfcore.AutoModel.from_pretrained(tmp_path)
    run_both(ref, ours, pixels(rng, 2, 28, 28))
    run_both(ref, ours, pixels(rng, 2, 35, 49))  # DINOv2 resizes for any size


def test_dinov2_with_registers(rng, tmp_path):
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    cfg = Dinov2WithRegistersConfig(
        image_size=28,
        patch_size=7,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=3,
        mlp_ratio=2,
        num_register_tokens=3,
        attn_implementation="eager",
    )
    ref = Dinov2WithRegistersModel(cfg).eval()
    ref.save_pretrained(tmp_path)
    ours = tfcore.AutoModel.from_pretrained(tmp_path)
    out = run_both(ref, ours, pixels(rng, 2, 28, 28))
    assert out.last_hidden_state.shape == (2, 1 + 3 + 16, 48)  # CLS, registers, patches
    run_both(ref, ours, pixels(rng, 1, 42, 21))  # upsampled one way, downsampled the other (antialias)


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("size", [(3, 5), (8, 8), (11, 2), (7, 13)])
def test_resize_grid_matches_torch_interpolate(rng, antialias, size):
    grid = rng.standard_normal((6, 6, 4)).astype(np.float32)
    t = torch.from_numpy(grid).permute(2, 0, 1)[None]
    want = torch.nn.functional.interpolate(
        t, size=size, mode="bicubic", align_corners=False, antialias=antialias
    )
    got = resize_grid(grid, *size, antialias=antialias)
    assert np.abs(got - want[0].permute(1, 2, 0).numpy()).max() < 1e-5


def test_pixel_value_errors(rng, tmp_path):
    from transformers import ViTConfig, ViTModel

    ViTModel(
        ViTConfig(
            image_size=16,
            patch_size=8,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
        )
    ).save_pretrained(tmp_path)
    ours = models.ViTModel.from_pretrained(tmp_path)
    with pytest.raises(tfcore.TfcoreTypeError, match="float32"):
        ours(np.zeros((1, 3, 16, 16)))
    with pytest.raises(tfcore.TfcoreValueError, match=r"\(batch, 3, height, width\)"):
        ours(np.zeros((1, 1, 16, 16), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="no 8x8 patch"):
        ours(np.zeros((1, 3, 4, 16), np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="NaN"):
        ours(np.full((1, 3, 16, 16), np.nan, np.float32))
