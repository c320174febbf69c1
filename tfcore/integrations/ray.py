"""tfcore.eval on a Ray cluster: ``tfcore.eval.embed(model, texts, engine="ray")``.

Ray's conventions: the job becomes a Ray Dataset (one row per task of a few planned
batches) mapped with ``map_batches`` over a callable class, :class:`TfcoreActor`, of which
Ray runs a pool of actors; each loads the model once (memory-mapped from its directory)
with its own CPU count (``num_cpus``) as threads. Results stream back to the driver
(progress) and land in input order. Ray Data restarts an actor that dies and reruns its
tasks, so the result is the same. The model travels as its directory path, never its
weights: the directory must be readable at the same path on every node.

    import ray; ray.init()                 # or ray.init(address="auto") on a cluster
    emb = tfcore.eval.embed(model, texts, engine="ray")
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .. import _C
from . import _engines


def _require():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ImportError("engine='ray' needs Ray Data: pip install 'tfcore[ray]'") from e
    if not hasattr(ray.data, "ActorPoolStrategy"):  # pragma: no cover - very old Ray
        raise ImportError("engine='ray' needs Ray Data with ActorPoolStrategy: pip install 'ray[data]>=2.30'")
    return ray


def _driver_code_paths(ray) -> List[str]:
    """The directories Ray put first on its workers' sys.path when this driver connected (the
    working directory of ray.init, and the script's directory), or [] if this Ray does not say."""
    try:
        job_config = ray._private.worker.global_worker.core_worker.get_job_config()
        return [str(p) for p in job_config.py_driver_sys_path]
    except Exception:  # noqa: BLE001 - a private API: no answer means no check
        return []


def _check_worker_path(ray) -> None:
    """Ray puts the driver's working directory (at ray.init) first on its workers' sys.path: a
    tfcore source tree there (a git checkout, say) would be what the actors import instead of
    the tfcore this driver runs, failing deep inside Ray (an unbuilt tree has no tfcore._C) or
    running other code. Refuse with the fix instead."""
    import os

    import tfcore

    here = os.path.realpath(os.path.dirname(tfcore.__file__))
    for d in _driver_code_paths(ray):
        there = os.path.join(d, "tfcore")
        if os.path.isfile(os.path.join(there, "__init__.py")) and os.path.realpath(there) != here:
            raise _C.TfcoreValueError(
                f"engine='ray': Ray's workers would import the tfcore in {there} (ray.init put {d} "
                f"first on their sys.path) instead of this one ({here}); call ray.init() from "
                "another directory"
            )


class TfcoreActor:
    """A Ray Data callable class: loads the model once per actor, then runs each row (a task:
    batch sizes and texts) as tfcore.eval does in one process and returns one row per text."""

    def __init__(self, kind: str, spec, tok, params: dict):
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
        self.kind, self.tok, self.params = kind, tok, params
        self.model = _engines.worker_model(spec, max(1, int(cpus)))

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, Any]:
        idx, parts = [], []
        for row_idx, texts, sizes in zip(batch["idx"], batch["texts"], batch["sizes"]):
            res = _engines.run_task(
                self.kind, self.model, self.tok, [str(t) for t in texts], [int(s) for s in sizes], self.params
            )
            idx.append(np.asarray(row_idx, np.int64))
            parts.append(res)
        out: Dict[str, Any] = {"idx": np.concatenate(idx)}
        if self.kind == "embed":
            out["vec"] = np.concatenate([p["vec"] for p in parts])
        elif self.kind == "score":
            out["ll"] = np.concatenate([p["ll"] for p in parts])
            out["n"] = np.concatenate([p["n"] for p in parts])
        else:
            out["text"] = np.array([s for p in parts for s in p["text"]], dtype=object)
        return out


def run(
    kind: str,
    model,
    tok,
    items: List[str],
    batches: List[np.ndarray],
    params: dict,
    show_progress: Optional[bool] = None,
    callback: Optional[Callable[[int, int], None]] = None,
    rows_per_task: Optional[int] = None,
    num_workers: Optional[int] = None,
    cpus_per_worker: int = 1,
) -> Any:
    """Run a job tfcore.eval planned on the connected Ray cluster (ray.init() first) with
    num_workers actors of cpus_per_worker CPUs each (default: as many as the cluster's CPUs
    allow); the result as the single-process loop makes it. callback(done, total) as
    results arrive."""
    ray = _require()
    if not ray.is_initialized():
        raise _C.TfcoreValueError("engine='ray' needs a connected Ray cluster: call ray.init() first")
    _check_worker_path(ray)
    spec = _engines.model_spec(model)
    if num_workers is None:
        num_workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus_per_worker)
    if rows_per_task is None:
        rows_per_task = max(1, math.ceil(len(items) / (8 * num_workers)))
    rows = []
    for g in _engines.tasks(batches, rows_per_task):
        idx = np.concatenate(g)
        rows.append({"idx": idx, "texts": [items[i] for i in idx], "sizes": [len(b) for b in g]})
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    ds = ds.map_batches(
        TfcoreActor,
        fn_constructor_args=(kind, spec, tok, params),
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=num_workers),
        num_cpus=cpus_per_worker,
    )
    out = _engines.Collector(kind, len(items), show_progress, callback)
    for b in ds.iter_batches(batch_format="numpy", batch_size=None):
        idx = np.asarray(b["idx"], np.int64)
        if kind == "embed":
            out.add(idx, {"vec": np.stack(b["vec"]) if b["vec"].dtype == object else b["vec"]})
        elif kind == "score":
            out.add(idx, {"ll": b["ll"], "n": b["n"]})
        else:
            out.add(idx, {"text": [str(s) for s in b["text"]]})
    return out.result()
