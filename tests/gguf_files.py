"""GGUF files for the tests, written by the ``gguf`` package (llama.cpp's own Python writer)
from tiny random Hugging Face Llama models, the way llama.cpp's converter lays them out
(q/k rows permuted, names ``blk.N.attn_q.weight``, dims fastest-first).

Types the ``gguf`` package can quantize (F32, F16, BF16, Q8_0, Q4_0, Q4_1) are quantized
from the model's weights; the k-quants (Q4_K, Q5_K, Q6_K), which it only dequantizes, are
random valid blocks (random codes and scales, small finite float16 block scales): a weight
is then whatever those blocks decode to, for tfcore and transformers alike.
"""

from __future__ import annotations

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q

K_QUANTS = ("Q4_K", "Q5_K", "Q6_K")
BLOCK_TYPES = ("Q8_0", "Q4_0", "Q4_1") + K_QUANTS
FLOAT_TYPES = ("F32", "F16", "BF16")


def permute_rope(w: np.ndarray, heads: int) -> np.ndarray:
    """HF rotate_half row order -> llama.cpp's interleaved pairs (what its converter does)."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def random_blocks(qtype: str, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """(rows, bytes per row) uint8 of valid random `qtype` blocks, decoding to values ~0.1."""
    size, nbytes = gguf.GGML_QUANT_SIZES[Q[qtype]]
    b = rng.integers(0, 256, (rows * cols // size, nbytes), dtype=np.uint8)

    def f16(lo, hi, n):
        return rng.uniform(lo, hi, (n, 1)).astype(np.float16).view(np.uint8)

    n = b.shape[0]
    if qtype in ("Q4_K", "Q5_K"):  # d, dmin: 6-bit scales x codes up to 15/31
        b[:, 0:2] = f16(1e-4, 3e-4, n)
        b[:, 2:4] = f16(1e-4, 3e-4, n)
    elif qtype == "Q6_K":  # int8 scales x codes -32..31; d last
        b[:, 208:210] = f16(1e-5, 3e-5, n)
    elif qtype == "Q8_0":
        b[:, 0:2] = f16(1e-4, 1e-3, n)
    elif qtype == "Q4_0":
        b[:, 0:2] = f16(5e-3, 2e-2, n)
    elif qtype == "Q4_1":
        b[:, 0:2] = f16(5e-3, 2e-2, n)
        b[:, 2:4] = f16(-0.1, -0.05, n)
    return b.reshape(rows, -1)


def encode(w: np.ndarray, qtype: str, rng: np.random.Generator):
    """(data, raw_dtype) for GGUFWriter.add_tensor: w quantized to qtype (k-quants: random)."""
    if qtype == "F32":
        return np.ascontiguousarray(w, np.float32), None
    if qtype == "F16":
        return w.astype(np.float16), None
    if qtype in K_QUANTS:
        return random_blocks(qtype, w.shape[0], w.shape[1], rng), Q[qtype]
    return gguf.quants.quantize(np.ascontiguousarray(w, np.float32), Q[qtype]), Q[qtype]


def write_llama_gguf(model, path, qtype: str = "Q4_0", seed: int = 0, extra=None, tokenizer=True) -> str:
    """Write HF LlamaForCausalLM `model` as a llama.cpp-style GGUF file: 2-D weights in
    qtype, norms in F32 (as llama.cpp does). Returns path."""
    cfg = model.config
    rng = np.random.default_rng(seed)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_name("tiny-llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(0)
    if tokenizer:  # a byte-level BPE vocabulary the size of the model's (never used for text here)
        alphabet = [chr(c) for c in range(ord("a"), ord("a") + 26)] + [
            chr(c) for c in range(ord("A"), ord("A") + 26)
        ]
        tokens = ["<s>", "</s>"] + alphabet + [f"x{i}" for i in range(cfg.vocab_size - 2 - len(alphabet))]
        w.add_tokenizer_model("gpt2")
        w.add_token_list(tokens)
        w.add_token_types([3, 3] + [1] * (len(tokens) - 2))
        w.add_token_merges([])
        w.add_bos_token_id(0)
        w.add_eos_token_id(1)
    for k, v in (extra or {}).items():
        w.add_key_value(k, v[0], v[1])
    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    H, KVH = cfg.num_attention_heads, cfg.num_key_value_heads
    for key, a in sd.items():
        if key == "model.embed_tokens.weight":
            name = "token_embd.weight"
        elif key == "model.norm.weight":
            name = "output_norm.weight"
        elif key == "lm_head.weight":
            if cfg.tie_word_embeddings:
                continue
            name = "output.weight"
        else:
            parts = key.split(".")  # model.layers.N.<module path>.weight
            name = f"blk.{parts[2]}.{names['.'.join(parts[3:-1])]}.{parts[-1]}"
            if "q_proj" in key:
                a = permute_rope(a, H)
            if "k_proj" in key:
                a = permute_rope(a, KVH)
        if a.ndim == 1:
            w.add_tensor(name, np.ascontiguousarray(a, np.float32))
        elif qtype == "BF16":
            bits = gguf.quants.quantize(np.ascontiguousarray(a, np.float32), Q.BF16)
            w.add_tensor(name, bits, raw_dtype=Q.BF16)
        else:
            data, raw = encode(a, qtype, rng)
            w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


def tiny_llama(
    seed: int = 0, hidden: int = 64, inter: int = 96, tie: bool = False, vocab: int = 67, layers: int = 2
):
    """A tiny random HF LlamaForCausalLM in eval mode (eager attention)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=tie,
        attn_implementation="eager",
    )
    return LlamaForCausalLM(cfg).eval()


GEMMA2_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm",
    "post_feedforward_layernorm": "post_ffw_norm",
}


def write_gemma2_gguf(model, path, qtype: str = "F32", seed: int = 0) -> str:
    """Write HF Gemma2ForCausalLM `model` as llama.cpp's converter lays Gemma 2 out: norms
    stored as 1 + weight (F32), q/k rows not permuted, the soft-caps and the sliding window in
    the metadata, the LM head tied (no output.weight). Returns path."""
    cfg = model.config
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch="gemma2")
    w.add_name("tiny-gemma2")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_vocab_size(cfg.vocab_size)
    w.add_sliding_window(cfg.sliding_window)
    w.add_attn_logit_softcapping(cfg.attn_logit_softcapping)
    w.add_final_logit_softcapping(cfg.final_logit_softcapping)
    w.add_file_type(0)
    for key, t in model.state_dict().items():
        a = t.detach().float().numpy()
        if key == "lm_head.weight":
            continue
        if key == "model.embed_tokens.weight":
            name = "token_embd.weight"
        elif key == "model.norm.weight":
            name = "output_norm.weight"
        else:
            parts = key.split(".")
            name = f"blk.{parts[2]}.{GEMMA2_NAMES['.'.join(parts[3:-1])]}.{parts[-1]}"
        if a.ndim == 1:  # RMSNorm weights as 1 + w, as llama.cpp's converter writes them
            w.add_tensor(name, np.ascontiguousarray(a + np.float32(1.0), np.float32))
        else:
            data, raw = encode(a, qtype, rng)
            w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)
