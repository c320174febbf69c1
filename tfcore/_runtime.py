"""Runtime controls that know no model: thread count (process-wide, per Python thread and
per model), weight precisions, and the configuration report."""

from __future__ import annotations

import contextlib
import functools
import platform
from typing import Callable, Iterator

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


def with_model_threads(method: Callable) -> Callable:
    """Run a model method on the model's own thread count (from_pretrained(threads=n)),
    if it has one, instead of the process-wide tfcore.set_num_threads()."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        n = getattr(self, "threads", None)
        if n is None:
            return method(self, *args, **kwargs)
        with threads(n):
            return method(self, *args, **kwargs)

    return run


DTYPE_ALIASES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "int8": "int8",
    "qint8": "int8",
}
# the instructions that make each precision fast, for error messages
DTYPE_NEEDS = {"bfloat16": "AVX512_BF16 or AMX", "int8": "AVX512_VNNI or AVX_VNNI"}


def supported_dtypes() -> list:
    """The weight precisions this CPU runs fast: always ``"float32"``, plus ``"bfloat16"``
    where oneDNN has a native bf16 matmul (AVX512_BF16 or AMX) and ``"int8"`` where it has
    a VNNI int8 matmul. Asking a model or layer for a precision not listed raises
    ValueError instead of running an emulated slow path."""
    c = _C.config()
    return ["float32"] + (["bfloat16"] if c["bf16_matmul"] else []) + (["int8"] if c["int8_matmul"] else [])


def canonical_dtype(dtype) -> str:
    """'float32', 'bfloat16' or 'int8' from a name (HF spellings and torch/NumPy dtypes
    accepted), checked against supported_dtypes()."""
    name = str(dtype).replace("torch.", "")
    canon = DTYPE_ALIASES.get(name)
    if canon is None:
        raise _C.TfcoreValueError(f"dtype must be one of 'float32', 'bfloat16' or 'int8', got {dtype!r}")
    if canon not in supported_dtypes():
        raise _C.TfcoreValueError(
            f"dtype={canon!r} is not fast on this CPU (no {DTYPE_NEEDS[canon]}); "
            f"supported here: {supported_dtypes()}"
        )
    return canon


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
        ("tfcore kernels", f"{info['kernel_isa']} (CPU: {info['cpu_isa']})"),
        *((f"  {family}", level) for family, level in info["kernels"].items()),
        ("dtypes", ", ".join(supported_dtypes())),
        ("threads", f"{info['num_threads']} (of {info['omp_num_procs']} CPUs)"),
        ("Python", info["python"]),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
