"""Shared model infrastructure: outputs with HF field names, weight lookup with key
prefixes and renames, missing/unexpected key reporting, from_pretrained."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from .._runtime import canonical_dtype, with_model_threads
from ..config import Config
from ..safetensors import Checkpoint, CheckpointError

log = logging.getLogger("tfcore")


class ModelOutput(dict):
    """HF-style output: fields by attribute (``out.last_hidden_state``), key or index
    (``out[0]``); fields that are None are left out, like HF's ``to_tuple``."""

    def __init__(self, **fields: Any):
        super().__init__((k, v) for k, v in fields.items() if v is not None)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, key):
        if isinstance(key, int):
            return list(self.values())[key]
        return super().__getitem__(key)

    def to_tuple(self) -> Tuple[Any, ...]:
        """The fields that are not None, in order (HF ModelOutput.to_tuple)."""
        return tuple(self.values())

    def __repr__(self) -> str:
        """One ``name: shape dtype`` line per field (never the arrays' values)."""
        lines = [f"  {name}: {_describe(value)}" for name, value in self.items()]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)" if lines else f"{type(self).__name__}()"

    def _repr_pretty_(self, p, cycle) -> None:  # IPython / Jupyter display: the same lines
        p.text(repr(self))


def _describe(value: Any) -> str:
    """'(2, 7, 384) float32' for an array; 'tuple of 3: (2, 7, 384) float32' for a tuple of
    equal arrays (hidden_states); a KVCache or other object by its type."""
    if isinstance(value, np.ndarray):
        return f"{tuple(value.shape)} {value.dtype}"
    if isinstance(value, (tuple, list)):
        parts = [_describe(v) for v in value]
        if parts and all(p == parts[0] for p in parts):
            return f"{type(value).__name__} of {len(parts)}: {parts[0]}"
        return f"{type(value).__name__} of {len(parts)}: [" + ", ".join(parts) + "]"
    if isinstance(value, (int, float, str, bool)):
        return repr(value)
    return type(value).__name__


class Weights:
    """Tensors of a checkpoint seen under a model's key names: tries each prefix HF may have
    saved the base model under ("bert.", "roberta.", ...) and legacy renames
    (LayerNorm.gamma/beta), checks shapes, and records which keys were used."""

    def __init__(
        self,
        ckpt: Checkpoint,
        prefixes: Sequence[str] = ("",),
        ignore: Iterable[str] = (),
        dtype: str = "float32",
    ):
        self.ckpt = ckpt
        self.dtype = dtype  # the precision layers are built in (passed to Linear & co)
        self.prefixes = list(prefixes)
        self.used: Set[str] = set()
        self.ignore = tuple(ignore)

    def _resolve(self, key: str) -> Optional[str]:
        candidates = [key]
        if key.endswith(".weight"):
            candidates.append(key[: -len(".weight")] + ".gamma")
        if key.endswith(".bias"):
            candidates.append(key[: -len(".bias")] + ".beta")
        for prefix in self.prefixes:
            for c in candidates:
                if prefix + c in self.ckpt:
                    return prefix + c
        return None

    def has(self, key: str) -> bool:
        return self._resolve(key) is not None

    def get(
        self, key: str, shape: Optional[Tuple[int, ...]] = None, optional: bool = False, matrix: bool = False
    ) -> Optional[np.ndarray]:
        """The tensor as float32 (checked against shape). matrix=True marks a projection
        weight: in a bfloat16 model a bf16-stored one comes back as its uint16 bits, a view
        of the file that Linear packs without a float32 copy."""
        name = self._resolve(key)
        if name is None:
            if optional:
                return None
            raise CheckpointError(
                f"{self.ckpt.directory}: checkpoint is missing {key!r}"
                + (f" (looked under prefixes {self.prefixes})" if self.prefixes != [""] else "")
            )
        self.used.add(name)
        if matrix and self.dtype.startswith("int4") and hasattr(self.ckpt, "int4_linear"):
            lin = self.ckpt.int4_linear(name)  # a GGUF / GPTQ / AWQ 4-bit tensor kept in 4 bits
            if lin is not None:
                if shape is not None and (lin.out_features, lin.in_features) != tuple(shape):
                    raise CheckpointError(
                        f"{self.ckpt.directory}: {name!r} has shape {(lin.out_features, lin.in_features)}, "
                        f"expected {tuple(shape)} from the config"
                    )
                return lin
        if matrix and self.dtype == "bfloat16" and self.ckpt.info(name).dtype == "BF16":
            a = np.ascontiguousarray(self.ckpt.raw(name))
        else:
            a = self.ckpt.float32(name)
        if shape is not None and tuple(a.shape) != tuple(shape):
            raise CheckpointError(
                f"{self.ckpt.directory}: {name!r} has shape {tuple(a.shape)}, "
                f"expected {tuple(shape)} from config.json"
            )
        return a

    def layer_range(self, n: int):
        """range(n) for a family's layer loop, with a progress bar while packing (see
        tfcore._progress: shown in a terminal or notebook, TFCORE_PROGRESS=0 hides it)."""
        from .._progress import progress

        name = os.path.basename(os.path.normpath(str(self.ckpt.directory)))
        return progress(range(n), total=n, desc=f"loading {name}", unit="layer")

    def release(self) -> None:
        """Let go of the checkpoint pages read so far (their data now lives in packed layer
        weights); called after each layer so loading peaks near 1x the weights."""
        self.ckpt.release_pages()

    def unexpected(self) -> List[str]:
        return sorted(k for k in self.ckpt if k not in self.used and not any(p in k for p in self.ignore))


class PreTrainedModel:
    """Base of every tfcore model class: ``Cls.from_pretrained(directory)``, ``model(...)``."""

    model_types: Tuple[str, ...] = ()
    base_prefixes: Tuple[str, ...] = ("",)
    ignore_keys: Tuple[str, ...] = ()

    def __init__(self, config: Config, weights: Weights):
        self.config = config
        self.dtype = weights.dtype

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        forward = cls.__dict__.get("forward")
        if forward is not None and "__call__" not in cls.__dict__:
            cls.__call__ = _call_of(forward)

    @classmethod
    def from_pretrained(
        cls,
        directory: Union[str, os.PathLike],
        dtype: Any = "float32",
        threads: Optional[int] = None,
        *,
        revision: Optional[str] = None,
        torch_dtype: Any = None,
    ) -> "PreTrainedModel":
        """Load a Hugging Face checkpoint: a directory (``config.json`` + ``*.safetensors``,
        or PyTorch's ``pytorch_model.bin``, read without torch and without running any code
        from it), a llama.cpp ``.gguf`` file (config from its metadata, quantized tensors
        dequantized at load, or with ``dtype="int4"`` its Q4_0 / Q4_1 / Q4_K projections kept
        in 4 bits, groups of 32; see :mod:`tfcore.gguf` and :mod:`tfcore.gguf_int4`) or a hub id ``"org/name"`` already in the local Hugging Face cache
        (``revision=`` a branch, tag or commit; see :mod:`tfcore.hub`). ``~`` is expanded. A GPTQ
        or AWQ checkpoint (a ``quantization_config`` in config.json) is dequantized exactly, or
        with ``dtype="int4"`` kept in 4 bits at its group size (see :mod:`tfcore.gptq_awq`).

        dtype ``"float32"`` (default), ``"bfloat16"`` or ``"int8"`` (also as ``np.float32``,
        ``torch.bfloat16``; ``torch_dtype=`` is accepted as HF's older name): the precision of
        the projection weights and their GEMMs. bfloat16: bf16 weights, bf16-rounded inputs,
        float32 accumulation. int8: weights quantized per output channel, inputs per token
        (dynamic, symmetric), int32 accumulation, dequantized to float32. Norms, softmax,
        embeddings, the KV cache and all outputs stay float32. int4 (``"int4"``, group 128;
        ``"int4_g32"``, ``"int4_g64"``, ``"int4_g256"``): projection weights quantized at load to
        4 bits per group of inputs (round to nearest, the group's min and max), see
        ``tfcore.Linear``'s dtype. See
        ``tfcore.supported_dtypes()``.

        threads: run this model's calls (forward, generate) on n threads whatever
        ``tfcore.set_num_threads`` says; None follows the process-wide setting."""
        from .. import _C
        from ..hub import resolve

        if torch_dtype is not None:
            if dtype != "float32" and canonical_dtype(dtype) != canonical_dtype(torch_dtype):
                raise _C.TfcoreValueError(
                    f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree (torch_dtype is an alias: pass one)"
                )
            dtype = torch_dtype
        dtype = canonical_dtype(dtype)
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise _C.TfcoreValueError(f"threads must be an int >= 1 or None, got {threads!r}")
        if threads is not None and threads > _C.config()["omp_num_procs"]:
            raise _C.TfcoreValueError(
                f"threads={threads}: this machine runs tfcore on {_C.config()['omp_num_procs']} CPUs; "
                "more threads than CPUs only make every call wait for descheduled ones"
            )
        from .. import gguf

        if gguf.is_gguf_path(directory):  # a llama.cpp GGUF file: config and tensors from it
            if revision is not None:
                raise CheckpointError(
                    f"{directory}: revision={revision!r} applies to hub ids, not local files"
                )
            config, ckpt = gguf.load(directory)
            directory = ckpt.directory
        else:
            directory = resolve(directory, revision)
            config = Config.from_dir(directory)
            ckpt = None
        mt = config.get("model_type")
        if cls.model_types and mt not in cls.model_types:
            raise CheckpointError(
                f"{directory}: config.json has model_type {mt!r}; {cls.__name__} "
                f"loads {', '.join(cls.model_types)}"
            )
        if ckpt is None:  # a GPTQ / AWQ checkpoint's 4-bit projections seen as weights
            from .. import gptq_awq

            ckpt = gptq_awq.wrap(Checkpoint(directory), config)
        weights = Weights(ckpt, cls.base_prefixes, cls.ignore_keys, dtype)
        try:
            model = cls(config, weights)
        except _C.TfcoreError:
            raise
        except (
            TypeError,
            ValueError,
            KeyError,
            IndexError,
            OverflowError,
            ZeroDivisionError,
            AttributeError,
        ) as e:
            # a config value of a type or range the family's code did not expect (optional
            # keys are read as they come): name the file instead of failing deep inside
            raise CheckpointError(
                f"{directory}: config.json holds a value {cls.__name__} cannot use ({type(e).__name__}: {e})"
            ) from e
        weights.release()
        extra = weights.unexpected()
        model.unexpected_keys = extra
        model._num_parameters = sum(int(np.prod(weights.ckpt.info(k).shape)) for k in weights.used)
        model._num_matrix_parameters = sum(
            int(np.prod(weights.ckpt.info(k).shape))
            for k in weights.used
            if len(weights.ckpt.info(k).shape) == 2
        )
        if extra:
            log.warning(
                "%s: %d checkpoint tensors not used by %s: %s%s",
                directory,
                len(extra),
                cls.__name__,
                ", ".join(extra[:8]),
                " ..." if len(extra) > 8 else "",
            )
        model.name_or_path = str(directory)
        model.threads = threads
        model._after_load(directory)
        return model

    def _after_load(self, directory: Path) -> None:
        """Family hook run at the end of from_pretrained (e.g. generation_config.json)."""

    @with_model_threads
    def __call__(self, *args: Any, return_dict: Optional[bool] = None, **kwargs: Any) -> ModelOutput:
        out = self.forward(*args, **kwargs)
        return out.to_tuple() if return_dict is False else out

    def __reduce__(self):
        """Pickled by checkpoint path and dtype, never by copying weights: unpickling (in this
        or another process) loads the same directory again."""
        return (_load_pickled, (type(self), self.name_or_path, self.dtype, self.threads))

    def num_parameters(self) -> int:
        """Parameters in the checkpoint tensors this model uses."""
        return self._num_parameters

    def __repr__(self) -> str:
        from .. import get_num_threads

        return (
            f"{type(self).__name__}(model_type={self.config.get('model_type')!r}, "
            f"parameters={self._num_parameters / 1e6:.1f}M, dtype={self.dtype}, threads={self.threads or get_num_threads()}, "
            f"path={self.name_or_path!r})"
        )

    def memory_bytes(self) -> int:
        """Approximate bytes of this model's weights in memory: projection matrices in the
        model's dtype (int8 also keeps a float scale per output channel), the rest float32."""
        matrices = getattr(self, "_num_matrix_parameters", self._num_parameters)
        if self.dtype.startswith("int4"):  # 4 bits plus a float32 scale and offset per group
            group = int(self.dtype[6:]) if self.dtype.startswith("int4_g") else 128
            per = 0.5 + 8 / group
        else:
            per = {"float32": 4, "bfloat16": 2, "int8": 1}[self.dtype]
        return int(matrices * per) + (self._num_parameters - matrices) * 4

    def _repr_html_(self) -> str:
        import html

        from .. import get_num_threads

        cfg = self.config
        arch = ", ".join(
            f"{k}={cfg.get(k)}"
            for k in (
                "num_hidden_layers",
                "n_layer",
                "hidden_size",
                "n_embd",
                "num_attention_heads",
                "n_head",
                "num_key_value_heads",
                "intermediate_size",
                "vocab_size",
            )
            if cfg.get(k) is not None
        )
        rows = [
            ("class", type(self).__name__),
            ("model_type", cfg.get("model_type")),
            ("architecture", arch),
            ("parameters", f"{self._num_parameters:,}"),
            ("dtype", self.dtype),
            ("threads", self.threads or f"{get_num_threads()} (process-wide)"),
            ("weights in memory", f"{self.memory_bytes() / 2**20:.1f} MiB"),
            ("checkpoint", self.name_or_path),
        ]
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
            f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        return f"<table>{body}</table>"

    def forward(self, *args: Any, **kwargs: Any) -> ModelOutput:  # pragma: no cover - abstract
        """Run the model (HF arguments and outputs; see the family class)."""
        raise NotImplementedError


def _call_of(forward):
    """A __call__ with forward's signature and docstring (``inspect.signature(model)``,
    ``model?`` in Jupyter) plus HF's ``return_dict``: False gives the output as a tuple (the
    fields that are not None, in order, like HF's ``to_tuple``)."""
    import functools
    import inspect

    @functools.wraps(forward)
    @with_model_threads
    def __call__(self, *args: Any, return_dict: Optional[bool] = None, **kwargs: Any):
        out = self.forward(*args, **kwargs)
        return out.to_tuple() if return_dict is False else out

    sig = inspect.signature(forward)
    params = list(sig.parameters.values())
    if "return_dict" not in sig.parameters:
        extra = inspect.Parameter("return_dict", inspect.Parameter.KEYWORD_ONLY, default=None)
        if params and params[-1].kind == inspect.Parameter.VAR_KEYWORD:
            params.insert(len(params) - 1, extra)
        else:
            params.append(extra)
    __call__.__signature__ = sig.replace(parameters=params)
    __call__.__doc__ = (forward.__doc__ or "").rstrip() + (
        "\n\n(return_dict=False returns the output fields as a tuple, like Hugging Face.)"
    )
    del __call__.__wrapped__  # inspect reads __signature__, not forward's own
    __call__.__name__ = "__call__"
    __call__.__qualname__ = forward.__qualname__.rsplit(".", 1)[0] + ".__call__"
    return __call__


def _load_pickled(cls, path: str, dtype: str, threads: Optional[int] = None) -> "PreTrainedModel":
    return cls.from_pretrained(path, dtype=dtype, threads=threads)


def padding_mask(
    attention_mask,
    B: int,
    T: int,
    layout: str = "(batch, seq_len)",
    *,
    name: str = "attention_mask",
    keep_all_true: bool = False,
) -> Optional[np.ndarray]:
    """HF (B, T) 1/0 mask as bool, or None when every token is real (the kernel then skips
    masking) unless keep_all_true. layout and name go into the error messages."""
    from .. import _C

    if attention_mask is None:
        return None
    m = np.asarray(attention_mask)
    if m.shape != (B, T):
        raise _C.TfcoreValueError(f"{name} has shape {m.shape}, expected {layout} = ({B}, {T})")
    if m.dtype.kind not in "biuf":
        raise _C.TfcoreTypeError(f"{name} must hold 0/1 values, got dtype {m.dtype}")
    m = m != 0
    return None if m.all() and not keep_all_true else np.ascontiguousarray(m)


def check_ids(name: str, ids: Any, vocab: Optional[int] = None, ndim: int = 2) -> np.ndarray:
    """Token-id-like input as a C-contiguous int64 (B, T) array, with clear errors."""
    from .. import _C

    a = np.asarray(ids)
    if a.dtype.kind not in "iu":
        raise _C.TfcoreTypeError(f"{name} must hold integers, got dtype {a.dtype}")
    if a.ndim == 1 and ndim == 2:
        a = a[None, :]
    if a.ndim != ndim:
        raise _C.TfcoreValueError(f"{name} must have {ndim} dimensions (batch, seq_len), got shape {a.shape}")
    if a.size == 0:
        raise _C.TfcoreValueError(f"{name} is empty (shape {a.shape})")
    if vocab is not None and (a.min() < 0 or a.max() >= vocab):
        bad = a[(a < 0) | (a >= vocab)].flat[0]
        raise _C.TfcoreValueError(f"{name} holds {bad}, outside [0, {vocab})")
    return np.ascontiguousarray(a, dtype=np.int64)
