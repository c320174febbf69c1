"""Inputs the fuzzers (fuzz/run.py) once failed on, replayed through the same harness, plus
each target's seeds: every one must now end in a documented TfcoreError or succeed."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "fuzz"))

import harness  # noqa: E402

REGRESSIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz_regressions")
CASES = sorted(
    (target, name)
    for target in harness.TARGETS
    for name in (
        os.listdir(os.path.join(REGRESSIONS, target))
        if os.path.isdir(os.path.join(REGRESSIONS, target))
        else []
    )
)


@pytest.mark.parametrize("target,name", CASES, ids=[f"{t}/{n}" for t, n in CASES])
def test_regression_input(target, name):
    with open(os.path.join(REGRESSIONS, target, name), "rb") as f:
        harness.TARGETS[target](f.read())


@pytest.mark.parametrize("target", sorted(harness.TARGETS))
def test_seeds(target):
    seeds = list(harness.seeds(target))
    assert seeds
    for data in seeds:
        harness.TARGETS[target](data)


def test_there_are_regressions():
    assert CASES, "tests/fuzz_regressions is empty"
