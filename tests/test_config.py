"""Configuration report, thread control and oneDNN discovery."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import package_parent

import tfcore
from tfcore import _loader


def test_show_config_reports_onednn_runtime_isa_threads(capsys):
    tfcore.show_config()
    text = capsys.readouterr().out
    for key in ("oneDNN", "3.2.0", "CPU runtime", "OpenMP", "oneDNN ISA", "threads", "tfcore kernels"):
        assert key in text
    info = tfcore._runtime.config()
    assert info["onednn_built_against"] == info["onednn_hash"]  # headers and library agree
    assert info["num_threads"] == tfcore.get_num_threads()


def test_threads_context_is_per_python_thread():
    base = tfcore.get_num_threads()
    seen = {}

    def other():
        seen["other"] = tfcore.get_num_threads()

    with tfcore.threads(1):
        assert tfcore.get_num_threads() == 1
        t = threading.Thread(target=other)
        t.start()
        t.join()
        with tfcore.threads(2):
            assert tfcore.get_num_threads() == 2
        assert tfcore.get_num_threads() == 1
    assert tfcore.get_num_threads() == base
    assert seen["other"] == base  # the override does not leak into other threads
    with pytest.raises(tfcore.TfcoreValueError, match="threads"):
        with tfcore.threads(0):
            pass


def test_omp_num_threads_sets_the_default():
    code = "import tfcore; print(tfcore.get_num_threads())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
        cwd=package_parent(),
    )
    assert out.stdout.strip() == "1"


def test_missing_onednn_is_a_clear_import_error(monkeypatch):
    monkeypatch.setattr(_loader, "ONEDNN_DIST", "onednn-not-installed")
    with pytest.raises(ImportError, match="needs the 'onednn-not-installed' package"):
        _loader.find_libdnnl()


def test_results_do_not_depend_on_thread_count(rng):
    q, k, v = (rng.standard_normal((1, 4, 200, 32)).astype(np.float32) for _ in range(3))
    with tfcore.threads(1):
        one = tfcore.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    with tfcore.threads(2):
        two = tfcore.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert np.array_equal(one, two)  # work is split by query blocks: same arithmetic per row


def test_every_subpackage_is_packaged():
    # A package directory missing from pyproject's list imports fine from a source tree
    # but is absent from the wheel.
    import pathlib
    import tomllib

    root = pathlib.Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "tfcore").rglob("__init__.py")}
    assert found <= listed, found - listed


FORK_CHILD = """
import multiprocessing as mp, sys
import numpy as np
import tfcore

tfcore.set_num_threads(2)
W = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
x = np.random.default_rng(1).standard_normal((64, 512)).astype(np.float32)
lin = tfcore.Linear(W)
want = lin(x)  # the parent's OpenMP thread pool is now running

def child(q):
    try:
        q.put(("threads", tfcore.get_num_threads()))
        q.put(("same", bool(np.array_equal(lin(x), want) or np.abs(lin(x) - want).max() < 1e-4)))
        q_ = np.ones((1, 2, 97, 64), np.float32)
        q.put(("sdpa", float(tfcore.functional.scaled_dot_product_attention(q_, q_, q_).max())))
        try:
            tfcore.set_num_threads(2)
            q.put(("set", "no error"))
        except tfcore.TfcoreValueError as e:
            q.put(("set", str(e)))
    except BaseException as e:
        q.put(("error", repr(e)))

ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
p.join(60)
if p.exitcode is None:
    p.kill()
    print("HUNG")
    sys.exit(1)
print(dict(q.get(timeout=5) for _ in range(4)))
"""


def test_forked_child_runs_on_one_thread_instead_of_hanging():
    """GNU OpenMP cannot restart its pool in a child forked after the parent used threads
    (a parallel region there waits forever); tfcore's child runs serially and says why if
    asked for more threads."""
    out = subprocess.run(
        [sys.executable, "-c", FORK_CHILD], capture_output=True, text=True, timeout=120, cwd=package_parent()
    )
    assert "HUNG" not in out.stdout and out.returncode == 0, out.stdout + out.stderr
    res = eval(out.stdout.strip().splitlines()[-1])
    assert res["threads"] == 1 and res["same"] is True and abs(res["sdpa"] - 1.0) < 1e-6
    assert "forked" in res["set"] and "spawn" in res["set"]


def test_per_model_threads(tmp_path, rng):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(
        GPT2Config(vocab_size=31, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    ).save_pretrained(tmp_path)
    seen = []
    one = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path, threads=1)
    default = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = rng.integers(0, 31, size=(2, 9))
    real_forward = type(one).forward

    def spy(self, *a, **k):
        seen.append(tfcore.get_num_threads())
        return real_forward(self, *a, **k)

    type(one).forward = spy
    try:
        with tfcore.threads(2):
            a = one(ids).logits
            one.generate(ids, max_new_tokens=2)
            b = default(ids).logits
    finally:
        type(one).forward = real_forward
    assert seen[:3] == [1, 1, 1] and seen[-1] == 2
    assert np.abs(a - b).max() < 1e-5
    assert "threads=1" in repr(one)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(tfcore.TfcoreValueError, match="threads must be an int"):
            tfcore.AutoModelForCausalLM.from_pretrained(tmp_path, threads=bad)


def _import_with(env_extra: dict) -> subprocess.CompletedProcess:
    import os

    code = "import tfcore, json; c = tfcore._C.config(); print(json.dumps([c['kernel_isa'], c['kernels']]))"
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env_extra},
        capture_output=True,
        text=True,
        cwd=package_parent(),
    )


def test_tfcore_isa_selects_the_kernel_level():
    import json

    cpu = tfcore._C.config()["cpu_isa"]
    levels = (
        ["reference"]
        + (["avx2"] if cpu in ("avx2", "avx512") else [])
        + (["avx512"] if cpu == "avx512" else [])
    )
    for level in levels:
        r = _import_with({"TFCORE_ISA": level.upper()})  # case does not matter
        assert r.returncode == 0, r.stderr
        isa, kernels = json.loads(r.stdout)
        assert isa == level
        # every kernel family runs at the level or, where it has no path for it, below it
        order = ["reference", "avx2", "avx512"]
        assert all(order.index(v) <= order.index(level) for v in kernels.values()), kernels
        assert kernels["attention"] == kernels["norm"] == level


def test_tfcore_isa_refuses_unknown_and_unsupported_levels():
    r = _import_with({"TFCORE_ISA": "sse9"})
    assert r.returncode != 0 and "TFCORE_ISA=sse9 is not a level; use avx512, avx2 or reference" in r.stderr
    if tfcore._C.config()["cpu_isa"] != "avx512":
        r = _import_with({"TFCORE_ISA": "avx512"})
        assert r.returncode != 0 and "this CPU runs tfcore's kernels at" in r.stderr


def test_set_isa_checks_its_argument():
    with pytest.raises(tfcore.TfcoreTypeError, match="level must be"):
        tfcore._C._set_isa(2)
    with pytest.raises(tfcore.TfcoreValueError, match="is not a level"):
        tfcore._C._set_isa("avx1024")
    prev = tfcore._C._set_isa("reference")
    try:
        assert tfcore._C.config()["kernel_isa"] == "reference"
    finally:
        assert tfcore._C._set_isa(prev) == "reference"


def test_show_config_lists_every_kernel_family(capsys):
    tfcore.show_config()
    out = capsys.readouterr().out
    for family in tfcore._C.config()["kernels"]:
        assert f"  {family}" in out
