"""8 Python threads calling the same model and the same layers at once, for a while: every
result equals the serial one bit for bit, and nothing crashes or deadlocks."""
from __future__ import annotations

import threading
import time

import numpy as np

import tfcore
from tiny_models import save_tiny

THREADS = 8
SECONDS = 3.0


def test_eight_threads_share_models_and_layers(tmp_path):
    save_tiny("bert", tmp_path / "bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    save_tiny("llama", tmp_path / "llama", hidden_size=32, intermediate_size=64)
    bert = tfcore.AutoModel.from_pretrained(tmp_path / "bert")
    llama = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path / "llama", dtype="int8"
                                                       if "int8" in tfcore.supported_dtypes() else "float32")
    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    lin = tfcore.Linear(r(96, 32), r(96), activation="gelu")
    q, k, v = r(2, 4, 9, 8), r(2, 2, 13, 8), r(2, 2, 13, 8)
    ids = rng.integers(1, 60, size=(3, 11))
    mask = (np.arange(11)[None] < np.array([[11], [6], [2]])).astype(np.int64)
    x = r(5, 32)
    work = {
        "bert": lambda: bert(ids, attention_mask=mask).last_hidden_state,
        "generate": lambda: llama.generate(ids[:2, :4], max_new_tokens=6),
        "generate-int8-cache": lambda: llama.generate(ids[:1, :5], max_new_tokens=5, cache_dtype="int8"),
        "linear": lambda: lin(x),
        "sdpa": lambda: tfcore.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
    }
    serial = {name: fn() for name, fn in work.items()}
    failures, counts = [], [0] * THREADS
    deadline = time.monotonic() + SECONDS

    def worker(i):
        names = list(work)
        j = i
        try:
            while time.monotonic() < deadline:
                name = names[j % len(names)]
                got = work[name]()
                if not np.array_equal(got, serial[name]):
                    failures.append(f"thread {i}: {name} differs from the serial result")
                    return
                j += 1
                counts[i] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(f"thread {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60 + SECONDS)
    assert not any(t.is_alive() for t in threads), "deadlock: a thread is still running"
    assert not failures, failures
    assert min(counts) >= 5, counts  # every thread got through several calls of each kind
