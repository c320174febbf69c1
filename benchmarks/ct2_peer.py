"""CTranslate2 as a peer: the same Hugging Face checkpoint converted with its
TransformersConverter, in float32 and int8 (its standard CPU recipes), run with the same
thread count.

Two adaptations, neither touching the math: CTranslate2 4.8 reads BertConfig's
position_embedding_type and BartConfig's normalize_before, which transformers 5 no longer sets
(absolute positions and post-norm are what BERT and BART use),
and it needs a vocabulary to convert a decoder, so a word-level tokenizer naming token ids
"<i>" is written beside random-weight checkpoints; decoding feeds those names, which are
the same ids. On a CPU with AVX-512, CT2_FORCE_CPU_ISA (CTranslate2's own switch) and
MKL_ENABLE_INSTRUCTIONS hold it to AVX2 when the benchmark runs at that level.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional

import numpy as np


def _converter():
    from ctranslate2.converters import TransformersConverter

    class Converter(TransformersConverter):
        def load_model(self, model_class, model_name_or_path, **kwargs):
            model = super().load_model(model_class, model_name_or_path, **kwargs)
            if not hasattr(model.config, "position_embedding_type"):
                model.config.position_embedding_type = "absolute"
            if model.config.model_type == "bart" and not hasattr(model.config, "normalize_before"):
                model.config.normalize_before = False  # BART is post-norm (transformers 5 dropped the key)
            return model

    return Converter


def _convert(path: str, tmp: str, name: str, quantization: str) -> str:
    out = os.path.join(tmp, f"{name}-ct2-{quantization}")
    if not os.path.isdir(out):
        _converter()(path).convert(out, quantization=quantization, force=True)
    return out


def _token_names(vocab_size: int, names: Optional[Dict[int, str]] = None) -> List[str]:
    """Token i is "<i>", unless names gives it another name (Marian's "<pad>")."""
    names = names or {}
    return [names.get(i, f"<{i}>") for i in range(vocab_size)]


def _write_id_tokenizer(
    path: str,
    vocab_size: int,
    special: Optional[Dict[str, int]] = None,
    names: Optional[Dict[int, str]] = None,
) -> None:
    """A tokenizer whose token i is "<i>" (or names[i]), so the converter can read a
    vocabulary; special maps bos_token / eos_token / unk_token / pad_token to ids (default:
    the last id for bos and eos, 0 for unk)."""
    if os.path.exists(os.path.join(path, "tokenizer.json")):
        return
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tokens = _token_names(vocab_size, names)
    special = special or {"bos_token": vocab_size - 1, "eos_token": vocab_size - 1, "unk_token": 0}
    tok = Tokenizer(
        models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token=tokens[special["unk_token"]])
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok, **{k: tokens[i] for k, i in special.items()}
    ).save_pretrained(path)


def encoder_runners(path: str, tmp: str, threads: int) -> dict:
    """{'ct2-fp32': run, 'ct2-int8': run} for a BERT checkpoint; run(ids (B, T)) ->
    last_hidden_state (B, T, C) float32."""
    import ctranslate2

    runs = {}
    for key, quant in (("ct2-fp32", "float32"), ("ct2-int8", "int8")):
        enc = ctranslate2.Encoder(_convert(path, tmp, "encoder", quant), device="cpu", intra_threads=threads)
        runs[key] = lambda ids, enc=enc: np.asarray(enc.forward_batch(ids.tolist()).last_hidden_state)
    return runs


def greedy_runners(path: str, vocab_size: int, tmp: str, threads: int) -> dict:
    """{'ct2-fp32': run, 'ct2-int8': run} for a causal LM checkpoint; run(ids (1, T0),
    new_tokens) -> (1, T0 + new) int64, greedy, exactly new_tokens tokens."""
    import ctranslate2

    _write_id_tokenizer(path, vocab_size)
    runs = {}
    for key, quant in (("ct2-fp32", "float32"), ("ct2-int8", "int8")):
        gen = ctranslate2.Generator(
            _convert(path, tmp, "decoder", quant), device="cpu", intra_threads=threads
        )

        def run(ids, new_tokens, gen=gen):
            res = gen.generate_batch(
                [[f"<{i}>" for i in row] for row in ids.tolist()],
                max_length=new_tokens,
                min_length=new_tokens,
                sampling_topk=1,
                include_prompt_in_result=False,
                end_token=[],
            )
            return np.concatenate([ids, np.asarray([r.sequences_ids[0] for r in res])], axis=1)

        runs[key] = run
    return runs


def translator_runners(
    path: str, vocab_size: int, tmp: str, threads: int, special: Dict[str, int], names: Dict[int, str]
) -> dict:
    """{'ct2-fp32': run, 'ct2-int8': run} for an encoder-decoder checkpoint (BART, Marian);
    run(ids (B, T), new_tokens, beam_size, no_repeat_ngram_size) -> (B, new_tokens) int64, the
    best hypothesis of exactly new_tokens tokens (end of sequence held off, as the other
    runners' min_new_tokens does)."""
    import ctranslate2

    _write_id_tokenizer(path, vocab_size, special, names)
    tokens = _token_names(vocab_size, names)
    index = {t: i for i, t in enumerate(tokens)}
    runs = {}
    for key, quant in (("ct2-fp32", "float32"), ("ct2-int8", "int8")):
        tr = ctranslate2.Translator(
            _convert(path, tmp, "seq2seq", quant), device="cpu", intra_threads=threads
        )

        def run(ids, new_tokens, beam_size=1, no_repeat_ngram_size=0, tr=tr):
            res = tr.translate_batch(
                [[tokens[i] for i in row] for row in ids.tolist()],
                beam_size=beam_size,
                max_decoding_length=new_tokens,
                min_decoding_length=new_tokens,
                no_repeat_ngram_size=no_repeat_ngram_size,
                max_batch_size=0,
            )
            return np.asarray([[index[t] for t in r.hypotheses[0]] for r in res], np.int64)

        runs[key] = run
    return runs
