"""tfcore sentence encoders in MTEB (``mteb.evaluate``).

    import mteb
    from tfcore.integrations.mteb import MtebEncoder
    model = MtebEncoder("path/to/all-MiniLM-L6-v2")          # or MtebEncoder(SentenceEncoder(...))
    results = mteb.evaluate(model, mteb.get_tasks(tasks=["STSBenchmark"]))

:class:`MtebEncoder` is an ``mteb.models.AbsEncoder``: MTEB hands it DataLoaders of text
batches and it answers with :class:`~tfcore.integrations.sentence_transformers.SentenceEncoder`
embeddings (pooling, normalisation, max_seq_length and prompts from the directory's
sentence-transformers files); similarities are cosine, as sentence-transformers' default.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

from .. import _C
from .sentence_transformers import SentenceEncoder

try:
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta, ScoringFunction
except ImportError as e:  # pragma: no cover - depends on the optional extra
    raise ImportError("tfcore.integrations.mteb needs MTEB: pip install 'tfcore[mteb]'") from e


class MtebEncoder(AbsEncoder):
    """An MTEB encoder backed by tfcore.

    encoder: a directory, a loaded tfcore encoder or a SentenceEncoder; dtype, threads,
    engine: as SentenceEncoder (engine= runs the embedding on a Ray or Dask cluster);
    name: the model name MTEB records (default "tfcore/<directory name>")."""

    def __init__(
        self,
        encoder: Any,
        dtype: str = "float32",
        threads: Optional[int] = None,
        engine: Any = None,
        name: Optional[str] = None,
    ):
        self.encoder = (
            encoder
            if isinstance(encoder, SentenceEncoder)
            else SentenceEncoder(encoder, dtype, threads, engine)
        )
        path = self.encoder.model.name_or_path
        self.model_prompts = dict(self.encoder.prompts) or None
        self.mteb_model_meta = ModelMeta.create_empty(
            overwrites={
                "name": name or f"tfcore/{os.path.basename(os.path.normpath(path))}",
                "revision": "local",
                "similarity_fn_name": ScoringFunction.COSINE,
                "embed_dim": self.encoder.get_sentence_embedding_dimension(),
                "max_tokens": self.encoder.max_seq_length,
            }
        )

    def encode(
        self,
        inputs,
        *,
        task_metadata=None,
        hf_split: str = "",
        hf_subset: str = "",
        prompt_type=None,
        **kwargs: Any,
    ) -> np.ndarray:
        """(N, C) float32 embeddings of the texts of a DataLoader of MTEB batches (dicts with
        a "text" list), with the prompt MTEB's rules pick from the directory's prompts."""
        texts = []
        for batch in inputs:
            if not isinstance(batch, dict) or "text" not in batch:
                raise _C.TfcoreTypeError(
                    f"MtebEncoder encodes text batches (dicts with 'text'), got {type(batch).__name__}"
                )
            texts.extend(batch["text"])
        if not texts:
            raise _C.TfcoreValueError("MTEB passed no texts to encode")
        prompt = None
        if self.model_prompts and task_metadata is not None:
            prompt_name = self.get_prompt_name(task_metadata, prompt_type)
            prompt = self.model_prompts.get(prompt_name) if prompt_name else None
        return self.encoder.encode(
            texts,
            prompt=prompt or "",
            batch_size=int(kwargs.get("batch_size", 32)),
            show_progress_bar=bool(kwargs.get("show_progress_bar", False)),
        )
