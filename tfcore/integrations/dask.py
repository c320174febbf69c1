"""tfcore.eval on a Dask cluster: ``tfcore.eval.embed(model, texts, engine=client)``.

Dask's conventions: a :class:`TfcoreModelPlugin` (a ``distributed.WorkerPlugin``) loads the
model once on every worker, present and future, with the worker's own thread count
(``nthreads``); the job's tasks go out with ``client.submit`` and come back through
``as_completed`` (progress on the driver). A worker that dies mid-job has its tasks rerun
by the scheduler on the others (``distributed.scheduler.allowed-failures``, default 3) and
the nanny starts a new one; the result is the same. The model travels as its directory
path, never its weights: the directory must be readable at the same path on every worker.

    from distributed import Client, LocalCluster
    client = Client(LocalCluster(n_workers=2, threads_per_worker=1))
    emb = tfcore.eval.embed(model, texts, engine=client)
"""

from __future__ import annotations

import math
from typing import Any, Callable, List, Optional

import numpy as np

from .. import _C
from . import _engines

try:
    from distributed import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - the module still imports; run() says what to install
    _WorkerPlugin = object


def _require():
    try:
        import distributed
    except ImportError as e:
        raise ImportError("engine=<distributed.Client> needs Dask: pip install 'tfcore[dask]'") from e
    return distributed


def _threads(worker) -> int:
    return max(1, int(getattr(getattr(worker, "state", worker), "nthreads", 1) or 1))


class TfcoreModelPlugin(_WorkerPlugin):
    """Loads a tfcore model once per Dask worker (memory-mapped from its directory) with the
    worker's nthreads as its threads; tasks find it with :func:`worker_model`.

        client.register_plugin(TfcoreModelPlugin(model))"""

    def __init__(self, model):
        self.spec = _engines.model_spec(model)
        cls, path, dtype = self.spec
        self.name = f"tfcore-model:{cls.__module__}.{cls.__qualname__}:{path}:{dtype}"

    def setup(self, worker) -> None:
        """Load the model on this worker (Dask calls it when the plugin is registered or the worker starts)."""
        _engines.worker_model(self.spec, _threads(worker))


def worker_model(spec):
    """The model of spec on the Dask worker running this task (loaded once per process)."""
    from distributed import get_worker

    return _engines.worker_model(spec, _threads(get_worker()))


def _task(kind: str, spec, tok, texts: List[str], sizes: List[int], params: dict):
    return _engines.run_task(kind, worker_model(spec), tok, texts, sizes, params)


def run(
    client,
    kind: str,
    model,
    tok,
    items: List[str],
    batches: List[np.ndarray],
    params: dict,
    show_progress: Optional[bool] = None,
    callback: Optional[Callable[[int, int], None]] = None,
    rows_per_task: Optional[int] = None,
) -> Any:
    """Run a job tfcore.eval planned (batches of indices into items) on the client's cluster;
    the result as the single-process loop makes it. callback(done, total) after each task."""
    distributed = _require()
    spec = _engines.model_spec(model)
    workers = client.scheduler_info().get("workers", {})
    if not workers:
        raise _C.TfcoreValueError("the Dask cluster has no workers")
    plugin = TfcoreModelPlugin(model)
    if hasattr(client, "register_plugin"):
        client.register_plugin(plugin, name=plugin.name)
    else:  # distributed < 2023.9
        client.register_worker_plugin(plugin, name=plugin.name)
    if rows_per_task is None:  # ~8 tasks per worker: balance, progress and cheap retries
        rows_per_task = max(1, math.ceil(len(items) / (8 * len(workers))))
    # hash=False: a key of this job's own. Scattered data is keyed by its hash by default, so
    # back-to-back jobs with one tokenizer shared a key that the previous job's release could
    # drop under the next job's tasks (they came back cancelled: measured, 1 job in ~20)
    [tok_future] = client.scatter([tok], broadcast=True, hash=False)
    groups = _engines.tasks(batches, rows_per_task)
    futures = {}
    for g in groups:
        idx = np.concatenate(g)
        fut = client.submit(
            _task,
            kind,
            spec,
            tok_future,
            [items[i] for i in idx],
            [len(b) for b in g],
            params,
            pure=False,
        )
        futures[fut] = idx
    out = _engines.Collector(kind, len(items), show_progress, callback)
    try:
        for fut, res in distributed.as_completed(list(futures), with_results=True):
            if isinstance(res, BaseException):  # a cancelled task comes back as its error
                raise _C.TfcoreError(f"Dask did not finish a task of this job: {type(res).__name__}: {res}")
            out.add(futures[fut], res)
    finally:
        client.cancel(list(futures) + [tok_future])
    return out.result()
