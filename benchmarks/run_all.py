"""Run every benchmark of the project and write one markdown report.

    python benchmarks/run_all.py [--quick] [--threads 2] [--out benchmarks/results.md] [--no-ort]

Each benchmark runs in its own process (fresh memory and thread pools), validates its
outputs against the reference before timing (a validation failure stops the run with a
non-zero exit), times tfcore and its peers interleaved with the same thread count, and
prints markdown tables; this script collects them under one heading per benchmark, with
the machine and package versions first. Needs the bench extra: pip install '.[bench]'.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import isa_line  # noqa: E402

# (script, what it measures, extra arguments)
BENCHMARKS = [
    (
        "bench_ops.py",
        "Attention, Linear and FeedForward vs PyTorch; SDPA peak memory",
        ["--threads", "{threads}"],
    ),
    ("bench_models.py", "Encoders and vision models (fp32) vs HF eager/SDPA", ["--threads", "{threads}"]),
    (
        "bench_decode.py",
        "Greedy decoding and prefill vs HF generate; memory bandwidth bound",
        ["--threads", "{threads}"],
    ),
    (
        "bench_decoders_wave2.py",
        "Qwen2/Qwen3/Phi-3/GPT-NeoX/Falcon fp32 decoding B=1 vs HF generate",
        ["--threads", "{threads}"],
    ),
    (
        "bench_precision.py",
        "fp32 / bf16 / int8 vs PyTorch and ONNX Runtime, with accuracy",
        ["--threads", "{threads}"],
    ),
    (
        "bench_encoder_dtypes.py",
        "BERT-base B=8 fp32 / bf16 / int8 vs CTranslate2, held at AVX2",
        ["--threads", "{threads}", "--avx2"],
    ),
    (
        "bench_int8_modes.py",
        "Weight-only vs dynamic int8: accuracy and GEMM speed",
        ["--threads", "{threads}"],
    ),
    (
        "bench_recurrent.py",
        "Mamba-130M decode (flat in context) and 2k prefill; Mixtral-shaped MoE decode and prefill vs HF",
        ["--threads", "{threads}"],
    ),
    (
        "bench_rwkv.py",
        "RWKV-4 (169M-shaped) decode B=1 at context 128-8k and prefill 2k vs HF",
        ["--threads", "{threads}"],
    ),
    (
        "bench_bloom.py",
        "BLOOM (ALiBi) greedy decoding vs HF generate, bloom-560m shape",
        ["--threads", "{threads}"],
    ),
    (
        "bench_longformer.py",
        "Longformer (base-shaped, 2 layers) vs HF at 1k-4k tokens; peak memory vs length",
        ["--threads", "{threads}"],
    ),
    (
        "bench_bigbird.py",
        "BigBird block-sparse at 1k-4k tokens vs HF; peak memory vs length",
        ["--threads", "{threads}"],
    ),
    (
        "bench_t5.py",
        "T5-small encoder-decoder greedy generation and encoder vs HF",
        ["--threads", "{threads}"],
    ),
    (
        "bench_seq2seq.py",
        "BART-base summarisation (512 in, 64 new, beam 4) and Marian translation (greedy, B=8) vs HF",
        ["--threads", "{threads}"],
    ),
    (
        "bench_wav2vec2.py",
        "wav2vec 2.0 / HuBERT CTC on 10 s of audio vs HF; real-time factor",
        ["--threads", "{threads}"],
    ),
    ("bench_swin.py", "Swin-T (shifted-window attention) vs HF; time by part", ["--threads", "{threads}"]),
    (
        "bench_llm.py",
        "SmolLM2-135M Q4_1 GGUF: tfcore fp32/bf16/int8 vs llama.cpp, decode B=1 and prefill 512",
        ["--threads", "{threads}"],
    ),
    (
        "bench_linear_attention.py",
        "Linear attention (retention) chunkwise/parallel vs fla naive at 1k-16k; RetNet/GLA decode vs Llama+KV cache",
        ["--threads", "{threads}"],
    ),
    (
        "bench_vision.py",
        "CLIP ViT-B/32 towers and zero-shot (preprocessing included) vs HF",
        ["--threads", "{threads}"],
    ),
    (
        "bench_conv.py",
        "Conv2d / Conv1d layers of the vision and speech families vs torch; % of the GEMM rate",
        ["--threads", "{threads}"],
    ),
    (
        "bench_scale_out.py",
        "tfcore.eval.embed of 20,000 sentences (MiniLM): one process vs Ray and Dask, 1 and 2 workers",
        ["--threads", "{threads}"],
    ),
]


def as_markdown(output: str) -> str:
    """Table lines as they are; runs of other lines in a text block."""
    out, text = [], []

    def flush():
        if any(t.strip() for t in text):
            out.extend(["```text", *text, "```"])
        text.clear()

    for line in output.splitlines():
        if line.startswith("|"):
            flush()
            out.append(line)
        else:
            if line.strip() == "" and out and out[-1].startswith("|"):
                out.append("")
                continue
            text.append(line)
    flush()
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer sizes and repetitions (a smoke run)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "results.md"))
    ap.add_argument("--no-ort", dest="ort", action="store_false", help="skip ONNX Runtime")
    ap.add_argument("--only", nargs="+", help="run only these scripts (e.g. bench_decode.py)")
    args = ap.parse_args()
    sections = [
        f"# tfcore benchmarks\n\n{datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.node()}, "
        f"{os.cpu_count()} CPUs, {args.threads} threads{' (quick run)' if args.quick else ''}.\n"
        f"{isa_line()} (each section below repeats the line of its own run).\n"
    ]
    failed = []
    for script, what, extra in BENCHMARKS:
        if args.only and script not in args.only:
            continue
        cmd = [sys.executable, os.path.join(HERE, script), *(a.format(threads=args.threads) for a in extra)]
        if args.quick:
            cmd.append("--quick")
        if script == "bench_precision.py" and not args.ort:
            cmd.append("--no-ort")
        print(f"== {script}: {what}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        took = time.perf_counter() - t0
        print(proc.stdout, flush=True)
        body = as_markdown(proc.stdout)
        if proc.returncode != 0:
            failed.append(script)
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            print(tail, file=sys.stderr)
            body += f"\n\n**FAILED** (exit {proc.returncode}):\n\n```text\n{tail}\n```"
        sections.append(
            f"## {script} — {what}\n\n`{' '.join(os.path.basename(c) for c in cmd[1:])}` "
            f"({took:.0f} s)\n\n{body}\n"
        )
    with open(args.out, "w") as f:
        f.write("\n".join(sections))
    print(f"wrote {args.out}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
