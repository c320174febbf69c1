"""Type stubs for tfcore._C (the C core). Arrays are float32 unless noted."""

from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
Ids = Union[NDArray[np.int64], NDArray[np.int32]]

class TfcoreError(Exception): ...
class TfcoreValueError(TfcoreError, ValueError): ...
class TfcoreTypeError(TfcoreError, TypeError): ...
class OneDNNError(TfcoreError, RuntimeError): ...

def set_num_threads(n: int, /) -> None: ...
def get_num_threads() -> int: ...
def config() -> dict[str, Any]: ...
def _set_thread_override(n: int, /) -> int: ...
def _set_reference_kernels(flag: bool, /) -> bool: ...
def _set_isa(level: str, /) -> str: ...
def _set_weight_cache(directory: str | None, /) -> str | None: ...
def _get_weight_cache() -> str | None: ...

class Linear:
    in_features: int
    out_features: int
    def __init__(
        self,
        weight: F32,
        bias: Optional[F32] = None,
        activation: Optional[str] = None,
        *,
        transposed: bool = False,
        dtype: Optional[str] = "float32",
        group_size: Optional[int] = None,
    ) -> None: ...
    @classmethod
    def from_int4(
        cls,
        values: np.ndarray,
        scales: F32,
        offsets: F32,
        bias: Optional[F32] = None,
        activation: Optional[str] = None,
        *,
        group_size: int,
    ) -> "Linear": ...
    def __call__(self, x: F32, residual: Optional[F32] = None, *, out: Optional[F32] = None) -> F32: ...
    @property
    def group_size(self) -> Optional[int]: ...
    @property
    def weight(self) -> F32: ...
    @property
    def bias(self) -> Optional[F32]: ...
    @property
    def activation(self) -> Optional[str]: ...
    @property
    def implementation(self) -> str: ...

_Axes = Union[int, Sequence[int]]
_BatchNorm = Tuple[F32, F32, Optional[F32], Optional[F32], float]

class Conv1d:
    in_channels: int
    out_channels: int
    groups: int
    def __call__(
        self,
        x: F32,
        residual: Optional[F32] = None,
        *,
        channels_last: bool = False,
        out: Optional[F32] = None,
    ) -> F32: ...
    @property
    def kernel_size(self) -> Tuple[int, ...]: ...
    @property
    def stride(self) -> Tuple[int, ...]: ...
    @property
    def dilation(self) -> Tuple[int, ...]: ...
    @property
    def padding(self) -> Tuple[Tuple[int, int], ...]: ...
    @property
    def weight(self) -> F32: ...
    @property
    def bias(self) -> Optional[F32]: ...
    @property
    def activation(self) -> Optional[str]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def quant_max(self) -> Optional[int]: ...
    @property
    def implementation(self) -> str: ...
    def __init__(
        self,
        weight: F32,
        bias: Optional[F32] = None,
        stride: _Axes = 1,
        padding: Union[_Axes, str] = 0,
        dilation: _Axes = 1,
        groups: int = 1,
        *,
        activation: Optional[str] = None,
        batch_norm: Optional[_BatchNorm] = None,
        dtype: str = "float32",
    ) -> None: ...

class Conv2d:
    in_channels: int
    out_channels: int
    groups: int
    def __call__(
        self,
        x: F32,
        residual: Optional[F32] = None,
        *,
        channels_last: bool = False,
        out: Optional[F32] = None,
    ) -> F32: ...
    @property
    def kernel_size(self) -> Tuple[int, ...]: ...
    @property
    def stride(self) -> Tuple[int, ...]: ...
    @property
    def dilation(self) -> Tuple[int, ...]: ...
    @property
    def padding(self) -> Tuple[Tuple[int, int], ...]: ...
    @property
    def weight(self) -> F32: ...
    @property
    def bias(self) -> Optional[F32]: ...
    @property
    def activation(self) -> Optional[str]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def quant_max(self) -> Optional[int]: ...
    @property
    def implementation(self) -> str: ...
    def __init__(
        self,
        weight: F32,
        bias: Optional[F32] = None,
        stride: _Axes = 1,
        padding: Union[_Axes, str] = 0,
        dilation: _Axes = 1,
        groups: int = 1,
        *,
        activation: Optional[str] = None,
        batch_norm: Optional[_BatchNorm] = None,
        dtype: str = "float32",
    ) -> None: ...

class FeedForward:
    up: Linear
    gate: Optional[Linear]
    down: Linear
    activation: str
    gated: bool
    def __init__(
        self,
        up_weight: F32,
        down_weight: F32,
        *,
        up_bias: Optional[F32] = None,
        down_bias: Optional[F32] = None,
        gate_weight: Optional[F32] = None,
        gate_bias: Optional[F32] = None,
        activation: str = "gelu",
        transposed: bool = False,
    ) -> None: ...
    def __call__(self, x: F32, residual: Optional[F32] = None, *, out: Optional[F32] = None) -> F32: ...

class MixtureOfExperts:
    hidden_size: int
    num_experts: int
    top_k: int
    router: Linear
    experts: Tuple[FeedForward, ...]
    normalize_top_k: bool
    def __init__(
        self,
        router_weight: F32,
        experts: Sequence[FeedForward],
        *,
        top_k: int = 2,
        normalize_top_k: bool = True,
    ) -> None: ...
    def __call__(self, x: F32, residual: Optional[F32] = None, *, out: Optional[F32] = None) -> F32: ...
    def route(self, x: F32, /) -> Tuple[NDArray[np.int64], F32]: ...

class LayerNorm:
    eps: float
    normalized_shape: Tuple[int]
    weight: F32
    bias: Optional[F32]
    def __init__(self, weight: F32, bias: Optional[F32] = None, *, eps: float = 1e-5) -> None: ...
    def __call__(self, x: F32, residual: Optional[F32] = None, *, out: Optional[F32] = None) -> F32: ...

class RMSNorm:
    eps: float
    normalized_shape: Tuple[int]
    weight: F32
    bias: None
    def __init__(self, weight: F32, *, eps: float = 1e-6, offset: bool = False) -> None: ...
    def __call__(self, x: F32, residual: Optional[F32] = None, *, out: Optional[F32] = None) -> F32: ...

class Embedding:
    num_embeddings: int
    embedding_dim: int
    weight: F32
    def __init__(self, weight: F32) -> None: ...
    def __call__(self, input_ids: Ids, *, out: Optional[F32] = None) -> F32: ...

class MultiHeadAttention:
    hidden_size: int
    num_heads: int
    num_key_value_heads: int
    head_dim: int
    rotary_dim: int
    is_causal: int
    is_cross_attention: int
    scale: float
    softcap: Optional[float]
    qkv_proj: Linear
    kv_proj: Optional[Linear]
    o_proj: Linear
    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        num_key_value_heads: Optional[int] = None,
        head_dim: Optional[int] = None,
        q_weight: Optional[F32] = None,
        k_weight: Optional[F32] = None,
        v_weight: Optional[F32] = None,
        q_bias: Optional[F32] = None,
        k_bias: Optional[F32] = None,
        v_bias: Optional[F32] = None,
        qkv_weight: Optional[F32] = None,
        qkv_bias: Optional[F32] = None,
        o_weight: F32,
        o_bias: Optional[F32] = None,
        transposed: bool = False,
        is_causal: bool = False,
        scale: Optional[float] = None,
        is_cross_attention: bool = False,
        kv_input_size: Optional[int] = None,
        rotary_dim: Optional[int] = None,
        rope_theta: Optional[float] = None,
        rope_inv_freq: Optional[F32] = None,
        rope_interleaved: bool = False,
        sliding_window: Optional[int] = None,
        dtype: str = "float32",
        relative_attention_bias: Optional[F32] = None,
        relative_attention_num_buckets: Optional[int] = 32,
        relative_attention_max_distance: Optional[int] = 128,
        alibi: bool = False,
        q_norm_weight: Optional[F32] = None,
        k_norm_weight: Optional[F32] = None,
        qk_norm_eps: float = 1e-6,
        softcap: Optional[float] = None,
    ) -> None: ...
    def __call__(
        self,
        hidden_states: F32,
        attention_mask: Optional[np.ndarray] = None,
        *,
        encoder_hidden_states: Optional[F32] = None,
        position_ids: Optional[NDArray[np.int64]] = None,
        position_offset: int = 0,
        bias: Optional[F32] = None,
        residual: Optional[F32] = None,
        output_attentions: bool = False,
        out: Optional[F32] = None,
        encoder_key_values: Optional[F32] = None,
    ) -> Union[F32, Tuple[F32, F32]]: ...

class TransformerBlock:
    hidden_size: int
    norm_first: int
    attention: MultiHeadAttention
    cross_attention: Optional[MultiHeadAttention]
    feed_forward: Union[FeedForward, MixtureOfExperts]
    norm1: Union[LayerNorm, RMSNorm]
    norm2: Union[LayerNorm, RMSNorm]
    norm_cross: Optional[Union[LayerNorm, RMSNorm]]
    def __init__(
        self,
        attention: MultiHeadAttention,
        feed_forward: Union[FeedForward, MixtureOfExperts],
        norm1: Union[LayerNorm, RMSNorm],
        norm2: Union[LayerNorm, RMSNorm],
        *,
        norm_first: bool = True,
        cross_attention: Optional[MultiHeadAttention] = None,
        norm_cross: Optional[Union[LayerNorm, RMSNorm]] = None,
    ) -> None: ...
    def __call__(
        self,
        hidden_states: F32,
        attention_mask: Optional[np.ndarray] = None,
        *,
        encoder_hidden_states: Optional[F32] = None,
        encoder_attention_mask: Optional[np.ndarray] = None,
        position_ids: Optional[NDArray[np.int64]] = None,
        position_offset: int = 0,
        bias: Optional[F32] = None,
        output_attentions: bool = False,
        out: Optional[F32] = None,
        encoder_key_values: Optional[F32] = None,
    ) -> Union[F32, Tuple[F32, ...]]: ...

def scaled_dot_product_attention(
    query: F32,
    key: F32,
    value: F32,
    attn_mask: Optional[np.ndarray] = None,
    is_causal: bool = False,
    scale: Optional[float] = None,
    enable_gqa: bool = False,
    *,
    window: Optional[Tuple[Optional[int], Optional[int]]] = None,
    bias: Optional[F32] = None,
    return_weights: bool = False,
    out: Optional[F32] = None,
    disentangled: Optional[Tuple[Optional[F32], Optional[F32], NDArray[np.int32]]] = None,
    disentangled_positions: Optional[Tuple[Optional[F32], Optional[F32], NDArray[np.int32]]] = None,
    softcap: Optional[float] = None,
) -> Union[F32, Tuple[F32, F32]]: ...
def block_sparse_attention(
    query: F32,
    key: F32,
    value: F32,
    layout: NDArray[np.integer],
    block_size: int,
    *,
    global_blocks: Optional[Sequence[int]] = None,
    key_padding_mask: Optional[np.ndarray] = None,
    query_mask: Optional[np.ndarray] = None,
    scale: Optional[float] = None,
    out: Optional[F32] = None,
) -> F32: ...
def activation(x: F32, kind: str, *, out: Optional[F32] = None) -> F32: ...
def linear_attention(
    query: F32,
    key: F32,
    value: F32,
    *,
    decay: Optional[Union[F32, Sequence[float]]] = None,
    gate: Optional[F32] = None,
    feature_map: Optional[str] = None,
    normalize: bool = False,
    scale: Optional[float] = None,
    mode: str = "chunkwise",
    chunk_size: int = 64,
    initial_state: Optional[Union[F32, Tuple[F32, F32]]] = None,
    return_state: bool = False,
    return_weights: bool = False,
    out: Optional[F32] = None,
) -> Union[F32, Tuple[Any, ...]]: ...
def causal_conv1d(
    x: F32,
    weight: F32,
    bias: Optional[F32] = None,
    *,
    state: Optional[F32] = None,
    activation: Optional[str] = None,
) -> F32: ...
def selective_scan(
    x: F32,
    dt: F32,
    A: F32,
    B: F32,
    C: F32,
    *,
    D: Optional[F32] = None,
    z: Optional[F32] = None,
    dt_bias: Optional[F32] = None,
    state: Optional[F32] = None,
) -> F32: ...
def gated_rms_norm(x: F32, gate: F32, weight: F32, *, n_groups: int = 1, eps: float = 1e-06) -> F32: ...
def ssd_scan(
    x: F32,
    dt: F32,
    A: F32,
    B: F32,
    C: F32,
    *,
    D: Optional[F32] = None,
    dt_bias: Optional[F32] = None,
    dt_limit: Optional[Tuple[float, float]] = None,
    state: Optional[F32] = None,
    mode: str = "chunkwise",
    chunk_size: int = 64,
) -> F32: ...
def rwkv4_wkv(
    key: F32,
    value: F32,
    time_decay: F32,
    time_first: F32,
    *,
    receptance: Optional[F32] = None,
    state: Optional[Tuple[F32, F32, F32]] = None,
) -> F32: ...
def rwkv_token_shift(x: F32, mix: F32, *, state: Optional[F32] = None) -> F32: ...
def squared_relu(x: F32, *, out: Optional[F32] = None) -> F32: ...
def sigmoid_gate(gate: F32, x: F32, *, out: Optional[F32] = None) -> F32: ...
def sliding_window_attention(
    query: F32,
    key: F32,
    value: F32,
    window: int,
    *,
    dilation: int = 1,
    attention_mask: Optional[np.ndarray] = None,
    global_attention_mask: Optional[np.ndarray] = None,
    global_query: Optional[F32] = None,
    global_key: Optional[F32] = None,
    global_value: Optional[F32] = None,
    scale: Optional[float] = None,
    return_weights: bool = False,
    out: Optional[F32] = None,
) -> Union[F32, Tuple[F32, F32, F32]]: ...
def gelu(x: F32, *, approximate: str = "none", out: Optional[F32] = None) -> F32: ...
def relu(x: F32, *, out: Optional[F32] = None) -> F32: ...
def silu(x: F32, *, out: Optional[F32] = None) -> F32: ...
def glu(x: F32, activation: str = "silu", *, out: Optional[F32] = None) -> F32: ...
def float32_to_bfloat16(x: F32, /) -> NDArray[np.uint16]: ...
def bfloat16_to_float32(bits: NDArray[np.uint16], /) -> F32: ...
def t5_relative_position_bucket(
    relative_position: NDArray[np.int64],
    *,
    bidirectional: bool = True,
    num_buckets: int = 32,
    max_distance: int = 128,
) -> NDArray[np.int64]: ...
def alibi_slopes(num_heads: int, /) -> NDArray[np.float32]: ...
def deberta_relative_index(
    query_length: int,
    key_length: int,
    *,
    position_buckets: int = -1,
    max_relative_positions: int = -1,
) -> NDArray[np.int32]: ...
def rotary_embedding(
    x: F32,
    inv_freq: F32,
    positions: Optional[NDArray[np.int64]] = None,
    *,
    interleaved: bool = False,
    offset: int = 0,
    out: Optional[F32] = None,
) -> F32: ...

class KVCache:
    num_layers: int
    batch_size: int
    num_key_value_heads: int
    head_dim: int
    capacity: int
    dtype: str
    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        num_key_value_heads: int,
        head_dim: int,
        *,
        capacity: int = 256,
        policy: str = "full",
        budget: int = 0,
        n_sink: int = 4,
        dtype: str = "float32",
    ) -> None: ...
    def keys(self, layer: int, /) -> F32: ...
    def values(self, layer: int, /) -> F32: ...
    def get_seq_length(self, layer: int = 0, /) -> int: ...
    def num_cached(self, layer: int, /) -> int: ...
    def positions(self, layer: int, /) -> NDArray[np.int64]: ...
    def crop(self, length: int, /) -> None: ...
    def reorder(self, beam_idx: Ids, /) -> None: ...
    def reset(self) -> None: ...

class RecurrentState:
    num_layers: int
    batch_size: int
    nbytes: int
    dtype: str
    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        shapes: Union[Mapping[str, Sequence[int]], Sequence[Mapping[str, Sequence[int]]]],
        *,
        dtype: str = "float32",
    ) -> None: ...
    def get(self, layer: int, name: str, /) -> F32: ...
    def raw(self, layer: int, name: str, /) -> NDArray[Any]: ...
    def set(self, layer: int, name: str, value: F32, /) -> None: ...
    def names(self, layer: int, /) -> tuple[str, ...]: ...
    def shapes(self, layer: int, /) -> dict[str, tuple[int, ...]]: ...
    def reorder(self, beam_idx: Ids, /) -> None: ...
    def reset(self) -> None: ...
    def advance(self, num_tokens: int, /) -> None: ...
    def get_seq_length(self) -> int: ...

class WindowAttention:
    hidden_size: int
    num_heads: int
    head_dim: int
    window_size: int
    shift_size: int
    scale: float
    qkv_proj: Linear
    o_proj: Linear
    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        window_size: int,
        *,
        qkv_weight: F32,
        o_weight: F32,
        qkv_bias: Optional[F32] = None,
        o_bias: Optional[F32] = None,
        relative_position_bias_table: Optional[F32] = None,
        shift_size: int = 0,
        scale: Optional[float] = None,
        dtype: str = "float32",
    ) -> None: ...
    def __call__(
        self,
        hidden_states: F32,
        residual: Optional[F32] = None,
        *,
        output_attentions: bool = False,
        always_partition: bool = False,
        out: Optional[F32] = None,
    ) -> Union[F32, Tuple[F32, F32]]: ...

class SwinLayer:
    hidden_size: int
    attention: WindowAttention
    feed_forward: FeedForward
    norm1: Union[LayerNorm, RMSNorm]
    norm2: Union[LayerNorm, RMSNorm]
    def __init__(
        self,
        attention: WindowAttention,
        feed_forward: FeedForward,
        norm1: Union[LayerNorm, RMSNorm],
        norm2: Union[LayerNorm, RMSNorm],
    ) -> None: ...
    def __call__(
        self,
        hidden_states: F32,
        *,
        output_attentions: bool = False,
        always_partition: bool = False,
        out: Optional[F32] = None,
    ) -> Union[F32, Tuple[F32, F32]]: ...

def window_attention(
    qkv: F32,
    window_size: int,
    shift_size: int = 0,
    *,
    relative_position_bias_table: Optional[F32] = None,
    pad_qkv: Optional[F32] = None,
    scale: Optional[float] = None,
    output_attentions: bool = False,
    out: Optional[F32] = None,
    mask_value: float = -100.0,
) -> Union[F32, Tuple[F32, F32]]: ...
