"""Thread control and configuration report."""
from __future__ import annotations

import contextlib
import platform
from typing import Iterator

from . import _C


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the tfcore calls made by this Python thread inside the block on ``n`` threads.

    >>> with tfcore.threads(1):
    ...     y = layer(x)
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise _C.TfcoreValueError(f"threads(n) needs an int n >= 1, got {n!r}")
    prev = _C._set_thread_override(n)
    try:
        yield
    finally:
        _C._set_thread_override(prev)


def config() -> dict:
    """The configuration as a dict (what show_config prints)."""
    from . import _ONEDNN_PATH, __version__

    info = dict(_C.config())
    info["tfcore_version"] = __version__
    info["onednn_library"] = _ONEDNN_PATH
    info["python"] = platform.python_version()
    return info


def show_config() -> None:
    """Print the oneDNN version, threading runtime, ISA and thread count."""
    info = config()
    rows = [
        ("tfcore", info["tfcore_version"]),
        ("oneDNN", f"{info['onednn_version']} ({info['onednn_hash'][:12]})"),
        ("oneDNN library", info["onednn_library"]),
        ("CPU runtime", info["cpu_runtime"]),
        ("oneDNN ISA", info["onednn_isa"]),
        ("tfcore kernels", info["kernel_path"]),
        ("threads", f"{info['num_threads']} (of {info['omp_num_procs']} CPUs)"),
        ("Python", info["python"]),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
