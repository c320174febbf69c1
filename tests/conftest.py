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


@pytest.fixture(params=["fast", "reference"])
def path(request):
    """Run the test on both the AVX-512 path and the plain C reference path."""
    prev = tfcore._C._set_reference_kernels(request.param == "reference")
    try:
        yield request.param
    finally:
        tfcore._C._set_reference_kernels(prev)
