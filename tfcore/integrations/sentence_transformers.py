"""A tfcore encoder with ``SentenceTransformer.encode``'s signature, for MTEB and for code
written against sentence-transformers.

    enc = tfcore.integrations.sentence_transformers.SentenceEncoder(DIR)
    emb = enc.encode(["a sentence", "another"], batch_size=64, normalize_embeddings=True)

Pooling, normalisation, max_seq_length, lower-casing and named prompts come from the
sentence-transformers files of the directory (``modules.json``, ``1_Pooling/config.json``,
``sentence_bert_config.json``, ``config_sentence_transformers.json``; read by
:func:`tfcore.text.sentence_transformers_config`); a plain Hugging Face directory gets mean
pooling. The forward passes are ``tfcore.eval.embed`` (length-sorted batches), so ``engine=``
spreads them over a Ray or Dask cluster too.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Union

from .. import _C, text


class SentenceEncoder:
    """SentenceTransformer-style encoder over a tfcore model.

    model_or_path: a directory (loaded with tfcore.AutoModel) or a loaded tfcore encoder;
    dtype, threads: as from_pretrained; engine: None, a distributed.Client or "ray" (see
    tfcore.eval.embed)."""

    def __init__(
        self,
        model_or_path: Any,
        dtype: str = "float32",
        threads: Optional[int] = None,
        engine: Any = None,
    ):
        import tfcore

        if isinstance(model_or_path, (str, os.PathLike)):
            self.model = tfcore.AutoModel.from_pretrained(model_or_path, dtype=dtype, threads=threads)
        elif hasattr(model_or_path, "name_or_path") and callable(model_or_path):
            self.model = model_or_path
        else:
            raise _C.TfcoreTypeError(
                f"model_or_path must be a directory or a tfcore model, got {type(model_or_path).__name__}"
            )
        cfg = text.sentence_transformers_config(self.model.name_or_path)
        # tfcore.eval.embed applies these from the directory itself; kept here for repr / MTEB
        self.pooling = cfg.get("pooling_mode") or "mean"
        self.normalize = bool(cfg.get("normalize"))
        self.prompts: Dict[str, str] = dict(cfg.get("prompts") or {})
        self.default_prompt_name: Optional[str] = cfg.get("default_prompt_name")
        self.max_seq_length: Optional[int] = cfg.get("max_seq_length")
        self.engine = engine
        self.model_card_data = None  # read by MTEB's metadata helpers when present

    def __repr__(self) -> str:
        return (
            f"SentenceEncoder(path={self.model.name_or_path!r}, pooling={self.pooling!r}, "
            f"normalize={self.normalize}, max_seq_length={self.max_seq_length})"
        )

    def get_sentence_embedding_dimension(self) -> int:
        """Width of the embeddings (hidden_size)."""
        cfg = self.model.config
        return int(cfg.get("hidden_size") or cfg.get("d_model") or cfg.get("n_embd"))

    def encode(
        self,
        sentences: Union[str, List[str]],
        prompt_name: Optional[str] = None,
        prompt: Optional[str] = None,
        batch_size: int = 32,
        show_progress_bar: Optional[bool] = None,
        output_value: str = "sentence_embedding",
        precision: str = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: Optional[str] = None,
        normalize_embeddings: bool = False,
        **kwargs: Any,
    ):
        """(N, C) float32 embeddings of sentences (a (C,) vector for one str), like
        SentenceTransformer.encode: prompt (a prefix) or prompt_name (one of the directory's
        prompts) is prepended; normalize_embeddings or a Normalize module scales rows to
        unit length; convert_to_tensor returns a torch tensor (if torch is installed).
        device is accepted and ignored (tfcore runs on the CPU); other keyword arguments
        (MTEB passes task metadata) are ignored."""
        if output_value != "sentence_embedding":
            raise _C.TfcoreValueError(
                f"output_value {output_value!r} is not supported (only 'sentence_embedding')"
            )
        if precision != "float32":
            raise _C.TfcoreValueError(f"precision {precision!r} is not supported (only 'float32')")
        single = isinstance(sentences, str)
        items = [sentences] if single else list(sentences)
        from .. import eval as tf_eval

        emb = tf_eval.embed(
            self.model,
            items,
            batch_size=batch_size,
            normalize=bool(normalize_embeddings or self.normalize),
            show_progress=show_progress_bar,
            prompt_name=prompt_name,
            prompt=prompt,
            engine=self.engine,
        )
        if single:
            emb = emb[0]
        if convert_to_tensor:
            import torch

            return torch.from_numpy(emb)
        return emb if convert_to_numpy else list(emb)
