"""Coverage-guided fuzzing of one target of fuzz/harness.py with atheris (libFuzzer).

    python fuzz/run.py TARGET [--seconds 60 | --runs N] [-- libFuzzer args...]

TARGET is one of harness.TARGETS (safetensors, config, ops, linear_attention, rwkv, gguf, gguf_int4,
gptq_awq, ctranslate2_whisper, wav). The corpus grows in fuzz/corpus/TARGET (seeded from
harness.seeds); a failing input is written to fuzz/crashes/TARGET-<hash> - copy it to
tests/fuzz_regressions/TARGET/ once fixed so tests replay it. Python code of tfcore is
instrumented for coverage; the C extension is exercised but not instrumented (libFuzzer
sees its effect through the Python paths it takes and through crashes).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

with atheris.instrument_imports(include=["tfcore", "harness"]):
    import harness


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", choices=sorted(harness.TARGETS))
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument(
        "--runs",
        type=int,
        default=None,
        help="a fixed number of inputs from a fixed seed instead of a time budget (repeatable: CI)",
    )
    args, extra = ap.parse_known_args()
    corpus = os.path.join(HERE, "corpus", args.target)
    crashes = os.path.join(HERE, "crashes")
    os.makedirs(corpus, exist_ok=True)
    os.makedirs(crashes, exist_ok=True)
    for seed in harness.seeds(args.target):
        with open(os.path.join(corpus, "seed-" + hashlib.sha1(seed).hexdigest()[:12]), "wb") as f:
            f.write(seed)
    target = harness.TARGETS[args.target]
    budget = [f"-runs={args.runs}", "-seed=1"] if args.runs else [f"-max_total_time={args.seconds}"]
    argv = [
        sys.argv[0],
        corpus,
        *budget,
        "-timeout=20",
        "-rss_limit_mb=4096",
        f"-artifact_prefix={os.path.join(crashes, args.target)}-",
        "-print_final_stats=1",
        *[a for a in extra if a != "--"],
    ]
    dictionary = os.path.join(HERE, f"{args.target}.dict")
    if os.path.exists(dictionary):
        argv.append(f"-dict={dictionary}")
    atheris.Setup(argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
