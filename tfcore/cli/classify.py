"""Label texts with a sequence classifier (sentiment, topic, NLI, ...) or, with --tokens, each
token with a token classifier (NER), printing the checkpoint's label names (config.json's
id2label).

Texts come from the arguments, from --file (one per line) or from standard input. The model
is a local directory with tokenizer.json and a *ForSequenceClassification (or, with --tokens,
*ForTokenClassification) checkpoint. Scores are softmax probabilities (sigmoid per label for
a multi-label checkpoint, problem_type "multi_label_classification"). Output, one line per
text: the label, its score and the text; --top-k N prints the N best labels; --json writes
one JSON object per text instead."""

from __future__ import annotations

import json
import sys
import time

NAME, HELP = "classify", "print the labels a classifier directory gives texts (or, with --tokens, tokens)"


def add_arguments(p):
    from ._common import add_model_options

    add_model_options(p, "classifier directory (config.json with id2label, *.safetensors, tokenizer.json)")
    p.add_argument("texts", nargs="*", help="texts to classify")
    p.add_argument("--file", default=None, help="read texts from this file, one per line")
    p.add_argument("--tokens", action="store_true", help="label every token (token classification, NER)")
    p.add_argument("--top-k", type=int, default=1, help="labels printed per text (default 1)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None, help="tokens kept per text (default: the model's)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")


def read_texts(args):
    """The texts of the arguments, --file or standard input; raises if there are none."""
    import tfcore

    from .embed import lines_as_rows

    if args.file:
        with open(args.file, encoding="utf-8") as f:
            texts = lines_as_rows(f, args.file)
    elif args.texts:
        texts = list(args.texts)
    elif not sys.stdin.isatty():
        texts = lines_as_rows(sys.stdin, "standard input")
    else:
        texts = []
    if not texts:
        raise tfcore.TfcoreValueError(
            "no texts to classify: pass them as arguments, with --file or on standard input"
        )
    return texts


def scores(logits, multi_label: bool):
    """Probabilities over the last axis: softmax, or an independent sigmoid per label."""
    import numpy as np

    z = logits.astype(np.float64)
    if multi_label:
        return 1.0 / (1.0 + np.exp(-z))
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _check_args(args):
    import tfcore

    if isinstance(args.top_k, bool) or args.top_k < 1:
        raise tfcore.TfcoreValueError(f"--top-k must be >= 1, got {args.top_k}")
    if args.batch_size < 1:
        raise tfcore.TfcoreValueError(f"--batch-size must be >= 1, got {args.batch_size}")


def run(args):
    import numpy as np

    import tfcore

    from .. import text
    from ._common import plural

    _check_args(args)
    texts = read_texts(args)
    auto = (
        tfcore.AutoModelForTokenClassification if args.tokens else tfcore.AutoModelForSequenceClassification
    )
    model = auto.from_pretrained(args.model, dtype=args.dtype, threads=args.threads)
    tok = text.load_tokenizer(args.model, max_length=args.max_length)
    id2label = model.id2label
    multi = model.config.get("problem_type") == "multi_label_classification"
    k = min(args.top_k, len(id2label))
    took = 0.0
    for start in range(0, len(texts), args.batch_size):
        batch = texts[start : start + args.batch_size]
        encodings = tok.encode_batch(batch)
        text._warn_truncated(tok, encodings, stacklevel=2)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        t0 = time.perf_counter()
        logits = model(ids, attention_mask=mask).logits
        took += time.perf_counter() - t0
        p = scores(logits, multi)
        for row, (t, enc) in enumerate(zip(batch, encodings)):
            if args.tokens:
                keep = [i for i, m in enumerate(enc.attention_mask) if m and not enc.special_tokens_mask[i]]
                labelled = [
                    (enc.tokens[i], id2label[int(p[row, i].argmax())], float(p[row, i].max())) for i in keep
                ]
                if args.json:
                    print(
                        json.dumps(
                            {"text": t, "tokens": [dict(token=a, label=b, score=c) for a, b, c in labelled]}
                        )
                    )
                else:
                    print(t)
                    for token, label, score in labelled:
                        print(f"  {token:<16} {label:<12} {score:.3f}")
                continue
            best = np.argsort(-p[row], kind="stable")[:k]
            if args.json:
                print(
                    json.dumps(
                        {
                            "text": t,
                            "labels": [dict(label=id2label[int(j)], score=float(p[row, j])) for j in best],
                        }
                    )
                )
            else:
                shown = "  ".join(f"{id2label[int(j)]} {p[row, j]:.3f}" for j in best)
                print(f"{shown}\t{t}")
    print(f"{plural(len(texts), 'text')} classified in {took * 1e3:.1f} ms with {model!r}", file=sys.stderr)
    return 0
