"""Adapters to the tools research pipelines run on: lm-evaluation-harness (``lm_eval``),
sentence-transformers / MTEB (``sentence_transformers``), and the Ray and Dask engines behind
``tfcore.eval``'s ``engine=`` (``ray``, ``dask``). Each module imports its tool only when
used; install them with the extras ``tfcore[lm-eval]``, ``tfcore[mteb]``, ``tfcore[ray]``,
``tfcore[dask]``."""
