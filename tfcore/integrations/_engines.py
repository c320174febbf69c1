"""What the Ray and Dask engines share: the job a worker runs, the per-process model cache,
and the driver's dispatch.

A job is the list of batches tfcore.eval planned on the driver (length-sorted, as one process
would run them), cut into tasks of a few batches. A task carries the model's spec (class,
directory, dtype), never its weights: each worker process loads the model once from the
directory (memory-mapped safetensors) and keeps it for every later task and job."""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import _C

ModelSpec = Tuple[type, str, str]

_models: Dict[Tuple[ModelSpec, int], Any] = {}
_lock = threading.Lock()  # one load at a time, and one tfcore call at a time per worker process


def model_spec(model) -> ModelSpec:
    """(class, directory, dtype): how a worker loads the same model."""
    from ..models.base import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        raise _C.TfcoreTypeError(
            f"engine= needs a tfcore model loaded with from_pretrained, got {type(model).__name__}"
        )
    path = getattr(model, "name_or_path", None)
    if not path or not os.path.isdir(path):
        raise _C.TfcoreValueError(
            f"engine= needs the model's checkpoint directory on every worker; {path!r} is not a directory here"
        )
    return (type(model), os.path.abspath(path), model.dtype)


def worker_model(spec: ModelSpec, threads: int):
    """The model of spec in this process, loaded on first use with `threads` threads."""
    key = (spec, threads)
    with _lock:
        m = _models.get(key)
        if m is None:
            cls, path, dtype = spec
            _share_weights()
            _restore_allocator_thresholds()
            m = _models[key] = cls.from_pretrained(path, dtype=dtype, threads=threads)
        return m


# glibc's malloc tunables that, set in the environment, switch off its adaptive mmap
# threshold (Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in every worker)
_MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def _restore_allocator_thresholds() -> None:
    """Give glibc's allocator back the thresholds it adapts to by itself (mmap threshold
    32 MiB, trim threshold twice that) in a worker whose environment pinned them. Dask pins
    MALLOC_TRIM_THRESHOLD_=65536 so that workers return freed memory at once; glibc then
    keeps its mmap threshold at 128 KiB, so every activation array of a forward pass (MiBs)
    was mmapped, faulted in and unmapped again: measured on MiniLM, 2,000 sentences on one
    thread, 2.1 s of system time on top of 8.8 s (+24%), against 0.04 s with the thresholds
    restored. The cost: up to 64 MiB of freed memory may stay with the worker."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc" or not any(k in os.environ for k in _MALLOC_ENV):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
    mallopt(M_MMAP_THRESHOLD, 32 << 20)
    mallopt(M_TRIM_THRESHOLD, 64 << 20)


def _share_weights() -> None:
    """Workers of one machine map one copy of the packed weights (tfcore.set_weight_cache)
    instead of each packing its own: the default cache directory unless the worker already
    has one; a directory that cannot be used leaves the worker with private weights."""
    from .._runtime import default_weight_cache, get_weight_cache, set_weight_cache

    if get_weight_cache() is None:
        try:
            set_weight_cache(default_weight_cache())
        except _C.TfcoreError:
            pass


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_task(kind: str, model, tok, texts: List[str], sizes: Sequence[int], params: dict) -> Dict[str, Any]:
    """One task: consecutive batches (their sizes in `sizes`, texts concatenated) run exactly as
    tfcore.eval runs them in one process. Returns arrays in the order of texts."""
    from .. import eval as tf_eval

    parts: List[Any] = []
    start = 0
    with _lock:
        for n in sizes:
            batch = texts[start : start + n]
            try:
                if kind == "embed":
                    parts.append(
                        tf_eval.embed_batch(
                            model, tok, batch, params["pooling"], params.get("prompt_length", 0)
                        )
                    )
                elif kind == "score":
                    parts.append(tf_eval.score_batch(model, tok, batch))
                else:
                    parts.append(tf_eval.generate_batch(model, tok, batch, params["stop"], params["kwargs"]))
            except _C.TfcoreError as e:
                raise type(e)(f"{e} (in a batch starting with {batch[0]!r:.80})") from None
            start += n
    if kind == "embed":
        return {"vec": np.concatenate(parts)}
    if kind == "score":
        return {"ll": np.concatenate([p[0] for p in parts]), "n": np.concatenate([p[1] for p in parts])}
    return {"text": [s for p in parts for s in p]}


def tasks(batches: List[np.ndarray], rows_per_task: int) -> List[List[np.ndarray]]:
    """Consecutive batches grouped so that each task holds about rows_per_task rows."""
    out: List[List[np.ndarray]] = []
    cur: List[np.ndarray] = []
    rows = 0
    for b in batches:
        cur.append(b)
        rows += len(b)
        if rows >= rows_per_task:
            out.append(cur)
            cur, rows = [], 0
    if cur:
        out.append(cur)
    return out


class Collector:
    """Driver-side assembly of task results into input order, with progress."""

    def __init__(
        self, kind: str, n: int, show_progress: Optional[bool], callback: Optional[Callable[[int, int], None]]
    ):
        from .._progress import enabled

        self.kind, self.n, self.done = kind, n, 0
        self.callback = callback
        self.bar = None
        if enabled(show_progress):
            try:
                import sys

                from tqdm.auto import tqdm

                self.bar = tqdm(total=n, desc=kind, unit="text", leave=False, file=sys.stderr)
            except ImportError:
                pass
        self.vec: Optional[np.ndarray] = None
        self.ll = np.zeros(n, np.float64)
        self.ntok = np.zeros(n, np.int64)
        self.text: List[str] = [""] * n

    def add(self, idx: np.ndarray, res: Dict[str, Any]) -> None:
        if self.kind == "embed":
            v = np.asarray(res["vec"], np.float32)
            if self.vec is None:
                self.vec = np.empty((self.n, v.shape[-1]), np.float32)
            self.vec[idx] = v
        elif self.kind == "score":
            self.ll[idx] = res["ll"]
            self.ntok[idx] = res["n"]
        else:
            for i, s in zip(idx, res["text"]):
                self.text[i] = s
        self.done += len(idx)
        if self.bar is not None:
            self.bar.update(len(idx))
        if self.callback is not None:
            self.callback(self.done, self.n)

    def result(self):
        if self.bar is not None:
            self.bar.close()
        if self.done != self.n:
            raise _C.TfcoreError(f"the engine returned {self.done} of {self.n} results")
        if self.kind == "embed":
            return self.vec
        if self.kind == "score":
            return self.ll, self.ntok
        return self.text


def check(engine) -> None:
    """engine is None, "ray" or a distributed.Client; anything else is named."""
    if engine is None:
        return
    if isinstance(engine, str) and engine == "ray":
        from .ray import _require

        if not _require().is_initialized():
            raise _C.TfcoreValueError("engine='ray' needs a connected Ray cluster: call ray.init() first")
        return
    if type(engine).__module__.startswith("distributed") and type(engine).__name__ == "Client":
        return
    raise _C.TfcoreValueError(f"engine must be None, 'ray' or a distributed.Client, got {engine!r:.80}")


def run(engine, kind, model, tok, items, batches, params, show_progress, callback=None, rows_per_task=None):
    """Run a planned job on engine; the result as tfcore.eval's single-process loop makes it."""
    check(engine)
    if isinstance(engine, str):
        from . import ray as tf_ray

        return tf_ray.run(kind, model, tok, items, batches, params, show_progress, callback, rows_per_task)
    from . import dask as tf_dask

    return tf_dask.run(
        engine, kind, model, tok, items, batches, params, show_progress, callback, rows_per_task
    )
