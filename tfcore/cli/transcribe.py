"""Transcribe (or translate) a WAV file with a Whisper checkpoint directory: the audio is read
and resampled to 16 kHz (stereo mixed to mono), turned into log-mel features by the
directory's preprocessor_config.json, and decoded as transformers' Whisper generate does.
Audio longer than 30 s is decoded by HF's sequential algorithm (30 s windows, each starting at
the previous one's last complete segment), which needs timestamps internally; --timestamps
prints them: one "[start --> end] text" line per segment. Multilingual checkpoints detect the
language unless --language is given. A CTranslate2 Whisper directory (faster-whisper's) is
converted first with 'tfcore convert SRC DEST'."""

from __future__ import annotations

import os

NAME, HELP = "transcribe", "transcribe a WAV file with a Whisper checkpoint (timestamps, long audio)"


def add_arguments(p):
    from ._common import add_model_options

    p.add_argument("audio", help="WAV file (PCM 8/16/24/32-bit or float; any rate, resampled to 16 kHz)")
    add_model_options(p, model_help="Whisper checkpoint directory (config.json + *.safetensors)")
    p.add_argument("--language", default=None, help="language code (e.g. en, de); default: detected")
    p.add_argument("--task", default=None, choices=["transcribe", "translate"], help="default: transcribe")
    p.add_argument("--beams", type=int, default=1, help="beam search width (1: greedy, the default)")
    p.add_argument("--timestamps", action="store_true", help="print each segment with its start and end")


def _clock(seconds: float) -> str:
    m, s = divmod(max(seconds, 0.0), 60.0)
    h, m = divmod(int(m), 60)
    return f"{h:d}:{m:02d}:{s:05.2f}" if h else f"{m:02d}:{s:05.2f}"


def transcribe(model, tokenizer, extractor, audio, language=None, task=None, beams=1, timestamps=False):
    """(text, segments): segments is a list of (start s, end s, text), one per segment when
    timestamps were decoded (always for audio longer than one window), else one for all."""
    import numpy as np

    from .. import _C

    if not isinstance(beams, int) or beams < 1:
        raise _C.TfcoreValueError(f"--beams must be an integer >= 1, got {beams!r}")
    long_form = audio.shape[0] > extractor.n_samples
    use_ts = bool(timestamps) or long_form
    feats = extractor(audio, truncation=not long_form, padding="longest" if long_form else "max_length")
    x = np.ascontiguousarray(feats["input_features"])
    eot = model.generation_defaults.get("eos_token_id")
    eot = int(eot[0] if isinstance(eot, (list, tuple)) else eot)

    def text_of(tokens) -> str:
        # text tokens sit below end-of-text; timestamps and the other special tokens above it
        return tokenizer.decode([int(t) for t in tokens if int(t) < eot]).strip()

    if not use_ts:
        ids = model.generate(x, language=language, task=task, num_beams=beams)[0]
        text = text_of(ids)
        return text, [(0.0, audio.shape[0] / extractor.sampling_rate, text)]
    out = model.generate(
        x, language=language, task=task, num_beams=beams, return_timestamps=True, return_segments=True
    )
    segments = [(s["start"], s["end"], text_of(s["tokens"])) for s in out["segments"][0]]
    return " ".join(t for _, _, t in segments if t), segments


def run(args):
    import tfcore

    from ..audio import WhisperFeatureExtractor, load_audio
    from ..config import Config
    from ..text import load_tokenizer

    cfg = Config.from_dir(args.model)
    if cfg.get("model_type") != "whisper":
        raise tfcore.CheckpointError(
            f"{args.model}: model_type {cfg.get('model_type')!r} is not a Whisper checkpoint "
            "(a CTranslate2 Whisper directory converts with 'tfcore convert SRC DEST')"
        )
    if not os.path.isfile(args.audio):
        raise tfcore.TfcoreValueError(f"{args.audio}: no such file")
    extractor = WhisperFeatureExtractor.from_pretrained(args.model)
    audio = load_audio(args.audio, sampling_rate=extractor.sampling_rate, mono=True)
    model = tfcore.models.WhisperForConditionalGeneration.from_pretrained(
        args.model, dtype=args.dtype, threads=args.threads
    )
    tokenizer = load_tokenizer(args.model)
    text, segments = transcribe(
        model, tokenizer, extractor, audio, args.language, args.task, args.beams, args.timestamps
    )
    if args.timestamps:
        for start, end, t in segments:
            print(f"[{_clock(start)} --> {_clock(end)}] {t}")
    else:
        print(text)
    return 0
