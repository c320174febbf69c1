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


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# Every kernel level this CPU executes, best first (an AVX-512 machine covers AVX2 too), and
# never above a level TFCORE_ISA chose for the whole run.
_LEVELS = ("avx512", "avx2", "reference")
KERNEL_LEVELS = _LEVELS[_LEVELS.index(tfcore._C.config()["kernel_isa"]) :]


@pytest.fixture(params=KERNEL_LEVELS)
def path(request):
    """Run the test on every kernel level this CPU runs: AVX-512, AVX2, the plain C reference."""
    prev = tfcore._C._set_isa(request.param)
    try:
        yield request.param
    finally:
        tfcore._C._set_isa(prev)
