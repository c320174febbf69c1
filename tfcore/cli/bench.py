"""Run the benchmark suite (benchmarks/run_all.py of a source checkout: tfcore against
PyTorch and ONNX Runtime, validated first) and write its markdown report. Needs the bench
extra: pip install 'tfcore[bench]' from the checkout."""

from __future__ import annotations

import os
import subprocess
import sys

NAME, HELP = "bench", "run the benchmark suite of a source checkout (benchmarks/run_all.py)"


def add_arguments(p):
    p.add_argument(
        "--dir", default=None, help="the checkout's benchmarks/ directory (default: found from here)"
    )
    p.add_argument("rest", nargs="*", help="arguments for run_all.py (e.g. -- --quick --threads 2)")


def find_suite(explicit):
    candidates = (
        [explicit]
        if explicit
        else [
            os.path.join(os.getcwd(), "benchmarks"),
            os.path.join(
                os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "benchmarks"
            ),
        ]
    )
    for d in candidates:
        if d and os.path.isfile(os.path.join(d, "run_all.py")):
            return os.path.join(d, "run_all.py")
    return None


def run(args):
    import tfcore

    script = find_suite(args.dir)
    if script is None:
        raise tfcore.TfcoreValueError(
            "the benchmark suite is not part of the installed package: run this from a "
            "source checkout (git clone ...; pip install '.[bench]') or pass --dir"
        )
    return subprocess.call([sys.executable, script, *args.rest])
