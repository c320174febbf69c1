"""Whisper temperature fallback (temperature=(0.0, 0.2, ...), compression_ratio_threshold,
logprob_threshold, no_speech_threshold) vs transformers' generate on a tiny random checkpoint,
where HF's behaviour is deterministic: thresholds that never trigger (greedy result, short and
long form), a logprob_threshold just above / below the greedy window's average log-probability
(falls back / does not, as HF decides), no-speech skipping of every window; the compression
ratio against HF's; clear errors for bad values."""

from __future__ import annotations

import numpy as np
import pytest

import tfcore
from tfcore.models.whisper import compression_ratio

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from test_whisper import ENGLISH, save_tiny_whisper  # noqa: E402

NEVER = dict(compression_ratio_threshold=1e9, logprob_threshold=-1e9, no_speech_threshold=1.0)


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    path = tmp_path_factory.mktemp("whisper_fallback")
    hf = save_tiny_whisper(path, dict(ENGLISH, max_initial_timestamp_index=50), seed=1)
    return hf, tfcore.models.WhisperForConditionalGeneration.from_pretrained(path)


def feats(batch, frames, seed=3):
    return np.random.default_rng(seed).standard_normal((batch, 80, frames)).astype(np.float32)


def hf_generate(hf, x, **kw):
    with torch.no_grad():
        out = hf.generate(torch.from_numpy(x), **kw)
    return (out["sequences"] if isinstance(out, dict) else out).numpy()


def test_thresholds_that_never_trigger_give_greedy_short_form(english):
    hf, ours = english
    x = feats(2, 3000)
    kw = dict(temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), max_new_tokens=20, **NEVER)
    got = ours.generate(x, **kw)
    np.testing.assert_array_equal(got, ours.generate(x, max_new_tokens=20))
    ref = hf_generate(hf, x, **kw)
    np.testing.assert_array_equal(got, ref[:, -got.shape[1] :] if ref.shape[1] > got.shape[1] else ref)


def test_thresholds_that_never_trigger_give_greedy_long_form(english):
    """70 s of features with timestamps: HF's sequential algorithm with fallback settings that
    never fire decodes every window greedily; tfcore's tokens and segments are HF's."""
    hf, ours = english
    x = feats(1, 7000)
    kw = dict(return_timestamps=True, temperature=(0.0, 0.2), max_new_tokens=40, **NEVER)
    got = ours.generate(x, return_segments=True, **kw)
    with torch.no_grad():
        ref = hf.generate(torch.from_numpy(x), return_segments=True, **kw)
    np.testing.assert_array_equal(got["sequences"], ref["sequences"].numpy())
    assert [s["tokens"].tolist() for s in got["segments"][0]] == [
        s["tokens"].tolist() for s in ref["segments"][0]
    ]
    assert len(got["segments"][0]) >= 3


def _hf_average_logprob(hf, x, max_new_tokens):
    """HF's own average log-probability of its greedy window (the scores of its output,
    end-of-text included when produced): the number logprob_threshold is compared with."""
    with torch.no_grad():
        out = hf.generate(
            torch.from_numpy(x),
            max_new_tokens=max_new_tokens,
            return_dict_in_generate=True,
            output_scores=True,
        )
    seq = out.sequences[0].tolist()
    new = seq[-len(out.scores) :]
    if ENGLISH["eos_token_id"] in new:
        new = new[: new.index(ENGLISH["eos_token_id"]) + 1]
    lps = [torch.log_softmax(out.scores[i][0].double(), -1)[t].item() for i, t in enumerate(new)]
    return sum(lps) / len(lps)


def test_logprob_threshold_decides_fallback_as_hf(english):
    """A threshold just below the greedy window's average log-probability keeps the greedy
    tokens (as HF); just above it both engines fall back to sampling at 1.0 (the samples
    themselves come from different generators: they only differ from the greedy tokens)."""
    hf, ours = english
    x = feats(1, 3000, seed=5)
    greedy = ours.generate(x, max_new_tokens=20)
    avg = _hf_average_logprob(hf, x, 20)
    kw = dict(temperature=(0.0, 1.0), max_new_tokens=20)
    below = ours.generate(x, logprob_threshold=avg - 1e-3, **kw)
    np.testing.assert_array_equal(below, greedy)
    ref_below = hf_generate(hf, x, logprob_threshold=avg - 1e-3, **kw)
    assert ref_below[0, -greedy.shape[1] :].tolist() == greedy[0].tolist()
    torch.manual_seed(0)
    ref_above = hf_generate(hf, x, logprob_threshold=avg + 1e-3, **kw)
    above = ours.generate(x, logprob_threshold=avg + 1e-3, seed=0, **kw)
    assert ref_above[0, -greedy.shape[1] :].tolist() != greedy[0].tolist()  # HF fell back
    assert above.tolist() != greedy.tolist()  # so did tfcore


def test_no_speech_skips_every_window_as_hf(english):
    """logprob_threshold=0 (every average log-probability is below it) and
    no_speech_threshold=0 (every no-speech probability is above it): every window is skipped,
    in HF's long-form algorithm and in tfcore's, and a short-form row comes back empty."""
    hf, ours = english
    x = feats(1, 7000)
    kw = dict(return_timestamps=True, temperature=(0.0,), logprob_threshold=0.0, no_speech_threshold=0.0)
    got = ours.generate(x, return_segments=True, max_new_tokens=40, **kw)
    with torch.no_grad():
        ref = hf.generate(torch.from_numpy(x), return_segments=True, max_new_tokens=40, **kw)
    assert got["segments"] == [[]] and ref["segments"] == [[]]
    assert got["sequences"].shape[1] == 0
    short = ours.generate(feats(1, 3000), temperature=0.0, logprob_threshold=0.0, no_speech_threshold=0.0)
    assert short.shape == (1, 0)


def test_compression_ratio_matches_hf():
    rng = np.random.default_rng(0)
    for tokens in ([], [5] * 40, rng.integers(0, 51864, 37).tolist(), [50257, 50362] + [220, 50256] * 9):
        want = (
            transformers.WhisperForConditionalGeneration._retrieve_compression_ratio(
                torch.tensor(tokens, dtype=torch.long), 51864
            )
            if tokens
            else 0.0
        )
        assert compression_ratio(tokens, 51864) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(temperature=-0.2), "temperature values must be finite and >= 0"),
        (dict(temperature=()), "non-empty sequence"),
        (dict(temperature=(0.0, float("nan"))), "finite"),
        (dict(temperature="hot"), "must be numbers"),
        (dict(compression_ratio_threshold=-1.0), "compression_ratio_threshold"),
        (dict(logprob_threshold=float("inf")), "logprob_threshold"),
        (dict(no_speech_threshold=1.5, logprob_threshold=-1.0), "no_speech_threshold"),
        (dict(no_speech_threshold=0.6), "needs logprob_threshold"),
        (dict(logprob_threshold=-1.0, num_beams=2), "num_beams > 1"),
    ],
)
def test_bad_fallback_values_raise(english, kw, message):
    _, ours = english
    with pytest.raises((tfcore.TfcoreValueError, tfcore.TfcoreTypeError), match=message):
        ours.generate(feats(1, 3000), max_new_tokens=4, **kw)
