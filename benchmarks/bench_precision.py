"""Precision benchmark: tfcore float32 / bfloat16 / int8 against PyTorch (HF transformers) in
the same precisions, ONNX Runtime fp32 / dynamic int8, CTranslate2 fp32 / int8 and OpenVINO
fp32, same process, same threads, interleaved, medians and ratios; plus the accuracy each
precision costs, measured first, and the in-run fp32 GEMM rate and read bandwidth.

    python benchmarks/bench_precision.py [--quick] [--threads 2] [--no-ort] [--no-ct2]
                                         [--no-openvino] [--avx2]

--avx2 runs every library at AVX2 + FMA on a CPU with AVX-512 (common.AVX2_ENV says how and
which peer cannot be held there).

Cases: BERT-base B=8 S=128, ViT-B/16 B=8 (random weights at real size), greedy decoding of
128 new tokens after 32 at batch 1 for GPT-2 small and a ~100M Llama-style model.
Peers: torch fp32, torch bf16 (the model cast with .to(bfloat16)), torch int8
(torch.ao.quantization.quantize_dynamic on every nn.Linear; GPT-2's Conv1D layers are
turned into nn.Linear first so that they are quantized too), ONNX Runtime fp32 (optimized by
its transformer optimizer) and int8 (its quantize_dynamic) — see ort_peer.py; no ORT row for
the Llama model (no exported step graph).
CTranslate2 (ct2_peer.py): BERT and GPT-2, fp32 and int8 (its converted Llama-style model,
with tied embeddings, disagrees with HF from the first token, so it has no row); OpenVINO
(openvino_peer.py): the encoders in fp32.
Accuracy: encoders: max abs error and min cosine of the outputs vs HF fp32; decoders: logit
max abs error and greedy agreement teacher-forced on the fp32 continuation (per-step argmax,
no compounding). The KV-cache table stores the cache in bf16 / int8 with fp32 weights.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_decode import hf_greedy, make_models, measured_bandwidth, step_bytes  # noqa: E402
from bench_models import bert_base, encoder_flops, vit_base  # noqa: E402
from common import (  # noqa: E402
    gemm_peak_gflops,
    interleaved,
    isa_line,
    print_table,
    reexec_at_avx2_if_asked,
)

import tfcore  # noqa: E402

DTYPES = ("float32", "bfloat16", "int8")
SHORT = {"float32": "fp32", "bfloat16": "bf16", "int8": "int8"}


def cosine(a, b):
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def torch_int8(model):
    """torch's dynamic int8 (per-tensor activations, per-tensor weights, fbgemm/x86)."""
    from transformers.pytorch_utils import Conv1D

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):  # (in, out) weights: same math as nn.Linear on the transpose
                lin = torch.nn.Linear(child.weight.shape[0], child.weight.shape[1])
                lin.weight.data, lin.bias.data = child.weight.data.T.contiguous(), child.bias.data
                setattr(parent, name, lin)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def torch_peers(hf_cls, path):
    load = lambda **kw: hf_cls.from_pretrained(path, attn_implementation="sdpa", **kw).eval()  # noqa: E731
    return {"fp32": load(), "bf16": load(torch_dtype=torch.bfloat16), "int8": torch_int8(load())}


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "n/a"


PEERS = ("ort", "ct2", "ov")
PEER_NAMES = {"ort": "ORT", "ct2": "CT2", "ov": "OpenVINO"}


def speed_row(case, t, unit, limit):
    """t: seconds per call (or per token) for tfcore-<dt>, torch-<dt>, ort-<dt>, ct2-<dt>,
    ov-fp32; limit: tfcore fp32's fraction of the in-run GEMM rate or bandwidth."""
    cell = (
        (lambda k: f"{t[k] * 1e3:.1f} ms" if k in t else "n/a")
        if unit == "ms"
        else (lambda k: f"{1 / t[k]:.1f} tok/s" if k in t else "n/a")
    )
    g = t.get
    return [
        case,
        *(cell(f"tfcore-{SHORT[d]}") for d in DTYPES),
        *(cell(f"torch-{s}") for s in ("fp32", "bf16", "int8")),
        *(cell(f"{p}-{s}") for p in PEERS for s in ("fp32", "int8") if f"{p}-{s}" != "ov-int8"),
        limit,
        ratio(g("tfcore-fp32"), g("tfcore-bf16")),
        ratio(g("tfcore-fp32"), g("tfcore-int8")),
        ratio(g("torch-fp32"), g("tfcore-fp32")),
        ratio(g("torch-bf16"), g("tfcore-bf16")),
        ratio(g("torch-int8"), g("tfcore-int8")),
        *(
            ratio(g(f"{p}-{s}"), g(f"tfcore-{s}"))
            for p in PEERS
            for s in ("fp32", "int8")
            if f"{p}-{s}" != "ov-int8"
        ),
    ]


SPEED_HEADERS = [
    "case",
    "tfcore fp32",
    "tfcore bf16",
    "tfcore int8",
    "torch fp32",
    "torch bf16",
    "torch int8",
    "ORT fp32",
    "ORT int8",
    "CT2 fp32",
    "CT2 int8",
    "OpenVINO fp32",
    "tfcore fp32 of limit",
    "bf16 speed-up",
    "int8 speed-up",
    "vs torch fp32",
    "vs torch bf16",
    "vs torch int8",
    "vs ORT fp32",
    "vs ORT int8",
    "vs CT2 fp32",
    "vs CT2 int8",
    "vs OpenVINO fp32",
]


def bench_encoder(path, cls, hf_cls, feed_name, cases, ort_type, args, tmp, acc_rows):
    """cases: [(name, input array, fp32 FLOPs of one forward)]; the models and peers are
    built once (the largest batch is the export example) and timed on each input."""
    ours = {SHORT[d]: cls.from_pretrained(path, dtype=d) for d in DTYPES}
    peers = torch_peers(hf_cls, path)
    big = max((x for _, x, _ in cases), key=len)
    runs = {f"tfcore-{k}": (lambda x, m=m: m(x).last_hidden_state) for k, m in ours.items()}
    for k, m in peers.items():  # pixels in bf16 for torch bf16; ids as they are
        runs[f"torch-{k}"] = lambda x, m=m, k=k: (
            m(
                torch.from_numpy(x).to(torch.bfloat16)
                if k == "bf16" and x.dtype == np.float32
                else torch.from_numpy(x)
            ).last_hidden_state
        )
    if args.ort:
        from ort_peer import encoder_sessions

        runs.update(encoder_sessions(peers["fp32"], feed_name, big, tmp, ort_type, args.threads))
    if args.ct2 and ort_type == "bert":
        from ct2_peer import encoder_runners

        runs.update(encoder_runners(path, tmp, args.threads))
    if args.openvino:
        from openvino_peer import encoder_runner

        runs["ov-fp32"], kinds = encoder_runner(peers["fp32"], feed_name, big, args.threads)
        print(f"{ort_type}: OpenVINO kernels {', '.join(k for k in kinds if 'avx' in k or 'mlas' in k)}")
    rows = []
    for name, x, flops in cases:
        fns = {k: (lambda run=run: run(x)) for k, run in runs.items()}
        with torch.inference_mode():
            want = peers["fp32"](torch.from_numpy(x)).last_hidden_state.numpy()
            for k, f in fns.items():
                out = f()
                out = out.float().numpy() if isinstance(out, torch.Tensor) else out
                if k == "tfcore-fp32" and not np.abs(out - want).max() < 1e-3:
                    raise SystemExit(f"{name}: tfcore fp32 differs from HF by {np.abs(out - want).max():.3g}")
                acc_rows.append([name, k, f"{np.abs(out - want).max():.4f}", f"{cosine(out, want):.6f}"])
            t = interleaved(fns, repeat=3 if args.quick else 9, warmup=1 if args.quick else 2)
        rate = flops / t["tfcore-fp32"] / 1e9
        rows.append(speed_row(name, t, "ms", f"{rate:.0f} GFLOP/s = {100 * rate / args.gemm:.0f}% of GEMM"))
    return rows


def greedy_agreement(model, seq, prompt, want_logits, **kw):
    """Teacher-forced on seq: (logit max abs error, argmax agreement) of model vs want."""
    got = teacher_forced_logits(model, seq, prompt, **kw)
    return float(np.abs(got - want_logits).max()), float((got.argmax(-1) == want_logits.argmax(-1)).mean())


def teacher_forced_logits(model, seq, prompt, cache_dtype=None):
    """Logits predicting tokens prompt .. end of seq: one full forward, or (cache_dtype) the
    prompt then one token at a time through a cache stored in that dtype."""
    if cache_dtype is None:
        return model(seq).logits[0, prompt - 1 : -1]
    cache = model.new_cache(1, seq.shape[1], dtype=cache_dtype)
    out = [model(seq[:, :prompt], past_key_values=cache).logits[0, -1:]]
    for t in range(prompt, seq.shape[1] - 1):
        out.append(model(seq[:, t : t + 1], past_key_values=cache).logits[0, -1:])
    return np.concatenate(out)


def bench_decoder(name, path, hf_cls, new_tokens, args, tmp, acc_rows, kv_rows):
    ours = {SHORT[d]: tfcore.AutoModelForCausalLM.from_pretrained(path, dtype=d) for d in DTYPES}
    peers = torch_peers(hf_cls, path)
    ids = np.random.default_rng(0).integers(100, ours["fp32"].vocab_size - 100, size=(1, 32))
    tids, tmask = torch.from_numpy(ids), torch.ones(1, 32, dtype=torch.long)
    fns = {
        f"tfcore-{k}": (lambda m=m: m.generate(ids, max_new_tokens=new_tokens, eos_token_id=[]))
        for k, m in ours.items()
    }
    fns.update({f"torch-{k}": (lambda m=m: hf_greedy(m, tids, tmask, new_tokens)) for k, m in peers.items()})
    if args.ort and "GPT-2" in name:
        from ort_peer import gpt2_greedy_runners

        for k, run in gpt2_greedy_runners(peers["fp32"], 32, tmp, args.threads).items():
            fns[k] = lambda run=run: run(ids, new_tokens)
    if args.ct2 and "GPT-2" in name:  # its conversion of the tied-embedding Llama model disagrees at token 1
        from ct2_peer import greedy_runners

        for k, run in greedy_runners(path, ours["fp32"].vocab_size, tmp, args.threads).items():
            fns[k] = lambda run=run: run(ids, new_tokens)
    with torch.inference_mode():
        seq32 = fns["tfcore-fp32"]()
        if not (np.asarray(fns["torch-fp32"]()) == seq32).all():
            raise SystemExit(f"{name}: tfcore fp32 greedy differs from HF")
        if "ort-fp32" in fns and not (fns["ort-fp32"]() == seq32).all():
            raise SystemExit(f"{name}: ONNX Runtime fp32 greedy differs from tfcore/HF")
        if "ct2-fp32" in fns:  # random weights: near-tied logits may part later; the first must agree
            ct2_seq = fns["ct2-fp32"]()
            free = int(np.argmax(np.append(ct2_seq[0, 32:] != seq32[0, 32:], True)))
            if free == 0:
                raise SystemExit(f"{name}: CTranslate2 fp32 greedy differs from tfcore/HF at once")
            acc_rows.append(
                [name, "ct2-fp32", "n/a", f"free-running equal for {free} of {new_tokens} tokens"]
            )
        want = teacher_forced_logits(ours["fp32"], seq32, 32)
        for k in ("bf16", "int8"):
            err, agree = greedy_agreement(ours[k], seq32, 32, want)
            acc_rows.append([name, f"tfcore-{k}", f"{err:.3f}", f"{100 * agree:.1f}% greedy agreement"])
        for k in ("bf16", "int8"):
            logits = peers[k](torch.from_numpy(seq32)).logits[0, 31:-1].float().numpy()
            acc_rows.append(
                [
                    name,
                    f"torch-{k}",
                    f"{np.abs(logits - want).max():.3f}",
                    f"{100 * (logits.argmax(-1) == want.argmax(-1)).mean():.1f}% greedy agreement",
                ]
            )
        for k in ("ort-int8", "ct2-int8"):
            if k in fns:
                peer_seq = fns[k]()
                free = int(np.argmax(np.append(peer_seq[0, 32:] != seq32[0, 32:], True)))
                acc_rows.append([name, k, "n/a", f"free-running equal for {free} of {new_tokens} tokens"])
        for kv in ("bfloat16", "int8"):
            err, agree = greedy_agreement(ours["fp32"], seq32, 32, want, cache_dtype=kv)
            cache = ours["fp32"].new_cache(1, 1024, dtype=kv)
            full = ours["fp32"].new_cache(1, 1024)
            mib = lambda c: repr(c).split("memory=")[1].rstrip(")")  # noqa: E731
            kv_rows.append(
                [name, kv, f"{err:.4f}", f"{100 * agree:.1f}%", f"{mib(cache)} (fp32: {mib(full)})"]
            )
        times = {k: [] for k in fns}
        for _ in range(1 if args.quick else 3):
            for k, f in fns.items():
                t0 = time.perf_counter()
                f()
                times[k].append((time.perf_counter() - t0) / new_tokens)
    t = {k: float(np.median(v)) for k, v in times.items()}
    bw = step_bytes(ours["fp32"]) / t["tfcore-fp32"] / 1e9
    limit = f"{bw:.1f} GB/s = {100 * bw / args.bandwidth:.0f}% of bandwidth"
    return speed_row(f"{name} decode B=1", t, "tok/s", limit)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-ort", dest="ort", action="store_false", help="skip ONNX Runtime (slow exports)")
    ap.add_argument("--no-ct2", dest="ct2", action="store_false", help="skip CTranslate2")
    ap.add_argument("--no-openvino", dest="openvino", action="store_false", help="skip OpenVINO")
    ap.add_argument("--avx2", action="store_true", help="hold every library to AVX2 (common.AVX2_ENV)")
    reexec_at_avx2_if_asked()
    args = ap.parse_args()
    tfcore.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    tfcore.show_config()
    print(isa_line())
    print(f"torch {torch.__version__}")
    for flag, module in ((args.ort, "onnxruntime"), (args.ct2, "ctranslate2"), (args.openvino, "openvino")):
        if flag:
            print(f"{module} {__import__(module).__version__}")
    if args.ct2:
        import ctranslate2

        print(f"CTranslate2 CPU: {ctranslate2.get_supported_compute_types('cpu')}")
    args.gemm = gemm_peak_gflops()
    args.bandwidth = measured_bandwidth(args.threads)
    print(f"in-run fp32 GEMM {args.gemm:.0f} GFLOP/s, read bandwidth {args.bandwidth:.1f} GB/s")
    print()
    from transformers import BertModel, ViTModel

    speed, acc, kv = [], [], []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        speed += bench_encoder(
            bert_base(tmp),
            tfcore.models.BertModel,
            BertModel,
            "input_ids",
            [
                (
                    f"BERT-base B={b} S=128",
                    rng.integers(1000, 30000, size=(b, 128)),
                    encoder_flops(12, 768, 3072, b, 128),
                )
                for b in (1, 8)
            ],
            "bert",
            args,
            tmp,
            acc,
        )
        speed += bench_encoder(
            vit_base(tmp),
            tfcore.models.ViTModel,
            ViTModel,
            "pixel_values",
            [
                (
                    "ViT-B/16 B=8",
                    rng.standard_normal((8, 3, 224, 224)).astype(np.float32),
                    encoder_flops(12, 768, 3072, 8, 197),
                )
            ],
            "vit",
            args,
            tmp,
            acc,
        )
        for name, (path, cls) in make_models(tmp).items():
            speed.append(bench_decoder(name, path, cls, 32 if args.quick else 128, args, tmp, acc, kv))
    print("Speed (ratios: > 1 means tfcore is faster)\n")
    print_table(SPEED_HEADERS, speed)
    print(
        "\nAccuracy vs HF fp32 (encoders: max abs, min cosine; decoders: logit max abs, teacher-forced greedy "
        "agreement with fp32)\n"
    )
    print_table(["case", "run", "max abs error", "cosine / agreement"], acc)
    print("\nKV cache precision (fp32 weights; teacher-forced through the cache)\n")
    print_table(
        ["case", "cache dtype", "logit max abs error", "greedy agreement", "memory at 1,024 tokens MiB"], kv
    )


if __name__ == "__main__":
    main()
