"""CLIPModel, CLIPVisionModel and CLIPTextModel against transformers (eval, eager) on tiny
random checkpoints written with save_pretrained."""

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
    max_position_embeddings=20,
    bos_token_id=0,
    eos_token_id=2,
)
VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, patch_size=6)
IDS = np.array([[0, 5, 7, 98, 2, 1, 1], [0, 9, 2, 1, 1, 1, 1], [0, 3, 4, 5, 6, 7, 2]])
MASK = np.array([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]])


def rel(got, want):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-6))


def features(out):
    """get_*_features returns the tensor (transformers 4) or an output whose pooler_output it
    is (transformers 5)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@pytest.fixture(
    scope="module", params=[(30, 2, "quick_gelu"), (31, 7, "gelu")], ids=["30px-eos2", "31px-eos7"]
)
def clip_dir(request, tmp_path_factory):
    """image_size 31 is not a multiple of the patch (the last pixel row/column is unused);
    eos_token_id 7 pools at the first eos instead of the highest id; gelu vs quick_gelu."""
    size, eos, act = request.param
    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(
        text_config={**TEXT, "eos_token_id": eos, "hidden_act": act},
        vision_config={**VISION, "image_size": size, "hidden_act": act},
        projection_dim=16,
    )
    model = transformers.CLIPModel(cfg).eval()
    d = tmp_path_factory.mktemp("clip")
    model.save_pretrained(d)
    return d, model, size


def test_clip_model_matches_hf(clip_dir, rng):
    d, hf, size = clip_dir
    ours = tfcore.AutoModel.from_pretrained(d)
    assert isinstance(ours, tfcore.models.CLIPModel) and ours.unexpected_keys == []
    px = rng.standard_normal((3, 3, size, size)).astype(np.float32)
    ids, mask = IDS.copy(), MASK
    if hf.config.text_config.eos_token_id == 7:
        ids[:, 4] = 7  # the eos token sits mid-sequence
    t_ids, t_px, t_mask = torch.from_numpy(ids), torch.from_numpy(px), torch.from_numpy(mask)
    with torch.no_grad():
        ref = hf(input_ids=t_ids, pixel_values=t_px, attention_mask=t_mask)
        vis = hf.vision_model(pixel_values=t_px, output_hidden_states=True)
        txt = hf.text_model(input_ids=t_ids, attention_mask=t_mask, output_hidden_states=True)
        img_feat = features(hf.get_image_features(pixel_values=t_px))
        txt_feat = features(hf.get_text_features(input_ids=t_ids, attention_mask=t_mask))
    got = ours(input_ids=ids, pixel_values=px, attention_mask=mask, output_hidden_states=True)
    for key in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"):
        assert got[key].shape == tuple(getattr(ref, key).shape)
        assert rel(got[key], getattr(ref, key)) < 1e-4, key
    # every hidden state of both towers, and the pooled outputs
    for ours_out, hf_out in ((got.vision_model_output, vis), (got.text_model_output, txt)):
        assert len(ours_out.hidden_states) == len(hf_out.hidden_states) == 3
        for a, b in zip(ours_out.hidden_states, hf_out.hidden_states):
            if ours_out is got.text_model_output:  # padded positions are don't-cares
                a, b = a[mask.astype(bool)], b.numpy()[mask.astype(bool)]
            assert rel(a, b) < 1e-4
        assert rel(ours_out.pooler_output, hf_out.pooler_output) < 1e-4
    assert rel(ours.get_image_features(px), img_feat) < 1e-4
    assert rel(ours.get_text_features(ids, attention_mask=mask), txt_feat) < 1e-4


def test_towers_alone_match_hf(clip_dir, rng, tmp_path):
    d, hf, size = clip_dir
    px = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    torch.manual_seed(1)
    vis_hf = transformers.CLIPVisionModel(hf.config.vision_config).eval()
    vis_hf.save_pretrained(tmp_path / "vision")
    txt_hf = transformers.CLIPTextModel(hf.config.text_config).eval()
    txt_hf.save_pretrained(tmp_path / "text")
    vis, txt = (tfcore.AutoModel.from_pretrained(tmp_path / n) for n in ("vision", "text"))
    assert type(vis).__name__ == "CLIPVisionModel" and type(txt).__name__ == "CLIPTextModel"
    with torch.no_grad():
        rv = vis_hf(pixel_values=torch.from_numpy(px), output_attentions=True)
        rt = txt_hf(input_ids=torch.from_numpy(IDS[2:]))
    gv = vis(px, output_attentions=True)
    assert rel(gv.last_hidden_state, rv.last_hidden_state) < 1e-4
    assert rel(gv.pooler_output, rv.pooler_output) < 1e-4
    for a, b in zip(gv.attentions, rv.attentions):
        assert rel(a, b) < 1e-4
    gt = txt(IDS[2:])
    assert rel(gt.last_hidden_state, rt.last_hidden_state) < 1e-4
    assert rel(gt.pooler_output, rt.pooler_output) < 1e-4


@pytest.mark.parametrize("dtype,bound", [("bfloat16", 3e-2), ("int8", 8e-2)])
def test_reduced_precision_features(clip_dir, rng, dtype, bound):
    """bf16 / int8 projections (norms, softmax and embeddings stay fp32): the features stay
    close to fp32 HF (bounds: measured worst over both configs x3), and the zero-shot ranking
    of a clearly separated pair is unchanged."""
    d, hf, size = clip_dir
    ours = tfcore.AutoModel.from_pretrained(d, dtype=dtype)
    px = rng.standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        want = features(hf.get_image_features(pixel_values=torch.from_numpy(px)))
        want_t = features(
            hf.get_text_features(input_ids=torch.from_numpy(IDS), attention_mask=torch.from_numpy(MASK))
        )
    assert rel(ours.get_image_features(px), want) < bound
    assert rel(ours.get_text_features(IDS, attention_mask=MASK), want_t) < bound


def test_bad_inputs(clip_dir, rng):
    d, hf, size = clip_dir
    ours = tfcore.AutoModel.from_pretrained(d)
    with pytest.raises(tfcore.TfcoreValueError, match="doesn't match model"):
        ours.get_image_features(rng.standard_normal((1, 3, size + 6, size)).astype(np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="3, height, width"):
        ours.get_image_features(rng.standard_normal((1, 4, size, size)).astype(np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="NaN"):
        ours.get_image_features(np.full((1, 3, size, size), np.nan, np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="max_position_embeddings"):
        ours.get_text_features(np.ones((1, 21), np.int64))
    with pytest.raises(tfcore.TfcoreValueError, match="outside"):
        ours.get_text_features(np.array([[0, 99]]))
    with pytest.raises(tfcore.TfcoreValueError, match="both"):
        ours(input_ids=IDS)


def test_zero_shot_and_image_embeddings_end_to_end(tmp_path, rng):
    """tfcore.eval.zero_shot_classify / embed_images on image files, PIL images and arrays,
    from the model directory's preprocessor_config.json and tokenizer.json, against HF's
    processor and CLIPModel on the same token ids: softmax(logits_per_image)."""
    import PIL.Image
    from tiny_models import save_tiny_tokenizer

    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(
        text_config={**TEXT, "vocab_size": 60, "eos_token_id": 1},  # "<|endoftext|>" of the tiny tokenizer
        vision_config={**VISION, "image_size": 24},
        projection_dim=16,
    )
    hf = transformers.CLIPModel(cfg).eval()
    d = tmp_path / "clip"
    hf.save_pretrained(d)
    save_tiny_tokenizer(d)
    proc_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    proc_cls(size={"shortest_edge": 24}, crop_size={"height": 24, "width": 24}).save_pretrained(d)
    hf_proc = proc_cls.from_pretrained(d)
    ims = [rng.integers(0, 256, size=(37 + 9 * i, 50 - 7 * i, 3), dtype=np.uint8) for i in range(5)]
    PIL.Image.fromarray(ims[0]).save(tmp_path / "a.png")
    given = [str(tmp_path / "a.png"), PIL.Image.fromarray(ims[1])] + ims[2:]
    labels = ["w3 w4", "w7", "w9 w9 w2"]
    model = tfcore.AutoModel.from_pretrained(d)
    probs = tfcore.eval.zero_shot_classify(model, given, labels, template="w5 {} <|endoftext|>", batch_size=2)
    tok = tfcore.text.load_tokenizer(d)
    enc = tok.encode_batch([f"w5 {x} <|endoftext|>" for x in labels])
    ids = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc])
    px = torch.from_numpy(hf_proc([PIL.Image.fromarray(a) for a in ims], return_tensors="np")["pixel_values"])
    with torch.no_grad():
        want = hf(input_ids=ids, pixel_values=px, attention_mask=mask).logits_per_image.softmax(-1).numpy()
        img = features(hf.get_image_features(pixel_values=px)).numpy()
    assert probs.shape == (5, 3)
    assert np.abs(probs - want).max() < 1e-5  # probabilities: fp32 logits within 1e-4 relative
    emb = tfcore.eval.embed_images(model, given, batch_size=3)
    img /= np.linalg.norm(img, axis=-1, keepdims=True)
    assert np.abs(emb - img).max() < 1e-5
    with pytest.raises(tfcore.TfcoreValueError, match="labels"):
        tfcore.eval.zero_shot_classify(model, given, [])
    with pytest.raises(tfcore.TfcoreValueError, match="template"):
        tfcore.eval.zero_shot_classify(model, given, labels, template="no slot")
    with pytest.raises(tfcore.TfcoreValueError, match="empty"):
        tfcore.eval.embed_images(model, [])


def test_cli_images_embeds_and_classifies_files(tmp_path, rng):
    """`tfcore images DIR FILES [--labels ...]` in a child process: the printed probabilities and
    saved embeddings are tfcore.eval's (checked against HF above)."""
    import subprocess
    import sys

    import PIL.Image
    from conftest import package_parent
    from tiny_models import save_tiny_tokenizer

    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(
        text_config={**TEXT, "vocab_size": 60, "eos_token_id": 1},
        vision_config={**VISION, "image_size": 24},
        projection_dim=16,
    )
    d = tmp_path / "clip"
    transformers.CLIPModel(cfg).eval().save_pretrained(d)
    save_tiny_tokenizer(d)
    proc_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    proc_cls(size={"shortest_edge": 24}, crop_size=24).save_pretrained(d)
    files = []
    for i in range(3):
        files.append(str(tmp_path / f"im{i}.png"))
        PIL.Image.fromarray(rng.integers(0, 256, size=(30 + i, 41, 3), dtype=np.uint8)).save(files[-1])

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "tfcore", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=package_parent(),
        )

    labels = ["w3 w4", "w7", "w9"]
    out = cli(
        "images", d, *files, "--labels", ",".join(labels), "--template", "w5 {} <|endoftext|>", "--top-k", "2"
    )
    assert out.returncode == 0, out.stderr
    model = tfcore.AutoModel.from_pretrained(d)
    probs = tfcore.eval.zero_shot_classify(model, files, labels, template="w5 {} <|endoftext|>")
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and "classified 3 images over 3 labels" in out.stderr
    for line, f, row in zip(lines, files, probs):
        best = np.argsort(-row, kind="stable")[:2]
        assert line == f"{f}: " + ", ".join(f"{labels[j]} {row[j]:.3f}" for j in best)
    out = cli("images", d, *files, "--save", tmp_path / "e.npy")
    assert out.returncode == 0, out.stderr
    np.testing.assert_allclose(np.load(tmp_path / "e.npy"), tfcore.eval.embed_images(model, files), atol=1e-6)
    assert len(out.stdout.splitlines()) == 3  # the cosine table
    bad = cli("images", d, tmp_path / "missing.png")
    assert bad.returncode == 1 and "missing.png" in bad.stderr
