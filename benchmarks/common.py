"""Shared timing helpers for the benchmarks: interleaved runs, medians, ratios.

Every benchmark validates its outputs before timing, runs tfcore and the peer in the same
process with the same thread count, warms up both, then alternates them so that machine
noise (the VM is shared) hits both sides alike.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Callable, Dict, List

# What holds every library of a run to AVX2 + FMA on a CPU with AVX-512 (a laptop-class CPU's
# code paths): tfcore's kernels, oneDNN (tfcore's, torch's mkldnn and OpenVINO's copy), torch's
# ATen kernels, MKL (torch's and CTranslate2's GEMMs) and CTranslate2's own kernels. ONNX
# Runtime's MLAS (and OpenVINO's copy of it) picks kernels by cpuid and has no such switch.
AVX2_ENV = {
    "TFCORE_ISA": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "CT2_FORCE_CPU_ISA": "AVX2",
}


def reexec_at_avx2_if_asked() -> None:
    """With --avx2 on the command line, restart this script with AVX2_ENV set (the switches
    must be in place before the libraries load); a no-op once they are."""
    if "--avx2" in sys.argv and any(os.environ.get(k) != v for k, v in AVX2_ENV.items()):
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable] + sys.argv, {**os.environ, **AVX2_ENV})


def interleaved(
    fns: Dict[str, Callable[[], object]],
    *,
    repeat: int = 15,
    warmup: int = 3,
    min_time: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
) -> Dict[str, float]:
    """Median seconds per call for each fn, timed alternately (a, b, a, b, ...).

    Each sample runs the fn `inner` times, chosen so a sample lasts >= min_time. clock:
    time.perf_counter (wall) or time.process_time (CPU seconds of all threads: on a shared
    machine the repeatable measure for one thread).
    """
    for _ in range(warmup):
        for f in fns.values():
            f()
    inner = 1
    if min_time > 0:
        t0 = time.perf_counter()
        for f in fns.values():
            f()
        one = (time.perf_counter() - t0) / max(len(fns), 1)
        inner = max(1, int(min_time / max(one, 1e-9)))
    samples: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for k, f in fns.items():
            t0 = clock()
            for _ in range(inner):
                f()
            samples[k].append((clock() - t0) / inner)
    return {k: statistics.median(v) for k, v in samples.items()}


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.3f}"


def print_table(headers: List[str], rows: List[List[object]]) -> None:
    """Markdown table to stdout."""
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")


def gemm_peak_gflops(repeat: int = 9, clock: Callable[[], float] = time.perf_counter) -> float:
    """fp32 GEMM GFLOP/s of tfcore (oneDNN) on this machine now, at the current thread
    count: (1024 x 2048) @ (2048 x 2048), median. Measured in the benchmark's own run
    because the shared VM's speed drifts between runs. clock as interleaved's (CPU time
    gives the per-core rate on a loaded machine, with one thread)."""
    import numpy as np

    import tfcore

    rng = np.random.default_rng(0)
    lin = tfcore.Linear(rng.standard_normal((2048, 2048), dtype=np.float32))
    x = rng.standard_normal((1024, 2048), dtype=np.float32)
    out = np.empty((1024, 2048), np.float32)
    t = interleaved({"gemm": lambda: lin(x, out=out)}, repeat=repeat, warmup=2, clock=clock)["gemm"]
    return 2 * 1024 * 2048 * 2048 / t / 1e9


# Python source a benchmark's child process starts with to measure the memory one step adds:
# reset_peak() resets the peak-RSS watermark (VmHWM) to the current RSS and returns that RSS;
# peak_added(since) is VmHWM - since. A fresh process per measurement keeps earlier peaks out.
PEAK_RSS_PRELUDE = """
def _status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))
def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status("VmRSS:")
def peak_added(since):
    return max(_status("VmHWM:") - since, 0)
"""


def isa_line() -> str:
    """Which instruction sets produced the numbers: tfcore's kernels (and the CPU's best),
    oneDNN's, and torch's (ATen CPU capability). Every benchmark prints it first."""
    import torch

    import tfcore

    info = tfcore._C.config()
    try:
        aten = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # older torch
        aten = "unknown"
    return (
        f"ISA: tfcore kernels {info['kernel_isa']} (CPU {info['cpu_isa']}), "
        f"oneDNN {info['onednn_isa']}, torch {aten}"
    )
