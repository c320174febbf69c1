"""Helpers for 'memory stays flat over repeated calls' tests."""

from __future__ import annotations

import gc


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import resource

    return pages * resource.getpagesize()


def rss_growth(fn, calls: int = 1000, warmup: int = 50) -> int:
    """Bytes of resident memory gained over `calls` calls of fn, after a warm-up."""
    for _ in range(warmup):
        fn()
    gc.collect()
    before = rss_bytes()
    for _ in range(calls):
        fn()
    gc.collect()
    return rss_bytes() - before
