"""Runtime controls that know no model: thread count (process-wide, per Python thread and
per model), weight precisions, and the configuration report."""

from __future__ import annotations

import contextlib
import copyreg
import functools
import os
import platform
from typing import Callable, Iterator, Optional, Union

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
    "int4": "int4",
    "int4_g128": "int4",
    "int4_g32": "int4_g32",
    "int4_g64": "int4_g64",
    "int4_g256": "int4_g256",
}


def supported_dtypes() -> dict:
    """The weight precisions, each with how this CPU runs it. Every x86-64 CPU runs all three:
    ``"float32"``; ``"bfloat16"`` natively with AVX512_BF16 or AMX, elsewhere as bf16 weights
    widened to float32 on the fly (half the weight memory, and half the bytes a decode step
    reads); ``"int8"`` natively with VNNI, elsewhere with 7-bit weights on oneDNN's AVX2 int8
    GEMM (a quarter of the memory; 7 bits so its 16-bit pair sums cannot saturate, as
    fbgemm's and ONNX Runtime's ``reduce_range`` do); ``"int4"``: 4-bit weights with a float
    scale and offset per group of 128 inputs (``"int4_g32"``, ``"int4_g64"``, ``"int4_g256"``
    choose the group), int8 dot products of the AVX2 / AVX-512 kernels for decoding (a few
    rows), dequantized slices for oneDNN's float32 GEMM for more. Iterating gives the names;
    ``supported_dtypes()[name]`` says which it is."""
    c = _C.config()
    return {
        "float32": "native",
        "bfloat16": "native (AVX512_BF16)"
        if c["bf16_matmul"]
        else "bf16 weights widened to float32 (no AVX512_BF16 here)",
        "int8": "native (VNNI)" if c["int8_matmul"] else "7-bit weights, AVX2 int8 GEMM (no VNNI here)",
        "int4": f"4-bit weights, group 128, tfcore kernels ({c['kernels']['int4']})",
    }


def canonical_dtype(dtype) -> str:
    """'float32', 'bfloat16', 'int8' or 'int4' (or 'int4_g32' / '_g64' / '_g256') from a name (HF spellings), a NumPy dtype or type
    (``np.float32``, ``np.dtype("int8")``) or a torch dtype (``torch.bfloat16``)."""
    if isinstance(dtype, type) or type(dtype).__module__.startswith("numpy"):
        try:
            import numpy as np

            dtype = np.dtype(dtype).name
        except TypeError:
            pass
    name = str(dtype).replace("torch.", "")
    canon = DTYPE_ALIASES.get(name)
    if canon is None:
        raise _C.TfcoreValueError(
            f"dtype must be one of 'float32', 'bfloat16', 'int8' or 'int4' ('int4_g32', 'int4_g64', "
            f"'int4_g256' for other group sizes), got {dtype!r}"
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


def default_weight_cache() -> str:
    """Where tfcore's engine workers share packed weights unless told otherwise:
    ``$TFCORE_WEIGHT_CACHE``, else ``$XDG_CACHE_HOME/tfcore/weights`` (``~/.cache/tfcore/weights``)."""
    env = os.environ.get("TFCORE_WEIGHT_CACHE")
    if env:
        return os.path.abspath(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(base), "tfcore", "weights")


def set_weight_cache(directory: Union[str, "os.PathLike[str]", None]) -> Optional[str]:
    """Share the packed weights of models loaded from now on with other processes of this
    machine, through files in ``directory`` (created if missing; ``None`` stops sharing).

    Every tfcore process packs each weight matrix into a layout of its own (oneDNN's
    blocked format): a private copy per process, ~40 MiB for MiniLM, ~330 MiB for
    BERT-base. With a weight cache the packed bytes are written once to a file named by
    their hash and mapped from there, so the workers of a Dask or Ray job, or several
    notebooks, hold one copy in the page cache between them. A file is used only if its
    bytes equal the ones just packed (never stale; a damaged file is ignored), so the cache
    can be deleted at any time while no model loaded from it is alive; it grows by the
    packed size of each new model/dtype/CPU kind (``du -sh`` it). Load time is unchanged:
    packing still happens, the cache saves memory. tfcore's Dask and Ray workers turn it on
    with :func:`default_weight_cache`. ``$TFCORE_WEIGHT_CACHE`` set when tfcore is
    imported turns it on for the process. Returns the previous directory or None."""
    if directory is None:
        return _C._set_weight_cache(None)
    if not isinstance(directory, (str, os.PathLike)):
        raise _C.TfcoreTypeError(f"directory must be a path or None, got {type(directory).__name__}")
    path = os.path.abspath(os.fspath(directory))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise _C.TfcoreValueError(
            f"weight cache {path}: cannot create the directory ({e.strerror})"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise _C.TfcoreValueError(f"weight cache {path}: the directory is not writable")
    return _C._set_weight_cache(path)


def weight_cache_from_env() -> None:
    """At import: $TFCORE_WEIGHT_CACHE, when set, turns the weight cache on (a warning, not
    an import error, if the directory cannot be used)."""
    env = os.environ.get("TFCORE_WEIGHT_CACHE")
    if env:
        try:
            set_weight_cache(env)
        except _C.TfcoreError as e:
            import warnings

            warnings.warn(f"TFCORE_WEIGHT_CACHE ignored: {e}", RuntimeWarning, stacklevel=3)


def get_weight_cache() -> Optional[str]:
    """The directory set by :func:`set_weight_cache` (or ``$TFCORE_WEIGHT_CACHE``), or None."""
    return _C._get_weight_cache()


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
        *((f"dtype {name}", how) for name, how in supported_dtypes().items()),
        (
            "threads",
            f"{info['num_threads']} (of {info['omp_num_procs']} CPUs; "
            + (
                "default: the CPUs other processes leave free)"
                if info["threads_adaptive"]
                else "set by OMP_NUM_THREADS or set_num_threads)"
            ),
        ),
        ("weight cache", get_weight_cache() or "off (tfcore.set_weight_cache)"),
        ("Python", info["python"]),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def _linear_from_state(weight, bias, activation, dtype):
    """Rebuild a pickled tfcore.Linear (weights unpacked to float32, packed again here)."""
    return _C.Linear(weight, bias, activation, dtype=dtype)


def _reduce_linear(layer):
    """Pickle a Linear by its weights (float32; for int8 the dequantized q * scale, which
    quantizes back to the same q), bias, activation and dtype."""
    return _linear_from_state, (layer.weight, layer.bias, layer.activation, layer.dtype)


copyreg.pickle(_C.Linear, _reduce_linear)


def _conv_from_state(kind, weight, bias, stride, padding, dilation, groups, activation, dtype):
    """Rebuild a pickled tfcore.Conv1d / Conv2d (weights unpacked to float32, packed again)."""
    layer = _C.Conv1d if kind == "Conv1d" else _C.Conv2d
    return layer(weight, bias, stride, padding, dilation, groups, activation=activation, dtype=dtype)


def _reduce_conv(layer):
    """Pickle a Conv1d / Conv2d by its weights and bias (BatchNorm already folded in; for int8
    the dequantized values, which quantize back to the same integers where the CPU has VNNI),
    geometry, activation and dtype. Padding is only ever asymmetric for padding='same'."""
    pads = layer.padding
    padding = tuple(p[0] for p in pads) if all(p[0] == p[1] for p in pads) else "same"
    return _conv_from_state, (
        type(layer).__name__,
        layer.weight,
        layer.bias,
        layer.stride,
        padding,
        layer.dilation,
        layer.groups,
        layer.activation,
        layer.dtype,
    )


copyreg.pickle(_C.Conv1d, _reduce_conv)
copyreg.pickle(_C.Conv2d, _reduce_conv)
