"""Write docs/api.md from the docstrings of every public name (tests/test_docs.py checks it
is current):  python tools/gen_api_docs.py"""

from __future__ import annotations

import inspect
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sections():
    import tfcore
    import tfcore.eval
    import tfcore.functional
    import tfcore.testing
    from tfcore import models, text

    yield "tfcore", [getattr(tfcore, n) for n in tfcore.__all__ if n not in ("models", "functional")]
    yield "tfcore.functional", [getattr(tfcore.functional, n) for n in tfcore.functional.__all__]
    yield "tfcore.models", [getattr(models, n) for n in models.__all__]
    yield "tfcore.image", [tfcore.image.ImageProcessor, tfcore.image.load_image]
    yield "tfcore.audio", [getattr(tfcore.audio, n) for n in tfcore.audio.__all__]
    yield (
        "tfcore.eval",
        [
            tfcore.eval.embed,
            tfcore.eval.score,
            tfcore.eval.generate,
            tfcore.eval.semantic_search,
            tfcore.eval.cos_sim,
            tfcore.eval.dot_score,
            tfcore.eval.length_batches,
            tfcore.eval.check_texts,
            tfcore.eval.embed_images,
            tfcore.eval.zero_shot_classify,
        ],
    )
    yield (
        "tfcore.text",
        [
            text.load_tokenizer,
            text.sentence_transformers_config,
            text.default_max_length,
            text.encode,
            text.pool,
            text.mean_pooling,
            text.l2_normalize,
            text.TruncationWarning,
        ],
    )
    # evaluation pipelines (docs/evaluation.md); each module imports its tool
    from tfcore.integrations import dask as tf_dask
    from tfcore.integrations import lm_eval as tf_lm_eval
    from tfcore.integrations import mteb as tf_mteb
    from tfcore.integrations import ray as tf_ray
    from tfcore.integrations import sentence_transformers as tf_st

    yield "tfcore.integrations.lm_eval", [tf_lm_eval.TfcoreLM]
    yield "tfcore.integrations.sentence_transformers", [tf_st.SentenceEncoder]
    yield "tfcore.integrations.mteb", [tf_mteb.MtebEncoder]
    yield "tfcore.integrations.ray", [tf_ray.TfcoreActor, tf_ray.run]
    yield "tfcore.integrations.dask", [tf_dask.TfcoreModelPlugin, tf_dask.worker_model, tf_dask.run]
    yield "tfcore.testing", [tfcore.testing.assert_close_to_reference]
    import tfcore.ctranslate2_whisper as ct2w
    import tfcore.gguf
    import tfcore.gguf_tokenizer

    yield (
        "tfcore.ctranslate2_whisper",
        [ct2w.convert_ctranslate2_whisper, ct2w.read_ctranslate2_model, ct2w.is_ctranslate2_directory],
    )

    yield (
        "tfcore.gguf",
        [tfcore.gguf.GGUFFile, tfcore.gguf.load, tfcore.gguf.read_config, tfcore.gguf.is_gguf_path],
    )
    import tfcore.gguf_int4

    yield "tfcore.gguf_int4", [tfcore.gguf_int4.repack, tfcore.gguf_int4.linear_from_blocks]
    yield (
        "tfcore.gguf_tokenizer",
        [
            tfcore.gguf_tokenizer.load_gguf_tokenizer,
            tfcore.gguf_tokenizer.tokenizer_from_metadata,
            tfcore.gguf_tokenizer.chat_template_of,
            tfcore.gguf_tokenizer.apply_chat_template,
        ],
    )


def signature(obj) -> str:
    doc = (obj.__doc__ or "").strip()
    first = doc.splitlines()[0] if doc else ""
    if "(" in first and first.split("(")[0].strip().isidentifier() and first.rstrip().endswith(")"):
        return first  # C types document their signature on the first line
    try:
        return f"{obj.__name__}{inspect.signature(obj)}"
    except (TypeError, ValueError):
        return obj.__name__


def body(obj) -> str:
    doc = inspect.cleandoc(obj.__doc__ or "")
    lines = doc.splitlines()
    if lines and lines[0] == signature(obj):
        lines = lines[1:]
    while lines and lines[0].strip() in ("", "--"):
        lines = lines[1:]
    return "\n".join(lines).strip()


def members(obj):
    """Public methods and properties of a class, with their first doc line."""
    out = []
    for name, member in sorted(vars(obj).items()):
        if name.startswith("_") or not (
            callable(member)
            or isinstance(member, property)
            or type(member).__name__ in ("getset_descriptor", "member_descriptor")
        ):
            continue
        if isinstance(member, (classmethod, staticmethod)):
            member = member.__func__
        qualname = getattr(member, "__qualname__", "")
        if inspect.isfunction(member) and not qualname.startswith(obj.__name__ + "."):
            continue  # set on the class from outside (e.g. a test's monkeypatch), not its own
        out.append(f"- `{name}`: {summary(name, getattr(member, '__doc__', None))}")
    return out


def summary(name: str, doc) -> str:
    """A member's first paragraph, joined into one line: whole sentences, never a line cut
    mid-sentence (a C signature line and its '--' separator are skipped)."""
    lines = inspect.cleandoc(doc or "").splitlines()
    if lines and lines[0].startswith(name + "("):
        lines = lines[1:]
    while lines and lines[0].strip() in ("", "--"):
        lines = lines[1:]
    para = []
    for line in lines:
        if not line.strip():
            break
        para.append(line.strip())
    return " ".join(para)


def render() -> str:
    parts = [
        "# API reference\n",
        "Generated from the docstrings by `tools/gen_api_docs.py`; every public name of tfcore is here.\n",
    ]
    for title, objs in sections():
        parts.append(f"## {title}\n")
        for obj in objs:
            parts.append(f"### `{signature(obj)}`\n")
            b = body(obj)
            if b:
                parts.append("```text\n" + b + "\n```\n")
            if inspect.isclass(obj):
                m = members(obj)
                if m:
                    parts.append("\n".join(m) + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    with open(os.path.join(ROOT, "docs", "api.md"), "w") as f:
        f.write(render())
    print("wrote docs/api.md")
