"""Whisper timestamps, long-form audio and language detection vs transformers' generate on
tiny random checkpoints (token for token, segments' times and tokens): HF's timestamp logits
rules, its sequential algorithm (30 s windows, seek to the last complete segment) on 30 s and
longer features, greedy and beam; detect_language and the prompt it gives."""

from __future__ import annotations

import numpy as np
import pytest

import tfcore

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from test_whisper import ENGLISH, MULTILINGUAL, save_tiny_whisper  # noqa: E402


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    path = tmp_path_factory.mktemp("whisper_ts")
    hf = save_tiny_whisper(path, dict(ENGLISH, max_initial_timestamp_index=50), seed=1)
    return hf, tfcore.models.WhisperForConditionalGeneration.from_pretrained(path)


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory):
    path = tmp_path_factory.mktemp("whisper_lang")
    langs = {"<|en|>": 50259, "<|de|>": 50261, "<|es|>": 50262, "<|fr|>": 50265}
    hf = save_tiny_whisper(path, dict(MULTILINGUAL, lang_to_id=langs, max_initial_timestamp_index=50), seed=2)
    return hf, tfcore.models.WhisperForConditionalGeneration.from_pretrained(path)


def feats(batch, frames, seed=3):
    return np.random.default_rng(seed).standard_normal((batch, 80, frames)).astype(np.float32)


def check_same(hf, ours, x, **kw):
    with torch.no_grad():
        ref = hf.generate(torch.from_numpy(x), return_segments=True, **kw)
    got = ours.generate(x, return_segments=True, **kw)
    np.testing.assert_array_equal(got["sequences"], ref["sequences"].numpy())
    assert len(got["segments"]) == len(ref["segments"])
    n = 0
    for r_row, g_row in zip(ref["segments"], got["segments"]):
        assert len(g_row) == len(r_row)
        for r, g in zip(r_row, g_row):
            assert g["tokens"].tolist() == r["tokens"].tolist()
            # both in float64 from the same integers: equal up to the last bit of the sums
            assert abs(g["start"] - float(r["start"])) < 1e-9 and abs(g["end"] - float(r["end"])) < 1e-9
            n += 1
    return got, n


@pytest.mark.parametrize("num_beams", [1, 2])
def test_timestamps_30s_match_hf(english, num_beams):
    """30 s features: HF's generate already seeks past the first window's last segment."""
    hf, ours = english
    got, n = check_same(
        hf, ours, feats(2, 3000), return_timestamps=True, num_beams=num_beams, max_new_tokens=40
    )
    first = ENGLISH["no_timestamps_token_id"] + 1
    assert (got["sequences"] >= first).sum() >= 4 and n >= 2  # timestamps were produced


@pytest.mark.parametrize("num_beams", [1, 2])
def test_long_form_matches_hf(english, num_beams):
    """70 s of features: three windows, segments with times past 30 s."""
    hf, ours = english
    got, n = check_same(
        hf, ours, feats(1, 7000), return_timestamps=True, num_beams=num_beams, max_new_tokens=40
    )
    assert n >= 3 and got["segments"][0][-1]["end"] > 60


def test_long_form_last_window_shorter(english):
    """A last window of 900 frames is zero-padded to 3000 as HF does."""
    hf, ours = english
    check_same(hf, ours, feats(1, 3900, seed=4), return_timestamps=True, max_new_tokens=24)


def test_detect_language_matches_hf(multilingual):
    hf, ours = multilingual
    x = feats(4, 3000, seed=5)
    with torch.no_grad():
        ref = hf.detect_language(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(ours.detect_language(x), ref)
    enc = ours.encode(x)[0]
    np.testing.assert_array_equal(ours.detect_language(encoder_outputs=enc), ref)


@pytest.mark.parametrize("timestamps", [False, True])
def test_generate_detects_language_like_hf(multilingual, timestamps):
    """language=None: HF's prompt is start, detected language (no task token), no-timestamps."""
    hf, ours = multilingual
    x = feats(2, 3000, seed=6)
    with torch.no_grad():
        ref = hf.generate(torch.from_numpy(x), max_new_tokens=12, return_timestamps=timestamps)
    np.testing.assert_array_equal(
        ours.generate(x, max_new_tokens=12, return_timestamps=timestamps), ref.numpy()
    )


def test_timestamp_errors(english, multilingual):
    _, ours = english
    with pytest.raises(tfcore.TfcoreValueError, match="multilingual"):
        ours.detect_language(feats(1, 3000))
    _, ml = multilingual
    with pytest.raises(tfcore.TfcoreValueError, match="one of them"):
        ml.detect_language()
    with pytest.raises(tfcore.TfcoreValueError, match="NaN"):
        ml.detect_language(np.full((1, 80, 3000), np.nan, np.float32))
    with pytest.raises(tfcore.TfcoreValueError, match="return_timestamps=True"):
        ours.generate(feats(1, 3500))
