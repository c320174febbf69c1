"""Chat with a causal LM: a llama.cpp ``.gguf`` file or a checkpoint directory with a chat
template (GGUF metadata ``tokenizer.chat_template``, or ``tokenizer_config.json``'s
``chat_template`` next to ``tokenizer.json``).

Each line read is a user turn; the reply streams as it is generated and joins the history.
Greedy by default; --sample with --temperature/--top-k/--top-p/--seed. Ctrl-C during a reply
stops that reply (what was said so far is kept); Ctrl-C or Ctrl-D at the prompt ends the chat.
With stdin not a terminal, every line is a turn and the chat ends with the input."""

from __future__ import annotations

import json
import os
import sys
import time

NAME, HELP = "chat", "chat with a causal LM (GGUF file or directory with a chat template), streaming"


def add_arguments(p):
    from ._common import add_model_options

    add_model_options(
        p, model_help="a .gguf file, or a model directory with tokenizer.json and a chat template"
    )
    p.add_argument("--system", default=None, help="a system message to start the conversation with")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=None)


def _template(path: str):
    """(chat template, bos token, eos token) of a GGUF file or a directory."""
    from .. import gguf
    from ..gguf_tokenizer import chat_template_of

    if gguf.is_gguf_path(path):
        t = chat_template_of(path)
        return t["chat_template"], t["bos_token"], t["eos_token"]
    cfg_path = os.path.join(path, "tokenizer_config.json")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        cfg = {}

    def tok(v):
        return v.get("content") if isinstance(v, dict) else v

    tpl = cfg.get("chat_template") if isinstance(cfg, dict) else None
    if isinstance(tpl, list):  # named templates: the default one
        tpl = next(
            (t.get("template") for t in tpl if isinstance(t, dict) and t.get("name") == "default"), None
        )
    return tpl, tok(cfg.get("bos_token")), tok(cfg.get("eos_token"))


def run(args):
    import numpy as np

    import tfcore

    from ..gguf_tokenizer import apply_chat_template
    from ..text import _IncrementalDecoder
    from ._common import tokenizer_or_none

    template, bos, eos = _template(args.model)
    if not template:
        raise tfcore.TfcoreValueError(
            f"{args.model} has no chat template (GGUF tokenizer.chat_template or tokenizer_config.json "
            "chat_template): use 'tfcore generate' for plain continuation"
        )
    model = tfcore.AutoModelForCausalLM.from_pretrained(args.model, dtype=args.dtype, threads=args.threads)
    tok = tokenizer_or_none(args.model)
    if tok is None:
        raise tfcore.TfcoreValueError(f"{args.model} has no tokenizer tfcore can read")
    tok.no_padding()
    stop = {
        i for i in (tok.token_to_id(eos) if eos else None, model.config.get("eos_token_id")) if i is not None
    }
    messages = [{"role": "system", "content": args.system}] if args.system else []
    interactive = sys.stdin.isatty()
    while True:
        try:
            if interactive:
                line = input("> ")
            else:
                line = sys.stdin.readline()
                if not line:
                    break
                line = line.rstrip("\n")
        except (EOFError, KeyboardInterrupt):
            print()
            break
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line})
        prompt = apply_chat_template(
            template, messages, add_generation_prompt=True, bos_token=bos, eos_token=eos
        )
        ids = np.array([tok.encode(prompt, add_special_tokens=False).ids], dtype=np.int64)
        detok = _IncrementalDecoder(tok, skip=stop)
        reply: list = []  # the reply's text, piece by piece as printed
        count = 0

        def stream(step):
            nonlocal count
            count += 1
            reply.append(detok.push(step[0]))
            sys.stdout.write(reply[-1])
            sys.stdout.flush()

        t0 = time.perf_counter()
        try:
            model.generate(
                ids,
                max_new_tokens=args.max_new_tokens,
                do_sample=args.sample,
                temperature=args.temperature,
                top_k=args.top_k,
                top_p=args.top_p,
                seed=args.seed,
                eos_token_id=sorted(stop),
                streamer=stream,
            )
            interrupted = False
        except KeyboardInterrupt:
            interrupted = True
        took = time.perf_counter() - t0
        reply.append(detok.flush())  # a character the stream left incomplete
        print(reply[-1] + (" [interrupted]" if interrupted else ""))
        print(f"[{count} tokens, {count / max(took, 1e-9):.1f} tok/s]", file=sys.stderr)
        messages.append({"role": "assistant", "content": "".join(reply)})
    return 0
