"""Test configuration.

The reference dependencies are imported here on purpose: if torch or transformers is
missing, every test errors and CI fails instead of silently skipping comparisons.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch  # noqa: F401  (reference dependency; must be installed: see pyproject [test])
import transformers  # noqa: F401

import tfcore

torch.set_num_threads(2)
# The suite runs on an explicit thread count: tfcore's default adapts to what other processes
# leave free (re-measured every 0.1 s), which would make tests comparing thread counts depend
# on the machine's load. The adaptive default is tested in child processes
# (test_threads_policy.py).
tfcore.set_num_threads(tfcore._C.config()["omp_num_procs"])


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# Every kernel level this CPU executes, best first (an AVX-512 machine covers AVX2 too), and
# never above a level TFCORE_ISA chose for the whole run.
_LEVELS = ("avx512", "avx2", "reference")


def package_parent() -> str:
    """Where the tfcore under test lives: a child process started there imports the same
    one (a source checkout as the cwd would otherwise shadow an installed tfcore)."""
    import os

    return os.path.dirname(os.path.dirname(tfcore.__file__))


KERNEL_LEVELS = _LEVELS[_LEVELS.index(tfcore._C.config()["kernel_isa"]) :]


VECTOR_LEVELS = tuple(level for level in KERNEL_LEVELS if level != "reference")


def _at_level(level):
    prev = tfcore._C._set_isa(level)
    try:
        yield level
    finally:
        tfcore._C._set_isa(prev)


@pytest.fixture(params=KERNEL_LEVELS)
def path(request):
    """Run the test on every kernel level this CPU runs: AVX-512, AVX2, the plain C reference."""
    yield from _at_level(request.param)


@pytest.fixture(params=VECTOR_LEVELS)
def vector_path(request):
    """Run the test on every vector level this CPU runs (for tests that compare a vector path
    with the reference path forced by tfcore._C._set_reference_kernels)."""
    yield from _at_level(request.param)
