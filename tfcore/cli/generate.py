"""Continue a prompt with a local causal language model, or answer it with an
encoder-decoder one (T5), printing tokens as they come.

MODEL is a checkpoint directory or a llama.cpp ``.gguf`` file. The prompt is text (needs the
directory's tokenizer.json, or the GGUF file's vocabulary, and the tokenizers package) or
--ids 1,2,3. Greedy by default; --sample with --temperature/--top-k/--top-p/--seed. A causal
LM's output continues the prompt (echoed first); an encoder-decoder's output is new text."""

from __future__ import annotations

import sys
import time

NAME, HELP = (
    "generate",
    "generate text or token ids from a causal or encoder-decoder LM directory (or GGUF file), streaming",
)


def add_arguments(p):
    from ._common import add_model_options

    add_model_options(p)
    p.add_argument("prompt", nargs="?", default=None, help="prompt text")
    p.add_argument(
        "--ids",
        default=None,
        help="prompt as comma-separated token ids instead of text (without a tokenizer.json the "
        "output is ids too: a causal LM's prompt ids, then the new ones)",
    )
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument(
        "--num-beams",
        type=int,
        default=None,
        help="beam search width (default: the checkpoint's generation_config.json, else 1; "
        "beams print their result at the end instead of streaming)",
    )
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--cache-dtype", default="float32", help="KV cache precision: float32, bfloat16 or int8")


def run(args):
    import numpy as np

    import tfcore

    from .. import gguf
    from ..config import Config
    from ..models import registry
    from ._common import tokenizer_or_none

    if gguf.is_gguf_path(args.model):  # a llama.cpp GGUF file: config and tokenizer inside it
        model_type = gguf.read_config(args.model).get("model_type")
    else:
        model_type = Config.from_dir(args.model).get("model_type")
    tasks = registry.tasks_for(model_type)
    seq2seq = "seq2seq-lm" in tasks
    if not seq2seq and "causal-lm" not in tasks:
        supported = sorted({*registry.model_types("causal-lm"), *registry.model_types("seq2seq-lm")})
        raise tfcore.CheckpointError(
            f"{args.model}: model_type {model_type!r} is not a language model tfcore "
            f"generates with; supported: {', '.join(supported)}"
        )
    auto = tfcore.AutoModelForSeq2SeqLM if seq2seq else tfcore.AutoModelForCausalLM
    model = auto.from_pretrained(args.model, dtype=args.dtype, threads=args.threads)
    tok = tokenizer_or_none(args.model)
    if args.ids is not None:
        try:
            ids = np.array([[int(t) for t in args.ids.split(",") if t.strip()]], dtype=np.int64)
        except ValueError:
            raise tfcore.TfcoreValueError(
                f"--ids must be comma-separated integers, got {args.ids!r}"
            ) from None
    elif args.prompt is not None:
        if tok is None:
            raise tfcore.TfcoreValueError(
                f"{args.model} has no tokenizer tfcore can read (tokenizer.json, or a GGUF byte-level "
                "BPE vocabulary): give the prompt as --ids"
            )
        from .. import text

        enc = tok.encode(args.prompt)
        text._warn_truncated(tok, [enc])  # a prompt cut at the tokenizer's limit is announced
        ids = np.array([enc.ids], dtype=np.int64)
    else:
        raise tfcore.TfcoreValueError("give a prompt (text) or --ids")
    if ids.size == 0:
        raise tfcore.TfcoreValueError("the prompt is empty")
    from ..text import _IncrementalDecoder

    # a continuation decodes after the prompt's last tokens (its leading space); a seq2seq
    # output is text of its own
    context = [] if seq2seq else ids[0, -4:].tolist()
    detok = _IncrementalDecoder(tok, context=context) if tok is not None else None
    count = 0

    def stream(step):
        nonlocal count
        count += 1
        sys.stdout.write(f"{int(step[0])} " if detok is None else detok.push(step[0]))
        sys.stdout.flush()

    if not seq2seq:  # a continuation follows its prompt, echoed first (as text or as ids)
        sys.stdout.write(tok.decode(ids[0].tolist()) if tok is not None else " ".join(map(str, ids[0])) + " ")
    t0 = time.perf_counter()
    beams = args.num_beams if args.num_beams is not None or not args.sample else 1
    out = model.generate(
        ids,
        num_beams=beams,
        max_new_tokens=args.max_new_tokens,
        do_sample=args.sample,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        streamer=stream,
        cache_dtype=args.cache_dtype,
    )
    took = time.perf_counter() - t0
    if count == 0:  # beam search (no streaming): its best sequence, printed once it is known
        for token in out[0, 1 if seq2seq else ids.shape[1] :]:
            stream(token[None])
    print("" if detok is None else detok.flush())
    print(f"[{count} tokens in {took:.2f} s, {count / max(took, 1e-9):.1f} tok/s]", file=sys.stderr)
    return 0
