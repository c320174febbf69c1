"""tfcore.set_weight_cache: packed weights written once to content-addressed files and
mapped from there, so processes share one copy through the page cache. Outputs are bit-equal
to private weights, the same bytes map the same file in every process, a damaged file is never
used, and memory stays flat over many layers built and freed."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import package_parent
from memory import rss_growth
from tiny_models import save_tiny

import tfcore

MiB = 2**20


@pytest.fixture
def cache(tmp_path):
    prev = tfcore.set_weight_cache(tmp_path / "cache")
    yield tmp_path / "cache"
    tfcore.set_weight_cache(prev)


def _files(d):
    return sorted(p.name for p in d.iterdir() if p.suffix == ".w")


def _mapped(d, pid="self"):
    """(device, inode) of the cache files mapped into process pid."""
    out = set()
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5].startswith(str(d)):
                out.add((parts[3], parts[4]))
    return out


def _weights(shape=(512, 192), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int8"])
def test_layers_from_the_cache_equal_private_ones(cache, dtype):
    w, b = _weights(), _weights((512,), 1)
    x = _weights((5, 192), 2)
    prev = tfcore.set_weight_cache(None)
    private = tfcore.Linear(w, b, activation="gelu", dtype=dtype)
    tfcore.set_weight_cache(prev)
    assert not cache.exists() or _files(cache) == []
    shared = tfcore.Linear(w, b, activation="gelu", dtype=dtype)
    files = _files(cache)
    assert len(files) == 1 and _mapped(cache)  # one packed buffer, mapped from its file
    for rows in (x[:1], x):  # the few-row kernel and oneDNN's GEMM both read the mapping
        assert np.array_equal(shared(rows), private(rows))
    assert np.array_equal(shared.weight, private.weight)
    again = tfcore.Linear(w, b, activation="gelu", dtype=dtype)
    assert _files(cache) == files  # the same bytes: the same file, nothing written
    assert np.array_equal(again(x), private(x))
    del shared, again
    assert not _mapped(cache)  # unmapped with the last layer


def test_a_model_shares_every_large_projection(cache, tmp_path):
    save_tiny(
        "bert",
        tmp_path / "bert",
        hidden_size=128,
        intermediate_size=512,
        num_attention_heads=4,
        num_hidden_layers=2,
    )
    ids = np.array([[1, 5, 9, 13, 2], [1, 7, 3, 2, 0]])
    mask = (ids > 0).astype(np.int64)
    prev = tfcore.set_weight_cache(None)
    want = tfcore.AutoModel.from_pretrained(tmp_path / "bert")(ids, attention_mask=mask).last_hidden_state
    tfcore.set_weight_cache(prev)
    model = tfcore.AutoModel.from_pretrained(tmp_path / "bert")
    assert np.array_equal(model(ids, attention_mask=mask).last_hidden_state, want)
    # per layer fused QKV (384x128), output (128x128: 64 KiB, the smallest shared), up
    # (512x128) and down (128x512), and the pooler: every packed buffer of this model
    assert len(_mapped(tmp_path / "cache")) == 2 * 4 + 1


def test_a_damaged_file_is_never_used(cache):
    w, x = _weights(), _weights((3, 192), 2)
    want = tfcore.Linear(w)(x)  # writes the file; the layer is gone again
    [name] = _files(cache)
    blob = bytearray((cache / name).read_bytes())
    blob[100] ^= 0xFF
    (cache / name).write_bytes(bytes(blob))  # same name and size, other bytes
    layer = tfcore.Linear(w)
    assert np.array_equal(layer(x), want)
    assert (cache / name).read_bytes() != bytes(blob)  # rewritten with the packed bytes


def test_small_layers_and_unset_cache_stay_private(cache, tmp_path):
    tfcore.Linear(_weights((16, 16)))  # 1 KiB: not worth a file
    assert not cache.exists() or _files(cache) == []
    tfcore.set_weight_cache(None)
    assert tfcore.get_weight_cache() is None
    tfcore.Linear(_weights())
    assert not cache.exists() or _files(cache) == []


def test_processes_map_the_same_files(cache, tmp_path):
    save_tiny("bert", tmp_path / "bert", hidden_size=128, intermediate_size=512, num_attention_heads=4)
    model = tfcore.AutoModel.from_pretrained(tmp_path / "bert")  # noqa: F841 - keeps its mappings
    mine = _mapped(cache)
    code = (
        "import sys, tfcore; m = tfcore.AutoModel.from_pretrained(sys.argv[1]); "
        "print(open('/proc/self/maps').read()); sys.stdout.flush()"
    )
    env = dict(os.environ, TFCORE_WEIGHT_CACHE=str(cache))
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "bert")],
        cwd=package_parent(),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    theirs = {
        (p[3], p[4])
        for p in (line.split() for line in out.splitlines())
        if len(p) >= 6 and p[5].startswith(str(cache))
    }
    assert mine and theirs == mine  # the same inodes: one copy in the page cache


def test_environment_variable_at_import(tmp_path):
    def cache_of(value):
        env = dict(os.environ, TFCORE_WEIGHT_CACHE=value)
        r = subprocess.run(
            [sys.executable, "-W", "always", "-c", "import tfcore; print(tfcore.get_weight_cache())"],
            cwd=package_parent(),
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return r.stdout.strip(), r.stderr

    got, _ = cache_of(str(tmp_path / "c"))
    assert got == str(tmp_path / "c") and (tmp_path / "c").is_dir()
    got, err = cache_of(sys.executable + "/cache")  # under a file: warned, not an import error
    assert got == "None" and "TFCORE_WEIGHT_CACHE ignored" in err


def test_building_and_freeing_shared_layers_keeps_memory_flat(cache):
    w = _weights()
    growth = rss_growth(lambda: tfcore.Linear(w), calls=500, warmup=50)
    assert growth < 2 * MiB, growth / MiB
    assert len(_files(cache)) == 1


def test_threads_building_the_same_layers_at_once(cache):
    """Eight threads pack the same bytes at once: each writes its own temporary file, the
    first one linked in stays, and every layer maps that one complete file."""
    import threading

    ws = [_weights(seed=s) for s in range(3)]
    x = _weights((4, 192), 9)
    prev = tfcore.set_weight_cache(None)
    want = [tfcore.Linear(w)(x) for w in ws]
    tfcore.set_weight_cache(prev)
    failures, alive = [], []

    def work(i):
        try:
            for j in range(30):
                k = (i + j) % 3
                layer = tfcore.Linear(ws[k])
                if not np.array_equal(layer(x), want[k]):
                    failures.append((i, j))
                alive.append(layer)
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures and len(_files(cache)) == 3
    assert not [p for p in cache.iterdir() if p.suffix != ".w"]  # no temporary file left behind
    assert len(_mapped(cache)) == 3  # 240 live layers, one inode per distinct buffer
