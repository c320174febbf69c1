"""wav2vec 2.0 and HuBERT (issue 20) against Hugging Face transformers on tiny random models:
every hidden state, the convolution features, attention maps and CTC logits, on a padded batch,
for both feature-encoder layouts (GroupNorm + post-norm layers, the base configs; LayerNorm +
pre-norm "stable" layers, the large ones); the feature extractor and CTC decoding against HF's
Wav2Vec2FeatureExtractor and Wav2Vec2CTCTokenizer.

Tolerance: float32 on both sides through 3 convolutions and 2 layers of width 36; outputs are
LayerNorm-scale (O(1)); observed differences <= 2e-5 (padded rows) — TOL = 1e-4 (a wrong weight
norm, padding frame or norm placement moves them by O(0.1))."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tfcore
from tfcore import models

TOL = 1e-4
N = 1601  # samples: 79 frames through kernels 10,3,3 / strides 5,2,2


def _save(path, cls_name, stable, **kw):
    import transformers

    cfg_cls = transformers.HubertConfig if cls_name.startswith("Hubert") else transformers.Wav2Vec2Config
    values = dict(
        vocab_size=37, hidden_size=36, num_hidden_layers=2, num_attention_heads=3, intermediate_size=53,
        conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, feat_extract_norm="layer" if stable else "group",
        do_stable_layer_norm=stable, conv_bias=stable, attn_implementation="eager",
    )  # fmt: skip
    values.update(kw)
    cfg = cfg_cls(**values)
    torch.manual_seed(0)
    ref = getattr(transformers, cls_name)(cfg).eval()
    ref.save_pretrained(path, safe_serialization=True)
    return ref


def _batch(rng):
    x = rng.standard_normal((2, N)).astype(np.float32)
    mask = np.ones((2, N), np.int64)
    mask[1, 1000:] = 0
    x[1, 1000:] = 0
    return x, mask


@pytest.mark.parametrize("stable", [False, True], ids=["group-postnorm", "layer-prenorm"])
@pytest.mark.parametrize("name", ["Wav2Vec2Model", "Wav2Vec2ForCTC", "HubertModel", "HubertForCTC"])
def test_matches_hf(rng, tmp_path, name, stable):
    ref = _save(tmp_path, name, stable)
    auto = tfcore.AutoModelForCTC if name.endswith("CTC") else tfcore.AutoModel
    ours = auto.from_pretrained(tmp_path)
    assert type(ours).__name__ == name and ours.unexpected_keys == []
    x, mask = _batch(rng)
    with torch.no_grad():
        want = ref(
            torch.from_numpy(x),
            attention_mask=torch.from_numpy(mask),
            output_hidden_states=True,
            output_attentions=True,
        )
    got = ours(x, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    for key in ("logits", "last_hidden_state", "extract_features"):
        if key in want:
            assert got[key].shape == tuple(want[key].shape), key
            assert np.abs(got[key] - want[key].numpy()).max() < TOL, key
    assert len(got.hidden_states) == len(want.hidden_states)
    for a, b in zip(got.hidden_states, want.hidden_states):
        assert np.abs(a - b.numpy()).max() < TOL
    for a, b in zip(got.attentions, want.attentions):
        assert np.abs(a - b.numpy()).max() < TOL
    # one clip alone equals its row of the batch (frames its samples make)
    alone = ours(x[1:, :1000])
    key = "logits" if "logits" in want else "last_hidden_state"
    T = alone[key].shape[1]
    with torch.no_grad():
        want_alone = ref(torch.from_numpy(x[1:, :1000]))[key].numpy()
    assert np.abs(alone[key] - want_alone).max() < TOL and T == 49


def test_feature_extractor_matches_hf(rng, tmp_path):
    from transformers import Wav2Vec2FeatureExtractor as HF

    clips = [rng.standard_normal(n).astype(np.float32) * 0.3 + 0.1 for n in (1600, 977)]
    for with_mask in (False, True):
        hf = HF(return_attention_mask=with_mask)
        hf.save_pretrained(tmp_path)
        ours = models.Wav2Vec2FeatureExtractor.from_pretrained(tmp_path)
        want = hf(clips, sampling_rate=16000, padding=True, return_tensors="np")
        got = ours(clips, sampling_rate=16000)
        assert got["input_values"].dtype == np.float32
        assert np.abs(got["input_values"] - want["input_values"]).max() < 1e-6
        assert ("attention_mask" in got) == with_mask
        if with_mask:
            np.testing.assert_array_equal(got["attention_mask"], want["attention_mask"])
    with pytest.raises(tfcore.TfcoreValueError, match="resample"):
        ours(clips, sampling_rate=8000)


def _vocab(tmp_path):
    chars = ["<pad>", "<s>", "</s>", "<unk>", "|"] + list("abcdefghijklmnopqrstuvwxyz'") + list("01234")
    vocab = {c: i for i, c in enumerate(chars)}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    return vocab


def test_ctc_decode_matches_hf_tokenizer(rng, tmp_path):
    from transformers import Wav2Vec2CTCTokenizer

    vocab = _vocab(tmp_path)
    tok = Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"))
    inv = {i: c for c, i in vocab.items()}
    # runs of repeats, blanks between repeats (kept twice), delimiters at the ends
    rows = [rng.choice([0, 0, 0, 4, 5, 6, 7, 8, 9, 30, 3], size=60) for _ in range(40)]
    rows.append(np.array([4, 4, 5, 5, 0, 5, 4, 0, 0, 6, 4]))
    want = tok.batch_decode(rows)
    assert models.ctc_decode(rows, inv, blank_id=0) == want


def test_transcribe_is_ctc_decode_of_the_argmax(rng, tmp_path):
    """transcribe() = argmax over HF's logits, decoded by HF's tokenizer, per clip; padded
    frames of a shorter clip are not decoded."""
    from transformers import Wav2Vec2CTCTokenizer

    ref = _save(tmp_path, "Wav2Vec2ForCTC", False)
    _vocab(tmp_path)
    tok = Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"))
    ours = tfcore.AutoModelForCTC.from_pretrained(tmp_path)
    x, mask = _batch(rng)
    with torch.no_grad():
        ids = ref(torch.from_numpy(x), attention_mask=torch.from_numpy(mask)).logits.argmax(-1).numpy()
    want = [tok.decode(ids[0]), tok.decode(ids[1][:49])]
    assert ours.transcribe(x, attention_mask=mask) == want


# bf16: 8-bit mantissas. int8: the convolution stem quantizes each call's input with one scale
# for the whole tensor, and CPUs without VNNI use 7-bit weights (oneDNN's AVX2 int8 GEMM): measured
# 0.07 (AVX-512 VNNI) and 0.12 (AVX2) of the logits' scale on this tiny model.
@pytest.mark.parametrize("dtype,tol", [("bfloat16", 0.05), ("int8", 0.2)])
def test_bf16_and_int8_load_and_run(rng, tmp_path, dtype, tol):
    if dtype not in tfcore.supported_dtypes():
        pytest.skip(f"{dtype} is not supported on this CPU")
    _save(tmp_path, "Wav2Vec2ForCTC", False)
    x, mask = _batch(rng)
    full = tfcore.AutoModelForCTC.from_pretrained(tmp_path)(x, attention_mask=mask).logits
    low = tfcore.AutoModelForCTC.from_pretrained(tmp_path, dtype=dtype)(x, attention_mask=mask).logits
    assert np.isfinite(low).all()
    assert np.abs(full - low).max() < tol * np.abs(full).max()


@pytest.mark.parametrize(
    "make,error,words",
    [
        (lambda: np.zeros((1, 20), np.float32), tfcore.TfcoreValueError, "too short"),
        (lambda: np.zeros((1, N), np.int16), tfcore.TfcoreTypeError, "float"),
        (lambda: np.full((1, N), np.nan, np.float32), tfcore.TfcoreValueError, "NaN"),
        (lambda: np.zeros((1, 2, N), np.float32), tfcore.TfcoreValueError, "batch, samples"),
        (lambda: np.zeros((0, N), np.float32), tfcore.TfcoreValueError, "empty"),
    ],
)
def test_bad_audio_raises(tmp_path, make, error, words):
    _save(tmp_path, "Wav2Vec2Model", False)
    model = tfcore.AutoModel.from_pretrained(tmp_path)
    with pytest.raises(error, match=words):
        model(make())


def test_transcribe_needs_a_vocabulary(rng, tmp_path):
    _save(tmp_path, "HubertForCTC", True)
    model = tfcore.AutoModelForCTC.from_pretrained(tmp_path)
    with pytest.raises(tfcore.TfcoreValueError, match="vocab.json"):
        model.transcribe(_batch(rng)[0])
    with pytest.raises(tfcore.TfcoreValueError, match="not in the vocabulary"):
        models.ctc_decode([[1, 2, 99]], {1: "a", 2: "b"})


@pytest.mark.parametrize("kernel,groups", [(15, 4), (16, 1), (7, 12)])
def test_positional_convolution_kernels(rng, tmp_path, kernel, groups):
    """The positional convolution as per-group GEMMs over windows: odd kernels (no frame cut),
    one group, groups of 3 channels."""
    ref = _save(
        tmp_path, "Wav2Vec2Model", False, num_conv_pos_embeddings=kernel, num_conv_pos_embedding_groups=groups
    )
    ours = tfcore.AutoModel.from_pretrained(tmp_path)
    x, mask = _batch(rng)
    with torch.no_grad():
        want = ref(torch.from_numpy(x), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
    assert np.abs(ours(x, attention_mask=mask).last_hidden_state - want).max() < TOL
