"""Decoder-only models, composed like Hugging Face's: a base model (``DecoderModel``:
embeddings, TransformerBlocks with a KVCache, final norm -> last_hidden_state; no generate)
and a causal LM (``DecoderLM``) that holds one under HF's attribute name (``transformer`` for
GPT-2 and BLOOM, ``model`` for Llama and OPT) plus the LM head on the positions asked for
(logits_to_keep), with generate()."""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from .. import _C
from ..config import Config
from ..generation import GenerationMixin, read_generation_defaults
from ..safetensors import CheckpointError
from .base import ModelOutput, PreTrainedModel, Weights, check_ids, padding_mask

# -- config and weight-layout helpers the decoder families share


def rope_settings(cfg: Config):
    """(theta, scaling dict or None) from either config layout."""
    params = cfg.get("rope_parameters")
    if isinstance(params, dict):
        theta = float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))
        kind = params.get("rope_type", "default")
        return theta, (None if kind == "default" else params)
    return float(cfg.get("rope_theta", 10000.0)), cfg.get("rope_scaling")


def rope_partial_factor(cfg: Config) -> float:
    """HF's partial_rotary_factor: in rope_parameters (v5), at the top level, or GPT-NeoX's rotary_pct."""
    params = cfg.get("rope_parameters")
    for value in (
        params.get("partial_rotary_factor") if isinstance(params, dict) else None,
        cfg.get("partial_rotary_factor"),
        cfg.get("rotary_pct"),
    ):
        if value is not None:
            if not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
                raise CheckpointError(f"config.json: partial_rotary_factor must be in (0, 1], got {value!r}")
            return float(value)
    return 1.0


def rotary_dim(cfg: Config, D: int) -> int:
    """int(head_dim * partial_rotary_factor), as HF computes it."""
    return int(D * rope_partial_factor(cfg))


def qkv_heads_to_blocks(a: np.ndarray, H: int, D: int) -> np.ndarray:
    """BLOOM's fused query_key_value rows, per head [H, 3, D] (q, k, v of head 0, then of
    head 1, ...), reordered to [3, H, D] = [q heads | k heads | v heads]: (3 H D, ...) in and out
    (weights (3 C, C) or bias (3 C,); float32 or bfloat16 bits)."""
    rest = a.shape[1:]
    return np.ascontiguousarray(a.reshape((H, 3, D) + rest).swapaxes(0, 1).reshape((3 * H * D,) + rest))


class DecoderModel(PreTrainedModel):
    """Base of decoder-only base models (GPT2Model, LlamaModel, ...): subclasses build
    self.layers and self.final_norm and define embed(). No LM head and no generate()."""

    rotary = False  # layers take position_ids (RoPE) instead of added position embeddings

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        self.layers: List[_C.TransformerBlock] = []

    # -- pieces of a family
    def embed(self, ids: np.ndarray, positions: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        """Input embeddings of ids (B, T) at positions (B, T): (B, T, C) float32."""
        raise NotImplementedError

    def default_positions(self, mask: np.ndarray, past: int, T: int) -> np.ndarray:
        """Positions of the T new tokens when the caller gives none: HF's arange after the cache."""
        return np.broadcast_to(np.arange(past, past + T, dtype=np.int64), (mask.shape[0], T))

    def new_cache(
        self,
        batch_size: int,
        capacity: int = 256,
        policy: str = "full",
        budget: Optional[int] = None,
        n_sink: int = 4,
        dtype: str = "float32",
    ) -> _C.KVCache:
        """A KVCache for this model; policy/budget/n_sink/dtype as tfcore.KVCache."""
        attn = self.layers[0].attention
        return _C.KVCache(
            len(self.layers),
            batch_size,
            attn.num_key_value_heads,
            attn.head_dim,
            capacity=max(int(capacity), 1),
            policy=policy,
            budget=int(budget or 0),
            n_sink=n_sink,
            dtype=dtype,
        )

    def forward(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        use_cache: Optional[bool] = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Hugging Face arguments and outputs of the family's base model (last_hidden_state
        after the final norm); past_key_values is a tfcore.KVCache (created when
        use_cache=True and none is given) that the layers extend in place."""
        h, cache, hidden, attentions = self.run_layers(
            input_ids,
            attention_mask,
            position_ids,
            past_key_values,
            use_cache,
            output_hidden_states,
            output_attentions,
        )
        return ModelOutput(
            last_hidden_state=h, past_key_values=cache, hidden_states=hidden, attentions=attentions
        )

    def run_layers(
        self,
        input_ids,
        attention_mask,
        position_ids,
        past_key_values,
        use_cache,
        output_hidden_states: bool,
        output_attentions: bool,
    ):
        """Embeddings, layers and final norm: (last hidden state, cache, hidden states, attentions)."""
        ids = check_ids("input_ids", input_ids, self.vocab_size)
        B, T = ids.shape
        cache = past_key_values
        if cache is None and use_cache:
            cache = self.new_cache(B, T)
        past = cache.get_seq_length() if cache is not None else 0
        mask = padding_mask(attention_mask, B, past + T, "(batch, past + new)")
        if position_ids is None:
            full = np.ones((B, past + T), np.int64) if mask is None else mask.astype(np.int64)
            positions = self.default_positions(full, past, T)
        else:
            positions = np.asarray(position_ids, dtype=np.int64)
            if positions.shape != (B, T):
                raise _C.TfcoreValueError(f"position_ids has shape {positions.shape}, expected {(B, T)}")
        h = self.embed(ids, positions)
        hidden = [h] if output_hidden_states else None
        attentions = [] if output_attentions else None
        kw = {"position_ids": np.ascontiguousarray(positions)} if self.rotary else {}
        if cache is not None:
            kw.update(past_key_values=cache)
        for i, layer in enumerate(self.layers):
            if cache is not None:
                kw["layer_idx"] = i
            if output_attentions:
                h, a = layer(h, mask, output_attentions=True, **kw)
                attentions.append(a)
            else:
                h = layer(h, mask, **kw)
            if output_hidden_states:
                hidden.append(h)
        h = self.final_norm(h)
        if output_hidden_states:
            hidden[-1] = h  # HF reports the last hidden state after the final norm
        return (
            h,
            cache,
            tuple(hidden) if hidden is not None else None,
            tuple(attentions) if attentions is not None else None,
        )


class DecoderLM(PreTrainedModel, GenerationMixin):
    """A causal LM over a DecoderModel: ``base_model_class`` built from the same checkpoint
    and kept as ``self.<base_model_prefix>`` (HF's names), then the LM head (subclasses build
    self.lm_head after super().__init__)."""

    base_model_class = DecoderModel
    base_model_prefix = "model"

    def __init__(self, config: Config, weights: Weights):
        super().__init__(config, weights)
        setattr(self, self.base_model_prefix, self.base_model_class(config, weights))
        self.generation_defaults = {
            k: config.get(k) for k in ("eos_token_id", "pad_token_id", "bos_token_id")
        }

    def _after_load(self, directory) -> None:
        self.generation_defaults.update(
            read_generation_defaults(directory, ("eos_token_id", "pad_token_id", "bos_token_id"))
        )
        base = self.base_model
        base.name_or_path, base.threads, base.unexpected_keys = self.name_or_path, self.threads, []
        base._num_parameters = self._num_parameters
        base._num_matrix_parameters = self._num_matrix_parameters

    @property
    def base_model(self) -> DecoderModel:
        """The base model this LM holds (``model.transformer`` / ``model.model``)."""
        return getattr(self, self.base_model_prefix)

    @property
    def layers(self) -> List[_C.TransformerBlock]:
        return self.base_model.layers

    @property
    def vocab_size(self) -> int:
        return self.base_model.vocab_size

    @property
    def hidden_size(self) -> int:
        return self.base_model.hidden_size

    @property
    def position_limit(self) -> Optional[int]:
        """Positions the model has learned embeddings for (GPT-2's n_positions, OPT's
        max_position_embeddings); None for rotary and ALiBi models. generate() refuses to
        go past it up front."""
        return getattr(self.base_model, "max_positions", None)

    def tied_lm_head(self, config: Config, w: Weights, embedding: np.ndarray) -> _C.Linear:
        """The LM head of families that tie it to the input embedding by default (GPT-2,
        BLOOM): lm_head.weight only when tie_word_embeddings is false and the checkpoint
        stores it, else the (V, C) embedding table (a PyTorch state dict also stores the tied
        copy as lm_head.weight: read to mark it used, not to pack it)."""
        head = w.get("lm_head.weight", embedding.shape, optional=True, matrix=True)
        if config.get("tie_word_embeddings", True):
            head = None
        return _C.Linear(head if head is not None else embedding, dtype=w.dtype)

    def new_cache(
        self,
        batch_size: int,
        capacity: int = 256,
        policy: str = "full",
        budget: Optional[int] = None,
        n_sink: int = 4,
        dtype: str = "float32",
    ) -> _C.KVCache:
        """A KVCache for this model; policy/budget/n_sink/dtype as tfcore.KVCache."""
        return self.base_model.new_cache(batch_size, capacity, policy, budget, n_sink, dtype)

    def forward(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        use_cache: Optional[bool] = None,
        logits_to_keep: int = 0,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """HF arguments; past_key_values is a tfcore.KVCache (created when use_cache=True and
        none is given) that the layers extend in place; logits_to_keep=k computes the head on
        the last k positions only (0 = all)."""
        h, cache, hidden, attentions = self.base_model.run_layers(
            input_ids,
            attention_mask,
            position_ids,
            past_key_values,
            use_cache,
            output_hidden_states,
            output_attentions,
        )
        if logits_to_keep:
            h = np.ascontiguousarray(h[:, -logits_to_keep:])
        return ModelOutput(
            logits=self.lm_head(h), past_key_values=cache, hidden_states=hidden, attentions=attentions
        )


class ParallelResidualBlock:
    """A decoder layer with attention and MLP side by side on the same input (GPT-NeoX's
    use_parallel_residual, Falcon's parallel_attn)::

        y = x + attention(norm1(x)) + mlp(norm2(x))      (norm2=None: mlp(norm1(x)))

    Same call as TransformerBlock; both residual adds stay fused into the output GEMMs
    (attention adds x, the MLP adds the attention's result)."""

    def __init__(self, attention, feed_forward, norm1, norm2=None):
        self.attention, self.feed_forward, self.norm1, self.norm2 = attention, feed_forward, norm1, norm2

    def __call__(
        self,
        hidden_states,
        attention_mask=None,
        *,
        position_ids=None,
        output_attentions: bool = False,
        past_key_values=None,
        layer_idx: Optional[int] = None,
    ):
        n = self.norm1(hidden_states)
        kw = {} if position_ids is None else {"position_ids": position_ids}
        if past_key_values is not None:
            kw.update(past_key_values=past_key_values, layer_idx=layer_idx)
        out = self.attention(
            n, attention_mask, residual=hidden_states, output_attentions=output_attentions, **kw
        )
        h, weights = out if output_attentions else (out, None)
        y = self.feed_forward(n if self.norm2 is None else self.norm2(hidden_states), h)
        return (y, weights) if output_attentions else y


class RecurrentStateCache:
    """What the LMs with a fixed-size recurrent state share (state-space models, RetNet/GLA,
    RWKV): the token ids of generation_config.json, and new_cache() returning a
    RecurrentState whatever the capacity. A family provides _state_layout() -> (layers,
    per-layer shapes as RecurrentState takes them) and, when its state must stay float32,
    float32_only = the reason (said in the error)."""

    float32_only: Optional[str] = None

    def _state_layout(self):  # pragma: no cover - every family defines it
        raise NotImplementedError

    def _after_load(self, directory) -> None:
        self.generation_defaults.update(
            read_generation_defaults(directory, ("eos_token_id", "pad_token_id", "bos_token_id"))
        )

    def new_cache(
        self,
        batch_size: int,
        capacity: int = 256,
        policy: str = "full",
        budget: Optional[int] = None,
        n_sink: int = 4,
        dtype: str = "float32",
    ) -> _C.RecurrentState:
        """The model's RecurrentState (capacity is not needed: the state has a fixed size)."""
        if policy != "full":
            raise _C.TfcoreValueError(
                f"{type(self).__name__} keeps a fixed-size recurrent state: cache_policy={policy!r} does not apply"
            )
        if self.float32_only is not None and dtype != "float32":
            raise _C.TfcoreValueError(f"{type(self).__name__}'s {self.float32_only}, got {dtype!r}")
        if dtype not in ("float32", "bfloat16"):
            raise _C.TfcoreValueError(f"the recurrent state is float32 or bfloat16, got {dtype!r}")
        layers, shapes = self._state_layout()
        return _C.RecurrentState(layers, batch_size, shapes, dtype=dtype)


class RecurrentLM(RecurrentStateCache, PreTrainedModel, GenerationMixin):
    """What the state-space LMs share: the RecurrentState cache, the HF forward arguments
    (input_ids, attention_mask, past_key_values, logits_to_keep) and the layer loop; a family
    sets self.embeddings, self.layers [(norm, mixer)], self.norm_f, self.lm_head."""

    def _state_layout(self):
        return len(self.layers), [m.state_shapes() for _, m in self.layers]

    def forward(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        use_cache: Optional[bool] = None,
        logits_to_keep: int = 0,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        """HF arguments; past_key_values is a tfcore.RecurrentState (created when use_cache=True
        and none is given) continued and updated in place; attention_mask (B, T) or
        (B, past + T) marks padding, zeroed as HF does (left padding leaves the state at zero).
        position_ids are accepted and unused (the model has no positions)."""
        ids = check_ids("input_ids", input_ids, self.vocab_size)
        B, T = ids.shape
        state = past_key_values
        if state is None and use_cache:
            state = self.new_cache(B)
        if state is not None and not isinstance(state, _C.RecurrentState):
            raise _C.TfcoreTypeError(
                f"past_key_values must be a tfcore.RecurrentState for {type(self).__name__}, got {type(state).__name__}"
            )
        if state is not None and (state.batch_size != B or state.num_layers != len(self.layers)):
            raise _C.TfcoreValueError(
                f"past_key_values has batch_size {state.batch_size} and {state.num_layers} layers, "
                f"expected {B} and {len(self.layers)} (use model.new_cache({B}))"
            )
        past = state.get_seq_length() if state is not None else 0
        keep = None
        if attention_mask is not None:
            mask = np.asarray(attention_mask)
            if mask.ndim != 2 or mask.shape[0] != B or mask.shape[1] not in (T, past + T):
                raise _C.TfcoreValueError(
                    f"attention_mask has shape {mask.shape}, expected ({B}, {T}) or ({B}, {past + T})"
                )
            keep = mask[:, -T:] != 0
        h = self.embeddings(ids)
        hidden = [h] if output_hidden_states else None
        for i, (norm, mixer) in enumerate(self.layers):
            h = h + mixer(norm(h), keep=keep, state=state, layer_idx=i)
            if hidden is not None:
                hidden.append(h)
        if state is not None:
            state.advance(T)
        h = self.norm_f(h)
        if hidden is not None:
            hidden[-1] = h
        if logits_to_keep:
            h = np.ascontiguousarray(h[:, -logits_to_keep:])
        return ModelOutput(
            logits=self.lm_head(h),
            past_key_values=state,
            hidden_states=tuple(hidden) if hidden is not None else None,
        )
