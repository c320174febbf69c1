"""Vision wave 2 benchmark: CLIP ViT-B/32 (random weights at real size) in tfcore vs Hugging
Face transformers on torch, same process, same threads, interleaved, medians and ratios.

    python benchmarks/bench_vision.py [--quick] [--threads 2] [--only clip siglip swinv2 pvt_v2 segformer cvt beit]

Rows: the image tower (get_image_features) at batch 1 and 8, the text tower
(get_text_features) on 8 prompts of 16 tokens, and zero-shot classification of 32 images
(PIL, 320x240) over 8 labels end to end: preprocessing (tfcore.image vs HF's image processor),
both towers and the softmax; SigLIP B/16's image tower (224, attention pooling head) and
SwinV2-T (256, window 8), PVT-v2-b2 (224) and SegFormer-b2 (512, semantic-segmentation
logits), CvT-13 (224, class-token logits) and BEiT-base (224, patch 16, per-layer relative
position bias, mean pooling) at batch 1 and 8. Every row first checks tfcore's output against
HF's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import fmt_ms, gemm_peak_gflops, interleaved, isa_line, print_table  # noqa: E402

import tfcore  # noqa: E402


def clip_b32(tmp):
    """CLIP ViT-B/32's shapes (text 512 wide, 12 layers; vision 768 wide, 12 layers, patch 32)
    with random weights, saved with its image processor's real settings."""
    import transformers

    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(
        text_config=dict(
            hidden_size=512, intermediate_size=2048, num_attention_heads=8, num_hidden_layers=12
        ),
        vision_config=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=12,
            patch_size=32,
        ),
        projection_dim=512,
    )
    model = transformers.CLIPModel(cfg).eval()
    path = os.path.join(tmp, "clip-b32")
    model.save_pretrained(path)
    proc_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    proc_cls().save_pretrained(path)
    return path, model, proc_cls.from_pretrained(path)


def siglip_b16(tmp):
    """SigLIP base patch16-224's image tower (768 wide, 12 layers, patch 16, pooling head)."""
    import transformers

    torch.manual_seed(0)
    cfg = transformers.SiglipVisionConfig(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=224,
        patch_size=16,
    )
    model = transformers.SiglipVisionModel(cfg).eval()
    path = os.path.join(tmp, "siglip-b16")
    model.save_pretrained(path)
    return path, model


def swinv2_tiny(tmp):
    """swinv2-tiny-patch4-window8-256's shapes (embed 96, depths 2-2-6-2, window 8)."""
    import transformers

    torch.manual_seed(0)
    cfg = transformers.Swinv2Config(
        image_size=256,
        patch_size=4,
        embed_dim=96,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
        window_size=8,
    )
    model = transformers.Swinv2Model(cfg).eval()
    path = os.path.join(tmp, "swinv2-t")
    model.save_pretrained(path)
    return path, model


def pvt_v2_b2(tmp):
    """pvt_v2_b2's shapes (hidden 64-128-320-512, depths 3-4-6-3, sr 8-4-2-1, mlp 8-8-4-4)."""
    import transformers

    torch.manual_seed(0)
    cfg = transformers.PvtV2Config(
        hidden_sizes=[64, 128, 320, 512],
        depths=[3, 4, 6, 3],
        num_attention_heads=[1, 2, 5, 8],
        mlp_ratios=[8, 8, 4, 4],
        sr_ratios=[8, 4, 2, 1],
    )
    model = transformers.PvtV2Model(cfg).eval()
    path = os.path.join(tmp, "pvt-v2-b2")
    model.save_pretrained(path)
    return path, model


def segformer_b2(tmp):
    """segformer-b2-finetuned-ade-512-512's shapes (hidden 64-128-320-512, depths 3-4-6-3,
    decoder 768, 150 labels)."""
    import transformers

    torch.manual_seed(0)
    cfg = transformers.SegformerConfig(
        hidden_sizes=[64, 128, 320, 512],
        depths=[3, 4, 6, 3],
        num_attention_heads=[1, 2, 5, 8],
        decoder_hidden_size=768,
        num_labels=150,
    )
    model = transformers.SegformerForSemanticSegmentation(cfg).eval()
    path = os.path.join(tmp, "segformer-b2")
    model.save_pretrained(path)
    return path, model


def cvt_13(tmp):
    """microsoft/cvt-13's shapes (embed 64-192-384, depths 1-2-10, heads 1-3-6) with a
    1000-class head."""
    import transformers

    torch.manual_seed(0)
    model = transformers.CvtForImageClassification(transformers.CvtConfig(num_labels=1000)).eval()
    path = os.path.join(tmp, "cvt-13")
    model.save_pretrained(path)
    return path, model


def beit_base(tmp):
    """microsoft/beit-base-patch16-224's shapes (768 wide, 12 layers, per-layer relative
    position bias, layer scale, mean pooling) with a 1000-class head."""
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BeitConfig(
        use_relative_position_bias=True, use_mean_pooling=True, layer_scale_init_value=0.1, num_labels=1000
    )
    model = transformers.BeitForImageClassification(cfg).eval()
    with torch.no_grad():  # HF zeroes the tables: give the bias something to do
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name:
                p.copy_(0.5 * torch.randn_like(p))
    path = os.path.join(tmp, "beit-base")
    model.save_pretrained(path)
    return path, model


def tower_rows(name, ours, hf, size, reps, rng, rows, field="pooler_output"):
    """Rows for a vision model at batch 1 and 8 after checking its output against HF's."""
    for B in (1, 8):
        px = rng.standard_normal((B, 3, size, size)).astype(np.float32)
        tpx = torch.from_numpy(px)
        err = rel(ours(px)[field], getattr(hf(pixel_values=tpx), field).numpy())
        if not err < 1e-4:
            raise SystemExit(f"{name} B={B}: differs from HF by {err:.3g} (relative)")
        t = interleaved(
            {"tfcore": lambda: ours(px), "hf": lambda: hf(pixel_values=tpx)}, repeat=reps, warmup=1
        )
        rows.append(
            [f"{name}, batch {B}", fmt_ms(t["tfcore"]), fmt_ms(t["hf"]), f"{t['hf'] / t['tfcore']:.2f}x"]
        )


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))


def features(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def clip_rows(tmp, reps, rng, rows):
    """CLIP B/32: both towers and zero-shot end to end."""
    import PIL.Image

    path, hf, hf_proc = clip_b32(tmp)
    ours = tfcore.AutoModel.from_pretrained(path)
    proc = tfcore.image.ImageProcessor.from_pretrained(path)
    with torch.inference_mode():
        for B in (1, 8):
            px = rng.standard_normal((B, 3, 224, 224)).astype(np.float32)
            tpx = torch.from_numpy(px)
            err = rel(ours.get_image_features(px), features(hf.get_image_features(pixel_values=tpx)).numpy())
            if not err < 1e-4:
                raise SystemExit(f"CLIP image tower B={B}: differs from HF by {err:.3g} (relative)")
            t = interleaved(
                {
                    "tfcore": lambda: ours.get_image_features(px),
                    "hf": lambda: hf.get_image_features(pixel_values=tpx),
                },
                repeat=reps,
                warmup=1,
            )
            rows.append(
                [
                    f"CLIP B/32 image tower, batch {B}",
                    fmt_ms(t["tfcore"]),
                    fmt_ms(t["hf"]),
                    f"{t['hf'] / t['tfcore']:.2f}x",
                ]
            )
        ids = rng.integers(1, 49000, size=(8, 16))
        ids[:, -1] = 49407  # eos (highest id): the pooled position
        tids = torch.from_numpy(ids)
        err = rel(ours.get_text_features(ids), features(hf.get_text_features(input_ids=tids)).numpy())
        if not err < 1e-4:
            raise SystemExit(f"CLIP text tower: differs from HF by {err:.3g} (relative)")
        t = interleaved(
            {
                "tfcore": lambda: ours.get_text_features(ids),
                "hf": lambda: hf.get_text_features(input_ids=tids),
            },
            repeat=reps,
            warmup=1,
        )
        rows.append(
            [
                "CLIP B/32 text tower, 8 x 16 tokens",
                fmt_ms(t["tfcore"]),
                fmt_ms(t["hf"]),
                f"{t['hf'] / t['tfcore']:.2f}x",
            ]
        )
        # zero-shot on 32 PIL images, preprocessing included
        images = [
            PIL.Image.fromarray(rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)) for _ in range(32)
        ]
        labels = ids[:8]

        def ours_zero_shot():
            pv = proc(images)["pixel_values"]
            img = ours.get_image_features(pv)
            txt = ours.get_text_features(labels)
            img = img / np.linalg.norm(img, axis=-1, keepdims=True)
            txt = txt / np.linalg.norm(txt, axis=-1, keepdims=True)
            logits = img @ txt.T * np.exp(ours.logit_scale)
            e = np.exp(logits - logits.max(-1, keepdims=True))
            return e / e.sum(-1, keepdims=True)

        def hf_zero_shot():
            pv = torch.from_numpy(hf_proc(images, return_tensors="np")["pixel_values"])
            return (
                hf(input_ids=torch.from_numpy(labels), pixel_values=pv).logits_per_image.softmax(-1).numpy()
            )

        err = float(np.abs(ours_zero_shot() - hf_zero_shot()).max())
        if not err < 1e-4:
            raise SystemExit(f"CLIP zero-shot: probabilities differ from HF by {err:.3g}")
        t = interleaved({"tfcore": ours_zero_shot, "hf": hf_zero_shot}, repeat=max(2, reps // 2), warmup=1)
        rows.append(
            [
                "CLIP B/32 zero-shot, 32 images x 8 labels (preprocessing included)",
                fmt_ms(t["tfcore"]),
                fmt_ms(t["hf"]),
                f"{t['hf'] / t['tfcore']:.2f}x",
            ]
        )


def run(threads: int, quick: bool, only=None):

    torch.set_num_threads(threads)
    tfcore.set_num_threads(threads)
    peak = gemm_peak_gflops()
    print(f"in-run fp32 GEMM rate (tfcore/oneDNN): {peak:.0f} GFLOP/s, {threads} threads\n")
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        reps = 3 if quick else 7
        if only is None or "clip" in only:
            clip_rows(tmp, reps, rng, rows)
        with torch.inference_mode():
            if only is None or "siglip" in only:
                path, hf_sig = siglip_b16(tmp)
                tower_rows(
                    "SigLIP B/16 image tower",
                    tfcore.AutoModel.from_pretrained(path),
                    hf_sig,
                    224,
                    reps,
                    rng,
                    rows,
                )
                del hf_sig
            if only is None or "swinv2" in only:
                path, hf_sw = swinv2_tiny(tmp)
                tower_rows(
                    "SwinV2-T 256", tfcore.AutoModel.from_pretrained(path), hf_sw, 256, reps, rng, rows
                )
                del hf_sw
            if only is None or "pvt_v2" in only:
                path, hf_pvt = pvt_v2_b2(tmp)
                tower_rows(
                    "PVT-v2-b2 224",
                    tfcore.AutoModel.from_pretrained(path),
                    hf_pvt,
                    224,
                    reps,
                    rng,
                    rows,
                    field="last_hidden_state",
                )
                del hf_pvt
            if only is None or "segformer" in only:
                path, hf_seg = segformer_b2(tmp)
                tower_rows(
                    "SegFormer-b2 512 (logits at 128x128)",
                    tfcore.models.SegformerForSemanticSegmentation.from_pretrained(path),
                    hf_seg,
                    512,
                    reps,
                    rng,
                    rows,
                    field="logits",
                )
                del hf_seg
            if only is None or "cvt" in only:
                path, hf_cvt = cvt_13(tmp)
                tower_rows(
                    "CvT-13 224 (logits)",
                    tfcore.models.CvtForImageClassification.from_pretrained(path),
                    hf_cvt,
                    224,
                    reps,
                    rng,
                    rows,
                    field="logits",
                )
                del hf_cvt
            if only is None or "beit" in only:
                path, hf_beit = beit_base(tmp)
                tower_rows(
                    "BEiT-base/16 224 (logits)",
                    tfcore.models.BeitForImageClassification.from_pretrained(path),
                    hf_beit,
                    224,
                    reps,
                    rng,
                    rows,
                    field="logits",
                )
                del hf_beit
    print_table(["case", "tfcore ms", "HF ms", "speed-up"], rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[2])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=["clip", "siglip", "swinv2", "pvt_v2", "segformer", "cvt", "beit"],
        help="run these families' rows",
    )
    args = ap.parse_args()
    print(isa_line())
    print("(a shared 2-core VM: absolute times swing; the ratios are interleaved in one run)\n")
    for threads in args.threads:
        run(threads, args.quick, args.only)


if __name__ == "__main__":
    main()
