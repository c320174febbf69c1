"""Shared timing helpers for the benchmarks: interleaved runs, medians, ratios.

Every benchmark validates its outputs before timing, runs tfcore and the peer in the same
process with the same thread count, warms up both, then alternates them so that machine
noise (the VM is shared) hits both sides alike.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List


def interleaved(fns: Dict[str, Callable[[], object]], *, repeat: int = 15, warmup: int = 3,
                min_time: float = 0.0) -> Dict[str, float]:
    """Median seconds per call for each fn, timed alternately (a, b, a, b, ...).

    Each sample runs the fn `inner` times, chosen so a sample lasts >= min_time.
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
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            samples[k].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in samples.items()}


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.3f}"


def print_table(headers: List[str], rows: List[List[object]]) -> None:
    """Markdown table to stdout."""
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
