"""Embed or classify image files with an image-text (CLIP, SigLIP) or vision model directory.

Without --labels: image embeddings (unit length; tfcore.eval.embed_images) and, for two or
more images, their cosine-similarity table; --save writes them as a .npy. With --labels:
zero-shot classification (tfcore.eval.zero_shot_classify): each file's most probable labels
with their probabilities, the label texts made with --template. The model directory holds
config.json, the weights, preprocessor_config.json and (for --labels) tokenizer.json."""

from __future__ import annotations

import time

from ._common import add_model_options, plural

NAME, HELP = "images", "embed image files, or classify them zero-shot against text labels (CLIP, SigLIP)"


def add_arguments(p):
    add_model_options(p, "model directory (CLIP, SigLIP or a vision model, with preprocessor_config.json)")
    p.add_argument("files", metavar="IMAGE", nargs="+", help="image files (anything Pillow reads)")
    p.add_argument("--labels", default=None, help="comma-separated labels: classify zero-shot")
    p.add_argument(
        "--template", default="a photo of a {}.", help="label text template (default 'a photo of a {}.')"
    )
    p.add_argument("--top-k", type=int, default=3, help="labels printed per image (default 3)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--save", default=None, help="without --labels: save the embeddings as this .npy file")


def run(args):
    import numpy as np

    import tfcore
    from tfcore import eval as tf_eval

    if args.top_k < 1:
        raise tfcore.TfcoreValueError(f"--top-k must be >= 1, got {args.top_k}")
    model = tfcore.AutoModel.from_pretrained(args.model, dtype=args.dtype, threads=args.threads)
    t0 = time.perf_counter()
    if args.labels is not None:
        labels = [x.strip() for x in args.labels.split(",") if x.strip()]
        probs = tf_eval.zero_shot_classify(
            model, args.files, labels, template=args.template, batch_size=args.batch_size, show_progress=False
        )
        for path, row in zip(args.files, probs):
            best = np.argsort(-row, kind="stable")[: args.top_k]
            print(f"{path}: " + ", ".join(f"{labels[j]} {row[j]:.3f}" for j in best))
        what = f"classified {plural(len(args.files), 'image')} over {plural(len(labels), 'label')}"
    else:
        emb = tf_eval.embed_images(model, args.files, batch_size=args.batch_size, show_progress=False)
        if args.save:
            np.save(args.save, emb)
        if len(args.files) > 1:
            sim = emb @ emb.T
            width = max(len(str(f)) for f in args.files)
            for i, f in enumerate(args.files):
                print(f"{str(f):<{width}}  " + " ".join(f"{v:6.3f}" for v in sim[i]))
        else:
            print(f"{args.files[0]}: embedding of {emb.shape[1]} values, norm {np.linalg.norm(emb[0]):.3f}")
        what = f"embedded {plural(len(args.files), 'image')} ({emb.shape[1]} dims)"
    import sys

    print(f"{what} in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return 0
