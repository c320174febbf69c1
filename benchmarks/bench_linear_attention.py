"""Linear attention: the op's chunkwise, parallel and recurrent forms vs flash-linear-attention's
pure-PyTorch naive retention at 1k-32k tokens (time, peak memory, % of the in-run fp32 GEMM
rate), then decoding tokens/s of ~100M RetNet and GLA models against a same-size Llama with a
KV cache at several context lengths (and state vs KV-cache memory).

    python benchmarks/bench_linear_attention.py [--quick] [--full] [--threads 2] [--avx2]
        [--op-only | --decode-only] [--rate-only] [--cpu] [--lengths 1024,4096] [--contexts 128,4096,32768]

Op part: RetNet-shaped retention, batch 1, 8 heads, Dk=64, Dv=128, gammas 1 - 2^(-5-h).
Every length is first validated (chunkwise against fla's naive_retention, or against
tfcore's parallel form where the naive one would not fit), then timed interleaved in this
process (medians). fla's naive forms the (H, L, L) decay and score tensors, so it is timed up
to 4k only; parallel mode up to 4k (--full: 16k). The chunkwise rate (% of the in-run GEMM
rate) is of calls writing into a reused out= buffer; a fresh result's time is shown next to it
(at 16k+ the OS zeroing its pages on first touch is a visible share). Peak memory: one child process per
(length, method) resets the peak-RSS watermark and reports what one call adds.

Decode part: random-weight checkpoints (hidden 768, 12 layers, vocab 8000) written as
safetensors; each model is validated (prefill of 150 tokens + 10 recurrent / cached steps ==
the full forward of the 160 tokens), then one cache per model grows through the contexts in
increasing order (RetNet / GLA prefill chunkwise in 8k-token calls, the Llama's KV cache by its
prefill in 2k-token calls; not timed) and at each context single-token steps are timed
interleaved across the three models: tok/s (wall) and CPU ms per token (process time: at
--threads 1 what a step costs on a loaded machine), state vs KV-cache MiB, and the flatness
ratio (tok/s at the longest context / at the shortest). Contexts 128 and 4k by default, --full
adds 32k (one 32k prefill per model: minutes, most of it the Llama's attention).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    PEAK_RSS_PRELUDE,
    gemm_peak_gflops,
    interleaved,
    isa_line,
    print_table,
    reexec_at_avx2_if_asked,
)

reexec_at_avx2_if_asked()

import tfcore  # noqa: E402

H, DK, DV, CHUNK = 8, 64, 128, 64
GAMMAS = (1.0 - 2.0 ** (-5.0 - np.arange(H))).astype(np.float32)


def fla_naive_retention():
    """fla-core's naive_retention, loaded by path (importing the fla package pulls Triton)."""
    import importlib.util
    from importlib.metadata import files

    path = next(f.locate() for f in files("fla-core") if str(f).endswith("fla/ops/retention/naive.py"))
    spec = importlib.util.spec_from_file_location("fla_naive_retention", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.naive_retention


def qkv(L: int):
    rng = np.random.default_rng(L)
    q, k = (rng.standard_normal((1, H, L, DK), dtype=np.float32) for _ in range(2))
    return q, k, rng.standard_normal((1, H, L, DV), dtype=np.float32)


def gla_gates(L: int):
    """GLA's per-channel log-gates, logsigmoid(x) / 16 (its gate_logit_normalizer)."""
    x = np.random.default_rng(L + 1).standard_normal((1, H, L, DK), dtype=np.float32)
    return (-np.log1p(np.exp(-x)) / 16).astype(np.float32)


def chunkwise_flops(L: int) -> float:
    """Multiply-adds x 2 of the chunkwise form: per token the state read and update
    (2 Dk Dv each) and on average C/2 intra-chunk keys (Dk for the score, Dv for the value)."""
    return 2.0 * H * L * (2 * DK * DV + (CHUNK + 1) / 2 * (DK + DV))


CHILD = (
    PEAK_RSS_PRELUDE
    + """
import json, sys
import numpy as np
L, method = int(sys.argv[1]), sys.argv[2]
sys.path.insert(0, sys.argv[3])
from bench_linear_attention import qkv, GAMMAS, fla_naive_retention
import tfcore
q, k, v = qkv(L)
if method == "fla-naive":
    import torch
    naive = fla_naive_retention()
    t = [torch.from_numpy(x) for x in (q, k, v)]
    naive(*[x[:, :, :64].contiguous() for x in t])
    since = reset_peak()
    naive(*t)
else:
    w = [np.ascontiguousarray(x[:, :, :64]) for x in (q, k, v)]
    tfcore.functional.linear_attention(*w, decay=GAMMAS, mode=method)
    since = reset_peak()
    tfcore.functional.linear_attention(q, k, v, decay=GAMMAS, mode=method)
print(json.dumps({"added": peak_added(since)}))
"""
)


def peak_mib(L: int, method: str) -> str:
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(L), method, os.path.dirname(os.path.abspath(__file__))],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if r.returncode != 0:
        return f"failed ({r.stderr.strip().splitlines()[-1][:60] if r.stderr.strip() else r.returncode})"
    return f"{json.loads(r.stdout.strip().splitlines()[-1])['added'] / 2**20:.1f}"


def gemm_cpu_gflops(repeat: int = 9) -> float:
    """common.gemm_peak_gflops's GEMM (tfcore/oneDNN fp32, 1024x2048 @ 2048x2048) rated by
    the process's CPU time per call (median) instead of wall time."""
    rng = np.random.default_rng(0)
    lin = tfcore.Linear(rng.standard_normal((2048, 2048), dtype=np.float32))
    x = rng.standard_normal((1024, 2048), dtype=np.float32)
    out = np.empty((1024, 2048), np.float32)
    _, cpu = interleaved_wall_cpu({"gemm": lambda: lin(x, out=out)}, repeat=repeat, warmup=2)
    return 2 * 1024 * 2048 * 2048 / cpu["gemm"] / 1e9


def bench_op(lengths, full: bool, repeat: int, cpu_time: bool = False, rate_only: bool = False):
    import torch

    naive = fla_naive_retention()
    la = tfcore.functional.linear_attention
    if cpu_time:
        gemm = gemm_cpu_gflops()
        print(f"in-run fp32 GEMM rate (tfcore/oneDNN, 1024x2048x2048, CPU time): {gemm:.1f} GFLOP/s")
        print("op times below: median CPU time of the process per call (--cpu)\n")
    else:
        gemm = gemm_peak_gflops()
        print(f"in-run fp32 GEMM rate (tfcore/oneDNN, 1024x2048x2048): {gemm:.1f} GFLOP/s\n")
    rows = []
    for L in lengths:
        q, k, v = qkv(L)
        tq = [torch.from_numpy(x) for x in (q, k, v)]
        chunk = la(q, k, v, decay=GAMMAS)
        with_naive = L <= 4096 and not rate_only
        with_parallel = (L <= 4096 or full) and not rate_only
        ref = naive(*tq).numpy() if L <= 4096 else None  # validation even with rate_only
        if ref is None or not np.isfinite(ref).all():
            if ref is not None:  # exp2((i - j) log2 gamma) overflows above the diagonal before
                # the causal mask multiplies it by 0: inf * 0 = NaN once L log2(1/gamma_0) > 128
                print(
                    f"L={L}: fla's naive_retention returns NaN (its decay mask overflows); "
                    "validating against tfcore's parallel mode instead"
                )
            # the recurrence: O(L Dk Dv), where the parallel form's O(L^2) takes minutes
            ref = la(q, k, v, decay=GAMMAS, mode="parallel" if L <= 4096 else "recurrent")
        err = np.abs(chunk - ref).max() / np.abs(ref).max()
        assert err < 1e-4, f"L={L}: chunkwise differs from the reference by {err:.2e}"
        gate = gla_gates(L)
        gref = la(q, k, v, gate=gate, mode="parallel" if L <= 1024 else "recurrent")
        gla = la(q, k, v, gate=gate)
        if gref is not None:
            gerr = np.abs(gla - gref).max() / np.abs(gref).max()
            assert gerr < 1e-4, f"L={L}: gated chunkwise differs from parallel by {gerr:.2e}"
        # the kernel's rate is timed writing into a reused out= buffer (a fresh (1, 8, L, 128)
        # result is 64 MiB at 16k whose pages the OS zeroes on first touch, every call); the
        # fresh-result time is its own column
        out = np.empty_like(v)
        fns = {
            "chunkwise": lambda: la(q, k, v, decay=GAMMAS, out=out),
            "fresh": lambda: la(q, k, v, decay=GAMMAS),
            "gla": lambda: la(q, k, v, gate=gate, out=out),
        }
        if with_parallel:
            fns["parallel"] = lambda: la(q, k, v, decay=GAMMAS, mode="parallel")
        if with_naive:
            fns["fla-naive"] = lambda: naive(*tq)
        if L <= 1024 and not rate_only:
            fns["recurrent"] = lambda: la(q, k, v, decay=GAMMAS, mode="recurrent")
        reps = repeat if L <= 4096 else max(3, repeat // 3)
        if cpu_time:
            t = interleaved_wall_cpu(fns, repeat=reps, warmup=1)[1]
        else:
            t = interleaved(fns, repeat=reps, warmup=1)
        rate = chunkwise_flops(L) / t["chunkwise"] / 1e9
        grate = chunkwise_flops(L) / t["gla"] / 1e9
        rows.append(
            [
                L,
                f"{err:.1e}",
                f"{t['chunkwise'] * 1e3:.1f}",
                f"{t['fresh'] * 1e3:.1f}",
                f"{t['parallel'] * 1e3:.1f}" if "parallel" in t else "-",
                f"{t['recurrent'] * 1e3:.1f}" if "recurrent" in t else "-",
                f"{t['fla-naive'] * 1e3:.1f}" if "fla-naive" in t else "-",
                f"{t['fla-naive'] / t['chunkwise']:.1f}x" if "fla-naive" in t else "-",
                f"{rate:.1f} ({100 * rate / gemm:.0f}%)",
                f"{t['gla'] * 1e3:.1f}",
                f"{grate:.1f} ({100 * grate / gemm:.0f}%)",
                peak_mib(L, "chunkwise") if not rate_only else "-",
                peak_mib(L, "parallel") if with_parallel else "-",
                peak_mib(L, "fla-naive") if with_naive else "-",
            ]
        )
    print_table(
        [
            "L",
            "rel. err",
            "chunkwise ms (out=)",
            "chunkwise ms (fresh result)",
            "parallel ms",
            "recurrent ms",
            "fla naive ms",
            "naive / chunkwise",
            "chunkwise GFLOP/s (% GEMM)",
            "GLA-gated chunkwise ms (out=)",
            "gated GFLOP/s (% GEMM)",
            "chunkwise MiB",
            "parallel MiB",
            "fla naive MiB",
        ],
        rows,
    )


# ------------------------------------------------------------------ decode


def write_checkpoint(root, name, config, shapes):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    w = {}
    for key, shape in shapes.items():
        if key.endswith("norm.weight") or key.endswith("layernorm.weight") or "swish_gate" in key:
            w[key] = np.ones(shape, np.float32)
        elif key.endswith(".bias"):
            w[key] = np.full(shape, 3.0, np.float32)  # gates near 1 (slow decay)
        else:
            w[key] = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
    d = os.path.join(root, name)
    os.makedirs(d)
    save_file(w, os.path.join(d, "model.safetensors"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f)
    return d, sum(a.size for a in w.values())


def decode_checkpoints(root, C=768, layers=12, V=8000):
    common = {"hidden_size": C, "num_hidden_layers": layers, "vocab_size": V, "eos_token_id": None}
    top = {"model.embeddings.weight": (V, C), "model.norm.weight": (C,), "lm_head.weight": (V, C)}

    def fla(kind, heads, Kd, Vd, F, extra):
        shapes = dict(top)
        for i in range(layers):
            p = f"model.layers.{i}."
            shapes |= {
                p + "attn_norm.weight": (C,),
                p + "mlp_norm.weight": (C,),
                p + "attn.q_proj.weight": (Kd, C),
                p + "attn.k_proj.weight": (Kd, C),
                p + "attn.v_proj.weight": (Vd, C),
                p + "attn.g_proj.weight": (Vd, C),
                p + "attn.o_proj.weight": (C, Vd),
                p + "attn.g_norm_swish_gate.weight": (Vd // heads,),
                p + "mlp.gate_proj.weight": (F, C),
                p + "mlp.up_proj.weight": (F, C),
                p + "mlp.down_proj.weight": (C, F),
            }
            for key, shape in extra.items():
                shapes[p + key] = shape
        cfg = dict(
            common, model_type=kind, num_heads=heads, intermediate_size=F, expand_k=Kd / C, expand_v=Vd / C
        )
        return write_checkpoint(root, kind, cfg, shapes)

    retnet = fla("retnet", 8, C, 2 * C, 1024, {})
    gla = fla(
        "gla",
        4,
        C // 2,
        C,
        2048,
        {
            "attn.gk_proj.0.weight": (16, C),
            "attn.gk_proj.1.weight": (C // 2, 16),
            "attn.gk_proj.1.bias": (C // 2,),
        },
    )
    shapes = {"model.embed_tokens.weight": (V, C), "model.norm.weight": (C,), "lm_head.weight": (V, C)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (C,),
            p + "post_attention_layernorm.weight": (C,),
            **{p + f"self_attn.{n}_proj.weight": (C, C) for n in "qkvo"},
            p + "mlp.gate_proj.weight": (2048, C),
            p + "mlp.up_proj.weight": (2048, C),
            p + "mlp.down_proj.weight": (C, 2048),
        }
    llama = write_checkpoint(
        root,
        "llama",
        dict(common, model_type="llama", num_attention_heads=12, intermediate_size=2048, rms_norm_eps=1e-6),
        shapes,
    )
    return {"RetNet": retnet, "GLA": gla, "Llama (KV cache)": llama}


def prefill(m, cache, ids, piece):
    """Appends ids (1, n) to the cache in calls of at most piece tokens (only the last
    position's logits are computed)."""
    for s in range(0, ids.shape[1], piece):
        m(ids[:, s : s + piece], past_key_values=cache, logits_to_keep=1)


def cache_bytes(c) -> int:
    """Bytes of past-token memory: the whole fixed-size state of a RecurrentState, the keys and
    values of the tokens held by a KVCache (what it grows by, not its doubling capacity)."""
    if isinstance(c, tfcore.RecurrentState):
        return c.nbytes
    return sum(c.keys(i).nbytes + c.values(i).nbytes for i in range(c.num_layers))


def interleaved_wall_cpu(fns, repeat, warmup):
    """Like common.interleaved (alternating calls, medians) but also the median CPU time of
    the process per call: at one thread it is what a step costs however loaded the machine."""
    import time

    for _ in range(warmup):
        for f in fns.values():
            f()
    wall, cpu = {n: [] for n in fns}, {n: [] for n in fns}
    for _ in range(repeat):
        for n, f in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            f()
            cpu[n].append(time.process_time() - c0)
            wall[n].append(time.perf_counter() - w0)
    return {n: float(np.median(x)) for n, x in wall.items()}, {n: float(np.median(x)) for n, x in cpu.items()}


def bench_decode(contexts, repeat):
    """Validates every model, then grows ONE cache per model through the contexts in increasing
    order: RetNet / GLA prefill chunkwise (8k-token calls; linear in the context), the Llama's
    KV cache by its prefill (2k-token calls, attention over the whole cache), so the 32k
    context costs one 32k prefill per model rather than one per context. At each context the
    single-token steps of the three models are timed interleaved (the steps append to every
    cache alike, so the context grows by a few tokens per row; the table says the length)."""
    import time

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as root:
        ckpts = decode_checkpoints(root)
        models = {name: tfcore.AutoModelForCausalLM.from_pretrained(d) for name, (d, _) in ckpts.items()}
        # validate: prefill of 150 tokens (chunkwise across chunk boundaries for RetNet / GLA)
        # then 10 recurrent / cached steps == the full forward of the 160 tokens
        ids = rng.integers(0, 8000, (1, 160))
        for name, m in models.items():
            full = m(ids).logits
            cache = m.new_cache(1, 192)
            parts = [m(ids[:, :150], past_key_values=cache).logits]
            parts += [m(ids[:, t : t + 1], past_key_values=cache).logits for t in range(150, 160)]
            err = np.abs(np.concatenate(parts, 1) - full).max() / np.abs(full).max()
            assert err < 1e-4, f"{name}: decoding differs from the full forward by {err:.2e}"
            print(f"{name}: prefill 150 + 10 decode steps vs full forward, max rel. err {err:.1e}")
        contexts = sorted(contexts)
        steps_per_ctx = repeat + 2  # interleaved(): warm-up 2 + repeat timed calls
        caches = {
            n: m.new_cache(1, contexts[-1] + steps_per_ctx * len(contexts) + 8) for n, m in models.items()
        }
        pieces = {n: 8192 if isinstance(caches[n], tfcore.RecurrentState) else 2048 for n in models}
        prompt = rng.integers(0, 8000, (1, contexts[-1]))
        tok = np.array([[7]])
        rows, tps, cpus, prefill_s = (
            [],
            {n: [] for n in models},
            {n: [] for n in models},
            {n: 0.0 for n in models},
        )
        for ctx in contexts:
            steps = {}
            for name, m in models.items():
                c = caches[name]
                have = c.get_seq_length()
                if ctx > have:
                    t0 = time.perf_counter()
                    prefill(m, c, prompt[:, have:ctx], pieces[name])
                    prefill_s[name] += time.perf_counter() - t0
                steps[name] = lambda m=m, c=c: m(tok, past_key_values=c, logits_to_keep=1)
            length = caches[next(iter(models))].get_seq_length()
            t, cpu = interleaved_wall_cpu(steps, repeat=repeat, warmup=2)
            for n in models:
                tps[n].append(1 / t[n])
                cpus[n].append(cpu[n])
            rows.append(
                [f"{ctx} ({length})"]
                + [f"{1 / t[n]:.1f} ({1e3 * cpu[n]:.1f})" for n in models]
                + [f"{cache_bytes(caches[n]) / 2**20:.1f}" for n in models]
            )
            print(  # as it goes: the 32k prefill takes minutes
                f"context {ctx}: "
                + ", ".join(
                    f"{n} {rows[-1][1 + i]} tok/s (CPU ms/token), {rows[-1][1 + len(models) + i]} MiB"
                    for i, n in enumerate(models)
                )
                + "; prefill so far "
                + ", ".join(f"{n} {prefill_s[n]:.0f} s" for n in models),
                flush=True,
            )
        params = ", ".join(f"{n} {p / 1e6:.0f}M" for n, (_, p) in ckpts.items())
        print(f"\nparameters: {params}; batch 1, greedy single-token steps, median of {repeat}\n")
        print_table(
            ["context (length at timing)"]
            + [f"{n} tok/s (CPU ms/token)" for n in models]
            + [
                f"{n} {'state' if isinstance(caches[n], tfcore.RecurrentState) else 'KV cache'} MiB"
                for n in models
            ],
            rows,
        )
        print(
            f"\nflatness, tok/s at context {contexts[-1]} / at {contexts[0]}: "
            + ", ".join(f"{n} {tps[n][-1] / tps[n][0]:.2f}" for n in models)
            + "; in CPU time per token (robust to a shared machine at --threads 1): "
            + ", ".join(f"{n} {cpus[n][0] / cpus[n][-1]:.2f}" for n in models)
        )
        print(
            f"prefill to {contexts[-1]} (not in the tok/s): "
            + ", ".join(f"{n} {prefill_s[n]:.0f} s" for n in models)
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="L = 1k, 4k; contexts 128, 1k; fewer repeats")
    ap.add_argument("--full", action="store_true", help="parallel mode at 16k; decode context 32k")
    ap.add_argument("--avx2", action="store_true", help="hold every library to AVX2 (see common.py)")
    ap.add_argument("--op-only", action="store_true", help="skip the decoding part")
    ap.add_argument("--decode-only", action="store_true", help="skip the op part")
    ap.add_argument(
        "--rate-only",
        action="store_true",
        help="op part: only the chunkwise forms (validated) and their %% of the GEMM rate",
    )
    ap.add_argument(
        "--cpu",
        action="store_true",
        help="op part: rate by CPU time per call (use with --threads 1 on a loaded machine)",
    )
    ap.add_argument("--lengths", help="op lengths, comma-separated (default 1k, 4k, 16k, 32k)")
    ap.add_argument("--contexts", help="decode contexts, comma-separated (default 128, 4k; --full adds 32k)")
    args = ap.parse_args()
    tfcore.set_num_threads(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    print(isa_line())
    print(f"threads: {args.threads} (tfcore and torch); shared machine: compare ratios, not absolute times\n")
    lengths = [1024, 4096] if args.quick else [1024, 4096, 16384, 32768]
    if args.lengths:
        lengths = [int(x) for x in args.lengths.split(",")]
    repeat = 5 if args.quick else 9
    if not args.decode_only:
        bench_op(lengths, args.full, repeat, args.cpu, args.rate_only)
        print()
    if args.op_only:
        return
    contexts = [128, 1024] if args.quick else [128, 4096] + ([32768] if args.full else [])
    if args.contexts:
        contexts = [int(x) for x in args.contexts.split(",")]
    bench_decode(contexts, 9 if args.quick else 21)


if __name__ == "__main__":
    main()
