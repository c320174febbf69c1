"""Op benchmarks: tfcore vs PyTorch, same process, same threads, interleaved, medians.

    python benchmarks/bench_ops.py [--quick] [--threads 1 2]

Sections: scaled-dot-product attention (B=1, H=12, D=64; L = S = 128 ... 8192, causal and
not; decode L=1 over 4096 cached keys), Linear and FeedForward on BERT-base shapes, and
the peak memory of SDPA at L = S = 16384 (measured in a child process). Every case checks
its output against torch before timing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import PEAK_RSS_PRELUDE, interleaved, isa_line, print_table  # noqa: E402
from dense import bench_feed_forward, bench_linear  # noqa: E402

import tfcore  # noqa: E402


def bench_sdpa(threads: int, quick: bool = False):
    rng = np.random.default_rng(0)
    rows = []
    lengths = [128, 512, 2048] if quick else [128, 512, 2048, 8192]
    cases = [(L, L, c) for L in lengths for c in (False, True)] + [(1, 4096, False)]
    for L, S, causal in cases:
        q = rng.standard_normal((1, 12, L, 64)).astype(np.float32)
        k = rng.standard_normal((1, 12, S, 64)).astype(np.float32)
        v = rng.standard_normal((1, 12, S, 64)).astype(np.float32)
        tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
        out = np.empty_like(q)

        def ours():
            return tfcore.functional.scaled_dot_product_attention(q, k, v, is_causal=causal, out=out)

        def theirs():
            return torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)

        with torch.inference_mode():
            err = float(np.abs(ours() - theirs().numpy()).max())
            if not err < 1e-4:
                raise SystemExit(f"SDPA L={L} S={S} causal={causal}: differs from torch by {err:.3g}")
            reps = 3 if (L >= 8192 or quick) else 9
            t = interleaved(
                {"tfcore": ours, "torch": theirs},
                repeat=reps,
                warmup=1 if L >= 8192 else 3,
                min_time=0.0 if L >= 2048 else 0.05,
            )
        flops = 4.0 * L * S * 64 * 12 * (0.5 if causal and L == S else 1.0)
        label = f"SDPA decode L=1 S={S}" if L == 1 else f"SDPA L=S={L}{' causal' if causal else ''}"
        extra = (
            f"{2 * 12 * S * 64 * 4 / t['tfcore'] / 1e9:.1f} GB/s"
            if L == 1
            else f"{flops / t['tfcore'] / 1e9:.0f} GFLOP/s"
        )
        rows.append(
            [
                label,
                threads,
                f"{t['tfcore'] * 1e3:.3f}",
                f"{t['torch'] * 1e3:.3f}",
                f"{t['torch'] / t['tfcore']:.2f}",
                extra,
            ]
        )
    return rows


_PEAK_CHILD = """
import numpy as np, tfcore
L = {L}
rng = np.random.default_rng(0)
q, k, v = (rng.standard_normal((1, 1, L, 64), dtype=np.float32) for _ in range(3))
current = reset_peak()
out = tfcore.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
print(peak_added(current), out.nbytes)
"""


def sdpa_peak_memory(L: int = 16384):
    """Peak RSS added by one SDPA call at L = S (child process, so earlier peaks don't hide it)."""
    res = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_PRELUDE + _PEAK_CHILD.format(L=L)],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )
    added, output = (int(x) for x in res.stdout.split())
    return added, output, L * L * 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    tfcore.show_config()
    print(isa_line())
    print(f"torch {torch.__version__}\n")
    headers = ["case", "threads", "tfcore ms", "torch ms", "torch/tfcore", "tfcore throughput"]
    rows = []
    for n in args.threads:
        tfcore.set_num_threads(n)
        torch.set_num_threads(n)
        rows += bench_sdpa(n, args.quick) + bench_linear(n, args.quick) + bench_feed_forward(n, args.quick)
    print_table(headers, rows)
    added, output, dense = sdpa_peak_memory()
    print(
        f"\nSDPA L=S=16384 (1 head, D=64, causal): peak RSS above the inputs {added / 2**20:.1f} MiB "
        f"(of which the output is {output / 2**20:.1f} MiB); an L x S float32 score matrix would be "
        f"{dense / 2**30:.1f} GiB"
    )


if __name__ == "__main__":
    main()
