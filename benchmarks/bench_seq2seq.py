"""BART-style encoder-decoder generation: tfcore vs HF transformers on torch, same threads.

    python benchmarks/bench_seq2seq.py [--quick] [--threads 2] [--avx2]

Two shapes with random weights (HF's own initialisation):
- summarisation, BART-base shape (d_model 768, 6 + 6 layers, 12 heads, ffn 3072, 50,265
  vocabulary): 512 input tokens, 64 new, beam search with 4 beams, no_repeat_ngram_size 3;
- translation, Marian opus-mt shape (d_model 512, 6 + 6 layers, 8 heads, ffn 2048, sinusoidal
  positions, 58,101 vocabulary): batch 8 of 48 tokens, greedy, 48 new.
- long-document summarisation, LED-base shape (BART-base's sizes, Longformer encoder with
  attention_window 1024, the first token global as LED summarisation sets it): 2048 input
  tokens, 32 new, greedy and beam 4 (CTranslate2 does not convert LED: its columns are empty).
--quick shrinks the summarisation input to 128 tokens and 16 new, translation to 16 new, LED
to 1100 tokens and 8 new.

Each case first validates the decoder logits of HF's generated sequence, teacher-forced
through both, within 1e-4 of the scale (and reports how many generated tokens agree: random
weights leave near ties that float32 rounding may flip), then times both,
interleaved, after a warm-up, and reports medians and the ratio (float32 against float32).
CTranslate2 (the same checkpoint through its TransformersConverter, float32 and int8; a
word-level tokenizer naming token i "<i>" is written beside the random checkpoint so the
converter reads a vocabulary, see ct2_peer.py) runs the same inputs with the same beam
settings, exactly the same number of new tokens; tfcore int8 is compared with CTranslate2
int8, float32 with float32. The share of tokens CTranslate2 generates equal to tfcore's is
reported beside (near-ties again).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

import tfcore

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fmt_ms, interleaved, isa_line, print_table, reexec_at_avx2_if_asked  # noqa: E402
from ct2_peer import translator_runners  # noqa: E402

# token ids the CTranslate2 converter reads from the tokenizer (and Marian's "<pad>" name: the
# converter drops that last token, whose embedding starts Marian's decoder)
CT2_SPECIAL = {
    "bart": (dict(bos_token=0, pad_token=1, eos_token=2, unk_token=3), {}),
    "marian": (dict(eos_token=0, unk_token=1, pad_token=58100), {58100: "<pad>"}),
}

SHAPES = {
    "bart": dict(
        cls="BartForConditionalGeneration",
        config="BartConfig",
        kw=dict(
            vocab_size=50265,
            d_model=768,
            encoder_layers=6,
            decoder_layers=6,
            encoder_attention_heads=12,
            decoder_attention_heads=12,
            encoder_ffn_dim=3072,
            decoder_ffn_dim=3072,
            max_position_embeddings=1024,
        ),
    ),
    "led": dict(
        cls="LEDForConditionalGeneration",
        config="LEDConfig",
        kw=dict(
            vocab_size=50265,
            d_model=768,
            encoder_layers=6,
            decoder_layers=6,
            encoder_attention_heads=12,
            decoder_attention_heads=12,
            encoder_ffn_dim=3072,
            decoder_ffn_dim=3072,
            max_encoder_position_embeddings=4096,
            max_decoder_position_embeddings=1024,
            attention_window=1024,
        ),
    ),
    "marian": dict(
        cls="MarianMTModel",
        config="MarianConfig",
        kw=dict(
            vocab_size=58101,
            d_model=512,
            encoder_layers=6,
            decoder_layers=6,
            encoder_attention_heads=8,
            decoder_attention_heads=8,
            encoder_ffn_dim=2048,
            decoder_ffn_dim=2048,
            max_position_embeddings=512,
            pad_token_id=58100,
            decoder_start_token_id=58100,
            eos_token_id=0,
            activation_function="swish",
        ),
    ),
}


def make_model(name: str, tmp: str):
    import transformers

    spec = SHAPES[name]
    torch.manual_seed(0)
    cfg = getattr(transformers, spec["config"])(**spec["kw"], forced_eos_token_id=None)
    getattr(transformers, spec["cls"])(cfg).save_pretrained(tmp)
    attn = "eager" if name == "led" else "sdpa"  # HF's LED has its own attention only
    return getattr(transformers, spec["cls"]).from_pretrained(tmp, attn_implementation=attn).eval()


def bench(name, batch, length, new, gen_kw, repeat, rng, rows, threads):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name)
        ref = make_model(name, path)
        ours = tfcore.AutoModelForSeq2SeqLM.from_pretrained(path)
        ours8 = tfcore.AutoModelForSeq2SeqLM.from_pretrained(path, dtype="int8")
        V = SHAPES[name]["kw"]["vocab_size"]
        ids = rng.integers(3, V - 2, size=(batch, length))
        tids = torch.from_numpy(ids)
        ct2 = translator_runners(path, V, tmp, threads, *CT2_SPECIAL[name]) if name in CT2_SPECIAL else None
        beam, ngram = gen_kw.get("num_beams", 1), gen_kw.get("no_repeat_ngram_size", 0)
        extra, hf_extra = {}, {}
        if name == "led":  # LED summarisation: the first token attends globally
            glob = np.zeros_like(ids)
            glob[:, 0] = 1
            extra, hf_extra = (
                dict(global_attention_mask=glob),
                dict(global_attention_mask=torch.from_numpy(glob)),
            )

        def run_ours(model=ours):
            # exactly `new` tokens with end of sequence held off, as HF's min_new_tokens does
            return model.generate(ids, max_new_tokens=new, min_new_tokens=new, **extra, **gen_kw)

        def run_hf():
            return ref.generate(
                tids, max_new_tokens=new, min_new_tokens=new, do_sample=False, **hf_extra, **gen_kw
            )

        with torch.inference_mode():
            a, b = run_ours(), run_hf().numpy()
            # HF's initialisation (std 0.02) leaves random logits nearly flat, so float32 rounding
            # may flip near-tied tokens or beams: validate the logits of HF's output teacher-forced
            # through both, and report how many generated tokens agree
            dec = np.ascontiguousarray(b[:, :-1])
            lo = ours(input_ids=ids, decoder_input_ids=dec, **extra).logits
            lh = ref(input_ids=tids, decoder_input_ids=torch.from_numpy(dec), **hf_extra).logits.numpy()
            err = np.abs(lo - lh).max() / np.abs(lh).max()
            if err > 1e-4:
                raise SystemExit(
                    f"validation failed ({name}, batch {batch}): logits differ from HF by {err:.2e}"
                )
            agree = float((a == b).mean()) if a.shape == b.shape else float("nan")
            runs = {"tfcore": run_ours, "hf": run_hf, "tfcore-int8": lambda: run_ours(ours8)}
            agree_ct2 = float("nan")
            if ct2 is not None:
                c = ct2["ct2-fp32"](ids, new, beam, ngram)
                agree_ct2 = float((a[:, 1:] == c).mean()) if a[:, 1:].shape == c.shape else float("nan")
                runs["ct2-fp32"] = lambda: ct2["ct2-fp32"](ids, new, beam, ngram)
                runs["ct2-int8"] = lambda: ct2["ct2-int8"](ids, new, beam, ngram)
            t = interleaved(runs, repeat=repeat, warmup=1)
    case = f"{name}: B={batch}, {length} in, {new} new, " + (
        f"beam {gen_kw['num_beams']}" if gen_kw.get("num_beams", 1) > 1 else "greedy"
    )
    has_ct2 = "ct2-fp32" in t
    rows.append(
        [
            case,
            fmt_ms(t["tfcore"]),
            fmt_ms(t["hf"]),
            fmt_ms(t["ct2-fp32"]) if has_ct2 else "-",
            f"{t['hf'] / t['tfcore']:.2f}",
            f"{t['ct2-fp32'] / t['tfcore']:.2f}" if has_ct2 else "-",
            fmt_ms(t["tfcore-int8"]),
            fmt_ms(t["ct2-int8"]) if has_ct2 else "-",
            f"{t['ct2-int8'] / t['tfcore-int8']:.2f}" if has_ct2 else "-",
            f"{err:.1e}",
            f"{100 * agree:.0f}% / " + (f"{100 * agree_ct2:.0f}%" if has_ct2 else "-"),
        ]
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--avx2", action="store_true", help="hold every library to AVX2 (see common.py)")
    args = ap.parse_args()
    reexec_at_avx2_if_asked()
    tfcore.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    tfcore.show_config()
    repeat = 3 if args.quick else 5
    rng = np.random.default_rng(0)
    rows = []
    summary_in, summary_new, translate_new = (128, 16, 16) if args.quick else (512, 64, 48)
    bart_kw = dict(num_beams=4, no_repeat_ngram_size=3)
    bench("bart", 1, summary_in, summary_new, bart_kw, repeat, rng, rows, args.threads)
    bench("marian", 8, 48, translate_new, {}, repeat, rng, rows, args.threads)
    led_in, led_new = (1100, 8) if args.quick else (2048, 32)
    for beams in (1, 4):
        bench("led", 1, led_in, led_new, dict(num_beams=beams), repeat, rng, rows, args.threads)
    print(isa_line())
    print(f"\nEncoder-decoder generate (random weights, float32), {args.threads} threads\n")
    print_table(
        [
            "case",
            "tfcore ms",
            "HF ms",
            "CT2 ms",
            "HF/tfcore",
            "CT2/tfcore",
            "tfcore int8 ms",
            "CT2 int8 ms",
            "CT2/tfcore int8",
            "logits max rel. diff",
            "tokens equal HF / CT2",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
