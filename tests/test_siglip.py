"""SiglipModel, SiglipVisionModel, SiglipTextModel and SiglipForImageClassification against
transformers (eval, eager) on tiny random checkpoints written with save_pretrained."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import tfcore

TEXT = dict(
    vocab_size=99,
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=12,
    bos_token_id=0,
    eos_token_id=2,
)
VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, patch_size=6)
IDS = np.array([[5, 7, 98, 2, 1, 1, 1], [9, 2, 1, 1, 1, 1, 1], [3, 4, 5, 6, 7, 8, 2]])
MASK = (IDS != 1).astype(np.int64)


def rel(got, want):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-6))


def features(out):
    """get_*_features returns the tensor (transformers 4) or an output whose pooler_output it
    is (transformers 5)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def randomize_logit_params(model):
    """HF initialises logit_scale and logit_bias to 0: give them values that matter."""
    with torch.no_grad():
        model.logit_scale.fill_(1.3)
        model.logit_bias.fill_(-2.5)


@pytest.fixture(
    scope="module", params=[(30, "gelu_pytorch_tanh"), (31, "quick_gelu")], ids=["30px", "31px-quick-gelu"]
)
def siglip_dir(request, tmp_path_factory):
    """image_size 31 is not a multiple of the patch (the last pixel row/column is unused)."""
    size, act = request.param
    torch.manual_seed(0)
    cfg = transformers.SiglipConfig(
        text_config={**TEXT, "hidden_act": act},
        vision_config={**VISION, "image_size": size, "hidden_act": act},
    )
    model = transformers.SiglipModel(cfg).eval()
    randomize_logit_params(model)
    d = tmp_path_factory.mktemp("siglip")
    model.save_pretrained(d)
    return d, model, size


def test_siglip_model_matches_hf(siglip_dir, rng):
    d, hf, size = siglip_dir
    ours = tfcore.AutoModel.from_pretrained(d)
    assert isinstance(ours, tfcore.models.SiglipModel) and ours.unexpected_keys == []
    px = rng.standard_normal((3, 3, size, size)).astype(np.float32)
    t_ids, t_px, t_mask = torch.from_numpy(IDS), torch.from_numpy(px), torch.from_numpy(MASK)
    with torch.no_grad():
        ref = hf(input_ids=t_ids, pixel_values=t_px)  # as SigLIP is used: no attention mask
        vis = hf.vision_model(pixel_values=t_px, output_hidden_states=True)
        txt = hf.text_model(input_ids=t_ids, output_hidden_states=True)
        masked = hf.text_model(input_ids=t_ids, attention_mask=t_mask, output_hidden_states=True)
        img_feat = features(hf.get_image_features(pixel_values=t_px))
        txt_feat = features(hf.get_text_features(input_ids=t_ids))
    got = ours(input_ids=IDS, pixel_values=px, output_hidden_states=True)
    for key in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"):
        assert got[key].shape == tuple(getattr(ref, key).shape)
        assert rel(got[key], getattr(ref, key)) < 1e-4, key
    # every hidden state of both towers, the post-norm states and the pooled outputs
    for ours_out, hf_out in ((got.vision_model_output, vis), (got.text_model_output, txt)):
        assert len(ours_out.hidden_states) == len(hf_out.hidden_states) == 3
        for a, b in zip(ours_out.hidden_states, hf_out.hidden_states):
            assert rel(a, b) < 1e-4
        assert rel(ours_out.last_hidden_state, hf_out.last_hidden_state) < 1e-4
        assert rel(ours_out.pooler_output, hf_out.pooler_output) < 1e-4
    assert rel(ours.get_image_features(px), img_feat) < 1e-4
    assert rel(ours.get_text_features(IDS), txt_feat) < 1e-4
    # with a padding mask: keys masked, every position computed (the pooled one is padding)
    gm = ours.text_model(IDS, MASK, None, True, False)
    for a, b in zip(gm.hidden_states, masked.hidden_states):
        assert rel(a, b) < 1e-4
    assert rel(gm.pooler_output, masked.pooler_output) < 1e-4


def test_towers_alone_match_hf(siglip_dir, rng, tmp_path):
    d, hf, size = siglip_dir
    px = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    torch.manual_seed(1)
    vis_hf = transformers.SiglipVisionModel(hf.config.vision_config).eval()
    vis_hf.set_attn_implementation("eager")  # SDPA returns no attention weights
    vis_hf.save_pretrained(tmp_path / "vision")
    txt_hf = transformers.SiglipTextModel(hf.config.text_config).eval()
    txt_hf.set_attn_implementation("eager")
    txt_hf.save_pretrained(tmp_path / "text")
    vis, txt = (tfcore.AutoModel.from_pretrained(tmp_path / n) for n in ("vision", "text"))
    assert type(vis).__name__ == "SiglipVisionModel" and type(txt).__name__ == "SiglipTextModel"
    assert vis.unexpected_keys == [] and txt.unexpected_keys == []
    with torch.no_grad():
        rv = vis_hf(pixel_values=torch.from_numpy(px), output_attentions=True)
        rt = txt_hf(input_ids=torch.from_numpy(IDS[2:]), output_attentions=True)
    gv = vis(px, output_attentions=True)
    assert rel(gv.last_hidden_state, rv.last_hidden_state) < 1e-4
    assert rel(gv.pooler_output, rv.pooler_output) < 1e-4
    assert len(gv.attentions) == len(rv.attentions) == 2
    for a, b in zip(gv.attentions, rv.attentions):
        assert rel(a, b) < 1e-4
    gt = txt(IDS[2:], output_attentions=True)
    assert rel(gt.last_hidden_state, rt.last_hidden_state) < 1e-4
    assert rel(gt.pooler_output, rt.pooler_output) < 1e-4
    for a, b in zip(gt.attentions, rt.attentions):
        assert rel(a, b) < 1e-4


def test_vision_without_head_and_interpolated_positions(rng, tmp_path):
    """vision_use_head=False: no pooler_output; interpolate_pos_encoding on a larger,
    non-square image resamples the position grid bicubically as HF does."""
    torch.manual_seed(2)
    cfg = transformers.SiglipVisionConfig(**VISION, image_size=24, vision_use_head=False)
    hf = transformers.SiglipVisionModel(cfg).eval()
    hf.save_pretrained(tmp_path)
    ours = tfcore.AutoModel.from_pretrained(tmp_path)
    assert ours.unexpected_keys == []
    px = rng.standard_normal((2, 3, 37, 43)).astype(np.float32)
    with torch.no_grad():
        want = hf(pixel_values=torch.from_numpy(px), interpolate_pos_encoding=True)
    got = ours(px, interpolate_pos_encoding=True)
    assert got.get("pooler_output") is None and want.pooler_output is None
    assert rel(got.last_hidden_state, want.last_hidden_state) < 1e-4
    with pytest.raises(tfcore.TfcoreValueError, match="interpolate_pos_encoding"):
        ours(px)


def test_image_classification_matches_hf(rng, tmp_path):
    torch.manual_seed(3)
    cfg = transformers.SiglipConfig(
        text_config=TEXT, vision_config={**VISION, "image_size": 29}, num_labels=5
    )
    hf = transformers.SiglipForImageClassification(cfg).eval()
    hf.save_pretrained(tmp_path)
    ours = tfcore.models.SiglipForImageClassification.from_pretrained(tmp_path)
    assert ours.unexpected_keys == [] and ours.num_labels == 5
    px = rng.standard_normal((3, 3, 29, 29)).astype(np.float32)
    with torch.no_grad():
        want = hf(pixel_values=torch.from_numpy(px), output_hidden_states=True)
    got = ours(px, output_hidden_states=True)
    assert got.logits.shape == (3, 5)
    assert rel(got.logits, want.logits) < 1e-4
    for a, b in zip(got.hidden_states, want.hidden_states):
        assert rel(a, b) < 1e-4


@pytest.mark.parametrize("dtype,bound", [("bfloat16", 3e-2), ("int8", 8e-2)])
def test_reduced_precision_features(siglip_dir, rng, dtype, bound):
    """bf16 / int8 projections (norms, softmax, embeddings and the patch convolution stay
    fp32): the features stay close to fp32 HF. Bounds as CLIP's (same block shapes, 2 layers +
    the pooling head: bf16's 8-bit mantissa ~4e-3 per rounding, int8's per-tensor activation
    step ~1/127 of the row's range, compounded over ~6 projections)."""
    d, hf, size = siglip_dir
    ours = tfcore.AutoModel.from_pretrained(d, dtype=dtype)
    px = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        want = features(hf.get_image_features(pixel_values=torch.from_numpy(px)))
        want_t = features(hf.get_text_features(input_ids=torch.from_numpy(IDS)))
    assert rel(ours.get_image_features(px), want) < bound
    assert rel(ours.get_text_features(IDS), want_t) < bound


def test_bad_inputs(siglip_dir, rng):
    d, hf, size = siglip_dir
    ours = tfcore.AutoModel.from_pretrained(d)
    with pytest.raises(tfcore.TfcoreValueError, match="patch grid"):
        ours.get_image_features(rng.standard_normal((1, 3, size + 6, size)).astype(np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="smaller than one"):
        ours.get_image_features(rng.standard_normal((1, 3, 5, 40)).astype(np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="3, height, width"):
        ours.get_image_features(rng.standard_normal((1, 4, size, size)).astype(np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="NaN"):
        ours.get_image_features(np.full((1, 3, size, size), np.nan, np.float32))
    with pytest.raises(tfcore.TfcoreTypeError, match="float32"):
        ours.get_image_features(np.zeros((1, 3, size, size), np.float64))
    with pytest.raises(tfcore.TfcoreValueError, match="max_position_embeddings"):
        ours.get_text_features(np.ones((1, 13), np.int64))
    with pytest.raises(tfcore.TfcoreValueError, match="outside"):
        ours.get_text_features(np.array([[0, 99]]))
    with pytest.raises(tfcore.TfcoreValueError, match="position_ids"):
        ours.get_text_features(IDS, position_ids=np.zeros((3, 2), np.int64))
    with pytest.raises(tfcore.TfcoreValueError, match="both"):
        ours(input_ids=IDS)


def test_zero_shot_sigmoid_end_to_end(tmp_path, rng):
    """tfcore.eval.zero_shot_classify on a SigLIP directory: texts padded to max_length with no
    mask (as SigLIP's processor), HF's SiglipImageProcessorPil pixels, probabilities =
    sigmoid(logits_per_image) of HF's SiglipModel (independent per label, not a softmax)."""
    import PIL.Image
    from tiny_models import save_tiny_tokenizer

    torch.manual_seed(0)
    cfg = transformers.SiglipConfig(
        text_config={**TEXT, "vocab_size": 60, "pad_token_id": 0}, vision_config={**VISION, "image_size": 24}
    )
    hf = transformers.SiglipModel(cfg).eval()
    randomize_logit_params(hf)
    d = tmp_path / "siglip"
    hf.save_pretrained(d)
    save_tiny_tokenizer(d)
    proc_cls = getattr(transformers, "SiglipImageProcessorPil", None) or transformers.SiglipImageProcessor
    proc_cls(size={"height": 24, "width": 24}).save_pretrained(d)
    hf_proc = proc_cls.from_pretrained(d)
    ims = [rng.integers(0, 256, size=(37 + 9 * i, 50 - 7 * i, 3), dtype=np.uint8) for i in range(4)]
    labels = ["w3 w4", "w7", "w9 w9 w2"]
    model = tfcore.AutoModel.from_pretrained(d)
    probs = tfcore.eval.zero_shot_classify(model, ims, labels, template="w5 {}", batch_size=3)
    tok = tfcore.text.load_tokenizer(d)
    ids = np.zeros((3, 12), np.int64)
    for i, e in enumerate(tok.encode_batch([f"w5 {x}" for x in labels])):
        real = [t for t, m in zip(e.ids, e.attention_mask) if m]
        ids[i, : len(real)] = real
    px = torch.from_numpy(hf_proc([PIL.Image.fromarray(a) for a in ims], return_tensors="np")["pixel_values"])
    with torch.no_grad():
        want = torch.sigmoid(hf(input_ids=torch.from_numpy(ids), pixel_values=px).logits_per_image).numpy()
    assert probs.shape == (4, 3)
    assert np.abs(probs - want).max() < 1e-5  # probabilities: fp32 logits within 1e-4 relative
    assert np.abs(probs.sum(axis=1) - 1).max() > 1e-3  # not a softmax
