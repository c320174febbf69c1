"""Audio input without torch: WAV files -> 16 kHz float32 -> Whisper's log-mel features.

    audio = tfcore.audio.load_audio("talk.wav")             # mono float32 at 16 kHz
    fe = tfcore.audio.WhisperFeatureExtractor.from_pretrained("whisper-dir")
    input_features = fe(audio, sampling_rate=16000)["input_features"]   # (1, 80, 3000)

- ``read_wav`` reads RIFF/WAVE files: PCM 8/16/24/32-bit through the standard library's
  ``wave`` module, and what ``wave`` cannot read (before Python 3.12 it refuses both IEEE float
  WAV, format 3, and WAVE_FORMAT_EXTENSIBLE, which sox and most editors write for 24-bit or
  multichannel audio) through a small RIFF chunk reader here: float32/float64 and extensible
  PCM/float. Samples become float32 in [-1, 1] (integers divided by 2**(bits-1), as soundfile
  does). Multichannel audio raises unless ``mono=True`` (the channels are averaged).
- ``resample`` is a polyphase windowed-sinc resampler for any rational rate ratio (Kaiser window,
  64 zero crossings each side, flat to 90% of the lower Nyquist frequency, computed in float32).
- ``WhisperFeatureExtractor`` computes the same log-mel spectrogram as ``transformers``'
  ``WhisperFeatureExtractor`` (pad/truncate to 30 s, periodic Hann window, centred STFT with
  reflect padding, power spectrum, Slaney mel filters, log10, 8-decade dynamic range,
  ``(x + 4) / 4``), reading its parameters from ``preprocessor_config.json``.

Every entry point raises ``TfcoreValueError`` / ``TfcoreTypeError`` naming the problem (empty
audio, NaN, a wrong sampling rate, a truncated or malformed file).
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import wave
from typing import Any, BinaryIO, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._C import TfcoreTypeError, TfcoreValueError

__all__ = [
    "read_wav",
    "load_audio",
    "resample",
    "mel_filter_bank",
    "WhisperFeatureExtractor",
]

PathOrFile = Union[str, os.PathLike, BinaryIO]

# WAVE format tags (mmreg.h)
_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
# A WAV file this large is refused before reading (4 GiB is the RIFF size limit anyway)
MAX_WAV_BYTES = 1 << 32


# ------------------------------------------------------------------------------- WAV reading
def _name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return getattr(source, "name", None) or type(source).__name__


def _read_bytes(source: PathOrFile) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise TfcoreValueError(f"{path}: no such WAV file")
        if os.path.getsize(path) > MAX_WAV_BYTES:
            raise TfcoreValueError(
                f"{path}: {os.path.getsize(path)} bytes is larger than a WAV file can be (4 GiB)"
            )
        with open(path, "rb") as f:
            return f.read()
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TfcoreTypeError(
                f"read_wav needs a binary file, {_name(source)} returned {type(data).__name__}"
            )
        return bytes(data)
    raise TfcoreTypeError(
        f"read_wav takes a path, bytes or a binary file object, got {type(source).__name__}"
    )


def _pcm_to_float(raw: bytes, width: int, channels: int, name: str) -> np.ndarray:
    """Interleaved little-endian PCM bytes -> float32 (frames, channels) in [-1, 1)."""
    frame = width * channels
    if len(raw) % frame:
        raw = raw[: len(raw) - len(raw) % frame]  # a partial last frame (cannot be a whole sample)
    if width == 1:  # 8-bit WAV is unsigned
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float32) / float(1 << 23)
    elif width == 4:
        x = (np.frombuffer(raw, "<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)
    else:
        raise TfcoreValueError(f"{name}: {8 * width}-bit PCM is not supported (8, 16, 24 or 32-bit)")
    return x.reshape(-1, channels)


def _riff_read(data: bytes, name: str) -> Tuple[np.ndarray, int]:
    """Chunk-level RIFF/WAVE reader for what ``wave`` refuses: IEEE float and EXTENSIBLE."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        if data[:4] in (b"RF64", b"BW64"):
            raise TfcoreValueError(f"{name}: RF64/BW64 (WAV over 4 GiB) is not supported")
        raise TfcoreValueError(f"{name}: not a WAV file (no RIFF/WAVE header)")
    fmt = None
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            if len(body) < 16:
                raise TfcoreValueError(
                    f"{name}: truncated WAV header (fmt chunk of {len(body)} bytes, needs 16)"
                )
            tag, channels, rate, _, align, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _EXTENSIBLE:
                if len(body) < 40:
                    raise TfcoreValueError(
                        f"{name}: truncated WAV header (extensible fmt chunk of {len(body)} bytes)"
                    )
                tag = struct.unpack_from("<H", body, 24)[0]  # first two bytes of the SubFormat GUID
            fmt = (tag, channels, rate, align, bits)
        elif cid == b"data":
            if fmt is None:
                raise TfcoreValueError(f"{name}: malformed WAV (data chunk before the fmt chunk)")
            if len(body) < size:
                raise TfcoreValueError(
                    f"{name}: truncated WAV file (data chunk declares {size} bytes, the file holds {len(body)})"
                )
            tag, channels, rate, align, bits = fmt
            if channels == 0:
                raise TfcoreValueError(f"{name}: the WAV header says 0 channels")
            if rate == 0:
                raise TfcoreValueError(f"{name}: the WAV header says a sampling rate of 0 Hz")
            width = (bits + 7) // 8
            if width == 0 or align != width * channels:
                raise TfcoreValueError(
                    f"{name}: malformed WAV header (block align {align} for {channels} channels of {bits}-bit samples)"
                )
            if tag == _PCM:
                return _pcm_to_float(body, width, channels, name), rate
            if tag == _FLOAT:
                if bits not in (32, 64):
                    raise TfcoreValueError(f"{name}: {bits}-bit float WAV is not supported (32 or 64-bit)")
                dt = "<f4" if bits == 32 else "<f8"
                n = len(body) // (width * channels) * channels
                x = np.frombuffer(body, dt, count=n).astype(np.float32)
                return x.reshape(-1, channels), rate
            raise TfcoreValueError(
                f"{name}: WAV format tag {tag:#06x} is not supported (PCM or IEEE float only; "
                "compressed WAV such as ADPCM or mu-law must be converted first, e.g. with sox or ffmpeg)"
            )
        pos += 8 + size + (size & 1)
    if fmt is None:
        raise TfcoreValueError(f"{name}: truncated WAV header (no fmt chunk)")
    raise TfcoreValueError(f"{name}: truncated WAV file (no data chunk)")


def read_wav(source: PathOrFile, *, mono: bool = False) -> Tuple[np.ndarray, int]:
    """Read a WAV file; returns ``(audio, sampling_rate)`` with ``audio`` float32 of shape
    ``(frames,)`` in [-1, 1].

    ``source`` is a path, the file's bytes or a binary file object. PCM 8/16/24/32-bit and IEEE
    float 32/64-bit, plain or WAVE_FORMAT_EXTENSIBLE. Audio with more than one channel raises
    unless ``mono=True``, which averages the channels. Raises ``TfcoreValueError`` for a file
    that is not WAV, a truncated header or data chunk, an unsupported encoding, no samples, or
    samples that are not finite (float WAV).
    """
    name = _name(source) if not isinstance(source, (bytes, bytearray, memoryview)) else "<bytes>"
    if not isinstance(mono, bool):
        raise TfcoreTypeError(f"mono must be True or False, got {type(mono).__name__}")
    data = _read_bytes(source)
    if not data:
        raise TfcoreValueError(f"{name}: empty file (0 bytes), not a WAV file")
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate, frames = (
                w.getnchannels(),
                w.getsampwidth(),
                w.getframerate(),
                w.getnframes(),
            )
            if channels == 0:
                raise TfcoreValueError(f"{name}: the WAV header says 0 channels")
            if rate == 0:
                raise TfcoreValueError(f"{name}: the WAV header says a sampling rate of 0 Hz")
            raw = w.readframes(frames)
            if len(raw) < frames * width * channels:
                raise TfcoreValueError(
                    f"{name}: truncated WAV file (header declares {frames} frames, the file holds "
                    f"{len(raw) // (width * channels)})"
                )
            audio = _pcm_to_float(raw, width, channels, name)
    except TfcoreValueError:
        raise
    except (wave.Error, EOFError, RuntimeError, struct.error, ValueError, OverflowError):
        # wave refuses float and extensible WAV ("unknown format"), and reports damage as
        # EOFError, RuntimeError (a chunk reaching past its parent) or wave.Error: the chunk
        # reader reads the former and names the damage in the latter
        audio, rate = _riff_read(data, name)
    if audio.shape[0] == 0:
        raise TfcoreValueError(f"{name}: the WAV file holds no samples")
    if not np.isfinite(audio).all():
        raise TfcoreValueError(f"{name}: the WAV file holds NaN or infinite samples")
    if audio.shape[1] > 1:
        if not mono:
            raise TfcoreValueError(
                f"{name}: the audio has {audio.shape[1]} channels; speech models take mono audio: "
                "pass mono=True to average the channels"
            )
        return audio.mean(axis=1, dtype=np.float64).astype(np.float32), rate
    return np.ascontiguousarray(audio[:, 0]), rate


def load_audio(source: PathOrFile, sampling_rate: int = 16000, *, mono: bool = False) -> np.ndarray:
    """``read_wav`` then ``resample`` to ``sampling_rate`` (16 kHz, what Whisper and wav2vec2
    take): mono float32 of shape ``(samples,)``."""
    audio, rate = read_wav(source, mono=mono)
    return resample(audio, rate, sampling_rate)


# ------------------------------------------------------------------------------- resampling
# The low-pass filter of ``resample``: a sinc at ROLLOFF x the lower Nyquist frequency under a
# Kaiser window reaching ZEROS zero crossings each side. beta 9 puts the stop band near -90 dB;
# 64 zero crossings make the transition band ~5% of the lower Nyquist frequency wide on each
# side of the cutoff: tones up to 90% of it (7.2 kHz at 16 kHz) pass within 3e-5 of their
# amplitude, tones above the new Nyquist frequency are attenuated below 2e-5 (tests/test_audio.py).
_ZEROS, _ROLLOFF, _BETA = 64, 0.95, 9.0


def _check_rate(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise TfcoreTypeError(f"{name} must be a whole number of Hz, got {value!r}")
    if not 0 < value <= 10_000_000:
        raise TfcoreValueError(f"{name} must be a positive number of Hz (at most 10 MHz), got {value}")
    return int(value)


def _audio_array(audio, name: str = "audio", allow_2d: bool = False) -> np.ndarray:
    if isinstance(audio, (list, tuple)):
        try:
            audio = np.asarray(audio, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise TfcoreTypeError(f"{name} must be a sequence of numbers ({e})") from e
    if not isinstance(audio, np.ndarray):
        raise TfcoreTypeError(f"{name} must be a NumPy array of samples, got {type(audio).__name__}")
    if audio.dtype.kind not in "fiu":
        raise TfcoreTypeError(
            f"{name} must hold real numbers (float32 samples in [-1, 1]), got {audio.dtype}"
        )
    if audio.ndim != 1 and not (allow_2d and audio.ndim == 2):
        shape = "(samples,) or (channels, samples)" if allow_2d else "(samples,)"
        raise TfcoreValueError(f"{name} must have shape {shape}, got {audio.shape}")
    if audio.shape[-1] == 0:
        raise TfcoreValueError(f"{name} is empty (0 samples)")
    if audio.dtype.kind == "f" and not np.isfinite(audio).all():
        raise TfcoreValueError(f"{name} holds NaN or infinite samples")
    return audio


def resample(audio: np.ndarray, orig_sr: int, target_sr: int = 16000) -> np.ndarray:
    """Resample ``audio`` (``(samples,)`` or ``(channels, samples)``) from ``orig_sr`` to
    ``target_sr`` Hz with a polyphase windowed-sinc filter; returns float32 with
    ``ceil(samples * target_sr / orig_sr)`` samples (as ``scipy.signal.resample_poly``).

    Output sample ``n`` sits at input time ``t = n * orig_sr / target_sr`` and is
    ``sum_i x[i] * c * sinc(c * (t - i)) * kaiser((t - i) / half)`` with ``c`` the cutoff as a
    fraction of the input Nyquist frequency (``min(1, target/orig) * 0.95``) and ``half`` the
    filter's reach in input samples. With ``up/down`` the reduced ratio, ``t``'s fractional part
    takes only ``up`` values: one set of taps per phase, applied to every ``up``-th output.
    """
    orig_sr = _check_rate(orig_sr, "orig_sr")
    target_sr = _check_rate(target_sr, "target_sr")
    x = _audio_array(audio, allow_2d=True)
    squeeze = x.ndim == 1
    x = np.atleast_2d(x).astype(np.float32)
    g = math.gcd(orig_sr, target_sr)
    up, down = target_sr // g, orig_sr // g
    if up == down:
        out = x.astype(np.float32)
        return out[0] if squeeze else out
    if up > 10_000 and down > 10_000:
        raise TfcoreValueError(
            f"resampling {orig_sr} Hz -> {target_sr} Hz needs {up} filter phases (the rates share no "
            "common factor); round the rates (e.g. to whole hundreds of Hz)"
        )
    C, n_in = x.shape
    n_out = -(-n_in * up // down)
    cutoff = min(1.0, up / down) * _ROLLOFF
    half = int(math.ceil(_ZEROS / cutoff))  # filter reach in input samples, each side
    taps = np.arange(-half + 1, half + 1)  # input offsets j from floor(t)
    T = len(taps)
    xp = np.zeros((C, n_in + 2 * half + 1), np.float32)
    xp[:, half : half + n_in] = x
    out = np.empty((C, n_out), np.float32)
    kaiser_norm = np.i0(_BETA)
    item = xp.itemsize
    for n0 in range(min(up, n_out)):
        frac = ((n0 * down) % up) / up  # t - floor(t) for every output n = n0 + k*up
        base = (n0 * down) // up  # floor(t) for k = 0
        d = frac - taps  # t - i for each tap
        h = cutoff * np.sinc(cutoff * d) * np.i0(_BETA * np.sqrt(np.clip(1.0 - (d / half) ** 2, 0.0, None)))
        h = (h / kaiser_norm).astype(np.float32)
        K = len(range(n0, n_out, up))
        start = base + 1  # xp index of tap 0 for k = 0 (x[i] sits at xp[i + half])
        if start + (K - 1) * down + T > xp.shape[1]:  # cannot happen: n_out keeps t < n_in
            raise AssertionError("resample: window beyond the padded input")
        for c in range(C):
            # rows k of (K, T): xp[c, start + k*down + j], a strided view (no copy)
            rows = np.lib.stride_tricks.as_strided(
                xp[c, start:], shape=(K, T), strides=(down * item, item), writeable=False
            )
            out[c, n0::up] = np.einsum("kt,t->k", rows, h)
    return out[0] if squeeze else out


# ------------------------------------------------------------------------------- log-mel
def _hz_to_mel_slaney(hz):
    hz = np.asarray(hz, np.float64)
    # linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4)
    log_step = math.log(6.4) / 27.0
    return np.where(hz < 1000.0, 3.0 * hz / 200.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step)


def _mel_to_hz_slaney(mel):
    mel = np.asarray(mel, np.float64)
    log_step = math.log(6.4) / 27.0
    return np.where(mel < 15.0, 200.0 * mel / 3.0, 1000.0 * np.exp(log_step * (mel - 15.0)))


def mel_filter_bank(
    num_frequency_bins: int,
    num_mel_filters: int,
    min_frequency: float,
    max_frequency: float,
    sampling_rate: int,
) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular mel filters (librosa's default, what Whisper
    uses): float64 ``(num_frequency_bins, num_mel_filters)``. Filter ``m`` rises from mel point
    ``m`` to ``m + 1`` and falls to ``m + 2`` (``num_mel_filters + 2`` points evenly spaced in
    mel between the two frequencies), scaled by ``2 / (f[m + 2] - f[m])`` so each has unit area
    in Hz."""
    fft_freqs = np.linspace(0.0, sampling_rate / 2.0, num_frequency_bins)
    mels = np.linspace(
        _hz_to_mel_slaney(min_frequency), _hz_to_mel_slaney(max_frequency), num_mel_filters + 2
    )
    f = _mel_to_hz_slaney(mels)
    df = np.diff(f)
    rel = f[None, :] - fft_freqs[:, None]  # (bins, points): distance of each point above each bin
    rising = -rel[:, :-2] / df[:-1]
    falling = rel[:, 2:] / df[1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    return filters * (2.0 / (f[2 : num_mel_filters + 2] - f[:num_mel_filters]))


_CONFIG_KEYS = ("feature_size", "sampling_rate", "hop_length", "chunk_length", "n_fft", "padding_value")


class WhisperFeatureExtractor:
    """Whisper's log-mel spectrogram in NumPy, equal to ``transformers.WhisperFeatureExtractor``.

    ``__call__(raw_speech, sampling_rate=16000)`` takes one mono float array of samples at the
    model's rate (or a list of them / a 2-D batch) and returns ``{"input_features": float32
    (B, feature_size, frames)}`` (frames = 3000 for 30 s): each clip truncated and zero-padded
    to ``chunk_length`` seconds (``padding="longest"`` pads only to the longest clip,
    ``truncation=False`` keeps longer clips whole), then per clip: STFT with a periodic Hann
    window of ``n_fft`` samples every ``hop_length`` samples (centred: ``n_fft // 2`` samples of
    reflect padding each side; the last frame dropped), power spectrum, mel filters, ``log10``
    of at least 1e-10, floored at the clip's maximum minus 8, then ``(x + 4) / 4``.
    """

    model_input_names = ["input_features"]

    def __init__(
        self,
        feature_size: int = 80,
        sampling_rate: int = 16000,
        hop_length: int = 160,
        chunk_length: int = 30,
        n_fft: int = 400,
        padding_value: float = 0.0,
        return_attention_mask: bool = False,
        mel_filters: Optional[Any] = None,
        **kwargs: Any,
    ) -> None:
        for key, value, lo in (
            ("feature_size", feature_size, 1),
            ("sampling_rate", sampling_rate, 1),
            ("hop_length", hop_length, 1),
            ("chunk_length", chunk_length, 1),
            ("n_fft", n_fft, 2),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
                raise TfcoreValueError(
                    f"WhisperFeatureExtractor: {key} must be an integer >= {lo}, got {value!r}"
                )
        if feature_size > 1024 or n_fft > 1 << 16 or chunk_length > 3600 or sampling_rate > 1_000_000:
            raise TfcoreValueError(
                f"WhisperFeatureExtractor: implausible configuration (feature_size={feature_size}, "
                f"n_fft={n_fft}, chunk_length={chunk_length}, sampling_rate={sampling_rate})"
            )
        if not isinstance(padding_value, (int, float)) or not math.isfinite(padding_value):
            raise TfcoreValueError(
                f"WhisperFeatureExtractor: padding_value must be a finite number, got {padding_value!r}"
            )
        dither = kwargs.get("dither", 0.0)
        if dither not in (0, 0.0, None):
            raise TfcoreValueError(
                f"WhisperFeatureExtractor: dither={dither!r} adds random noise; tfcore's extractor is "
                "deterministic (dither=0.0, the Whisper default)"
            )
        self.feature_size = int(feature_size)
        self.sampling_rate = int(sampling_rate)
        self.hop_length = int(hop_length)
        self.chunk_length = int(chunk_length)
        self.n_fft = int(n_fft)
        self.padding_value = float(padding_value)
        self.return_attention_mask = bool(return_attention_mask)
        self.n_samples = self.chunk_length * self.sampling_rate
        self.nb_max_frames = self.n_samples // self.hop_length
        if mel_filters is not None:  # older preprocessor_config.json files store them
            try:
                mf = np.asarray(mel_filters, dtype=np.float64)
            except (TypeError, ValueError) as e:
                raise TfcoreValueError(
                    f"WhisperFeatureExtractor: mel_filters is not a numeric array ({e})"
                ) from e
            nb = 1 + self.n_fft // 2
            if mf.shape == (self.feature_size, nb):
                mf = mf.T
            if mf.shape != (nb, self.feature_size) or not np.isfinite(mf).all():
                raise TfcoreValueError(
                    f"WhisperFeatureExtractor: mel_filters has shape {mf.shape}, expected "
                    f"({nb}, {self.feature_size}) finite values for n_fft={self.n_fft}"
                )
            self.mel_filters = mf
        else:
            self.mel_filters = mel_filter_bank(
                1 + self.n_fft // 2, self.feature_size, 0.0, 8000.0, self.sampling_rate
            )
        # periodic Hann window (torch.hann_window's default)
        self.window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(self.n_fft) / self.n_fft)

    @classmethod
    def from_pretrained(cls, directory: Union[str, os.PathLike]) -> "WhisperFeatureExtractor":
        """Read ``preprocessor_config.json`` from a checkpoint directory (or the file itself)."""
        path = os.fspath(directory)
        if os.path.isdir(path):
            path = os.path.join(path, "preprocessor_config.json")
        if not os.path.isfile(path):
            raise TfcoreValueError(f"{path}: no preprocessor_config.json (the feature extractor's settings)")
        try:
            with open(path, encoding="utf-8") as f:
                cfg = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TfcoreValueError(f"{path}: not a readable JSON file ({e})") from e
        if not isinstance(cfg, dict):
            raise TfcoreValueError(f"{path}: expected a JSON object, got {type(cfg).__name__}")
        kind = cfg.get("feature_extractor_type", "WhisperFeatureExtractor")
        if kind != "WhisperFeatureExtractor":
            raise TfcoreValueError(
                f"{path}: feature_extractor_type is {kind!r}, expected 'WhisperFeatureExtractor'"
            )
        kw = {k: cfg[k] for k in _CONFIG_KEYS if k in cfg}
        for k in ("return_attention_mask", "mel_filters", "dither"):
            if k in cfg:
                kw[k] = cfg[k]
        return cls(**kw)

    def __repr__(self) -> str:
        return (
            f"WhisperFeatureExtractor(feature_size={self.feature_size}, sampling_rate={self.sampling_rate}, "
            f"hop_length={self.hop_length}, chunk_length={self.chunk_length}, n_fft={self.n_fft})"
        )

    def _log_mel(self, waveform: np.ndarray) -> np.ndarray:
        # waveform is (S,) float64 -> (feature_size, S // hop_length) float32
        pad = self.n_fft // 2
        if waveform.shape[0] <= pad:
            raise TfcoreValueError(
                f"audio of {waveform.shape[0]} samples is too short for the STFT's reflect padding "
                f"(needs more than n_fft // 2 = {pad}); pad it, or use padding='max_length'"
            )
        x = np.pad(waveform, pad, mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(x, self.n_fft)[:: self.hop_length]
        frames = frames[:-1]  # Whisper drops the last frame
        power = np.abs(np.fft.rfft(frames * self.window, axis=-1)) ** 2  # (frames, bins)
        mel = power @ self.mel_filters  # (frames, feature_size)
        log_spec = np.log10(np.maximum(mel, 1e-10))
        log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
        return ((log_spec + 4.0) / 4.0).T.astype(np.float32)

    def __call__(
        self,
        raw_speech,
        truncation: bool = True,
        pad_to_multiple_of: Optional[int] = None,
        return_tensors: Optional[str] = "np",
        return_attention_mask: Optional[bool] = None,
        padding: Union[str, bool] = "max_length",
        max_length: Optional[int] = None,
        sampling_rate: Optional[int] = None,
        do_normalize: Optional[bool] = None,
        **kwargs: Any,
    ) -> Dict[str, np.ndarray]:
        """Features for one clip (1-D array) or a batch (list of 1-D arrays, or a 2-D array).
        ``sampling_rate`` must equal the extractor's (resample first with
        ``tfcore.audio.resample``); HF's ``device`` argument is accepted as ``"cpu"`` only."""
        if return_tensors not in (None, "np"):
            raise TfcoreValueError(
                f"return_tensors must be 'np' (NumPy arrays; tfcore has no torch), got {return_tensors!r}"
            )
        if kwargs.get("device", "cpu") != "cpu":
            raise TfcoreValueError(f"device must be 'cpu', got {kwargs['device']!r}")
        unknown = set(kwargs) - {"device"}
        if unknown:
            raise TfcoreTypeError(
                f"WhisperFeatureExtractor got unexpected arguments: {', '.join(sorted(unknown))}"
            )
        if sampling_rate is not None:
            sr = _check_rate(sampling_rate, "sampling_rate")
            if sr != self.sampling_rate:
                raise TfcoreValueError(
                    f"the audio is sampled at {sr} Hz but this feature extractor takes {self.sampling_rate} Hz: "
                    f"resample first (tfcore.audio.resample(audio, {sr}, {self.sampling_rate}))"
                )
        if padding is True:
            padding = "longest"
        if padding in (False, None):
            padding = "do_not_pad"
        if padding not in ("max_length", "longest", "do_not_pad"):
            raise TfcoreValueError(
                f"padding must be 'max_length', 'longest' or 'do_not_pad', got {padding!r}"
            )
        if max_length is None:
            max_length = self.n_samples
        elif isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 1:
            raise TfcoreValueError(f"max_length must be a positive number of samples, got {max_length!r}")
        if pad_to_multiple_of is not None and (
            isinstance(pad_to_multiple_of, bool)
            or not isinstance(pad_to_multiple_of, (int, np.integer))
            or pad_to_multiple_of < 1
        ):
            raise TfcoreValueError(
                f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of!r}"
            )

        # one clip or a batch
        if isinstance(raw_speech, np.ndarray) and raw_speech.ndim == 2:
            clips: Sequence = list(raw_speech)
        elif (
            isinstance(raw_speech, (list, tuple))
            and raw_speech
            and isinstance(raw_speech[0], (np.ndarray, list, tuple))
        ):
            clips = raw_speech
        else:
            clips = [raw_speech]
        if isinstance(raw_speech, np.ndarray) and raw_speech.ndim > 2:
            raise TfcoreValueError(
                f"raw_speech must be mono: (samples,) or a batch (B, samples), got shape {raw_speech.shape}"
            )
        if len(clips) == 0:
            raise TfcoreValueError("raw_speech is an empty batch")
        arrays: List[np.ndarray] = []
        for i, clip in enumerate(clips):
            a = _audio_array(clip, name="raw_speech" if len(clips) == 1 else f"raw_speech[{i}]")
            a = a.astype(np.float32).astype(np.float64)  # HF rounds the samples to float32 first
            if truncation and a.shape[0] > max_length:
                a = a[:max_length]
            arrays.append(a)
        lengths = [a.shape[0] for a in arrays]
        if padding == "max_length":
            target = max_length
        elif padding == "longest":
            target = max(lengths)
        else:
            target = None
        if target is not None and pad_to_multiple_of is not None and target % pad_to_multiple_of:
            target = (target // pad_to_multiple_of + 1) * pad_to_multiple_of
        if target is None and len(set(lengths)) > 1:
            raise TfcoreValueError(
                f"clips of different lengths ({min(lengths)}..{max(lengths)} samples) need padding "
                "('max_length' or 'longest')"
            )
        width = target if target is not None else lengths[0]
        width = max(width, max(lengths))  # truncation=False with a longer clip
        batch = np.full((len(arrays), width), self.padding_value, np.float64)
        mask = np.zeros((len(arrays), width), np.int32)
        for i, a in enumerate(arrays):
            if do_normalize:
                a = (a - a.mean()) / np.sqrt(a.var() + 1e-7)
            batch[i, : a.shape[0]] = a
            mask[i, : a.shape[0]] = 1
        out = {"input_features": np.stack([self._log_mel(w) for w in batch])}
        want_mask = (
            self.return_attention_mask if return_attention_mask is None else bool(return_attention_mask)
        )
        if want_mask:
            m = mask[:, :: self.hop_length]
            if width % self.hop_length:
                m = m[:, :-1]
            out["attention_mask"] = m
        return out
