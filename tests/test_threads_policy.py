"""Issue 23 point 2: threads beside other work, and thread counts honoured exactly.

The timing bounds (beside a busy core, and on a quiet machine) are measured by
benchmarks/bench_busy_threads.py; these tests check only that the policy is applied, in child
processes (the suite itself runs on an explicit thread count, see conftest.py): with nothing
set, a process spinning on one CPU (started and stopped here) leaves tfcore's default at most
CPUs - 1 threads; OMP_NUM_THREADS or set_num_threads is honoured exactly beside it; more
threads than CPUs are refused."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import package_parent

import tfcore

BUSY_CHILD = (
    "import time, sys, numpy as np, tfcore\n"
    "if len(sys.argv) > 1: tfcore.set_num_threads(int(sys.argv[1]))\n"
    "lin = tfcore.Linear(np.ones((256, 256), np.float32)); x = np.ones((64, 256), np.float32)\n"
    "end = time.perf_counter() + 0.6\n"
    "while time.perf_counter() < end: lin(x)\n"
    "print('THREADS', tfcore.get_num_threads(), tfcore._C.config()['threads_adaptive'])\n"
)


@pytest.fixture
def busy_cpu0():
    """Another process spinning on CPU 0 for the duration of the test."""
    spin = subprocess.Popen(
        [sys.executable, "-c", "import os\nos.sched_setaffinity(0, {0})\nwhile True: pass"]
    )
    try:
        yield
    finally:
        spin.kill()
        spin.wait()


@pytest.mark.skipif(tfcore._C.config()["omp_num_procs"] < 2, reason="needs 2 CPUs")
def test_default_threads_leave_a_busy_cpu_to_its_process(busy_cpu0):
    n = tfcore._C.config()["omp_num_procs"]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}

    def run(*args, **extra):
        p = subprocess.run(
            [sys.executable, "-c", BUSY_CHILD, *map(str, args)],
            cwd=package_parent(), env={**env, **extra}, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        _, threads, adaptive = p.stdout.split()
        return int(threads), adaptive == "1"

    threads, adaptive = run()
    assert adaptive and 1 <= threads <= n - 1  # the busy CPU is left to its process
    assert run(OMP_NUM_THREADS=str(n)) == (n, False)  # explicit: exactly what was asked
    assert run(n) == (n, False)


def test_more_threads_than_cpus_refused():
    n = tfcore._C.config()["omp_num_procs"]
    with pytest.raises(tfcore.TfcoreValueError, match=f"on {n} CPUs"):
        with tfcore.threads(n + 1):
            pass
    with pytest.raises(tfcore.TfcoreValueError, match=f"on {n} CPUs"):
        with tfcore.threads(1000):
            pass
    with pytest.raises(tfcore.TfcoreValueError, match=f"on {n} CPUs"):
        tfcore.set_num_threads(n + 1)
    with tfcore.threads(n):  # every CPU is fine
        assert tfcore.get_num_threads() == n
