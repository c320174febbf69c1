"""Configuration report, thread control and oneDNN discovery."""
from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

import tfcore
from tfcore import _loader


def test_show_config_reports_onednn_runtime_isa_threads(capsys):
    tfcore.show_config()
    text = capsys.readouterr().out
    for key in ("oneDNN", "3.2.0", "CPU runtime", "OpenMP", "oneDNN ISA", "threads", "tfcore kernels"):
        assert key in text
    info = tfcore._config.config()
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


def package_parent() -> str:
    """Where the tfcore under test lives: a child process started there imports the same
    one (a source checkout as the cwd would otherwise shadow an installed tfcore)."""
    import os

    return os.path.dirname(os.path.dirname(tfcore.__file__))


def test_omp_num_threads_sets_the_default():
    code = "import tfcore; print(tfcore.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"}, cwd=package_parent())
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
