"""Build tfcore layers from Hugging Face torch modules (tests only; the model loaders in
tfcore/models do the same from safetensors)."""

from __future__ import annotations

import numpy as np

import tfcore


def arr(t):
    return None if t is None else np.ascontiguousarray(t.detach().numpy(), dtype=np.float32)


def bert_layer(layer, cfg):
    a = layer.attention
    attn = tfcore.MultiHeadAttention(
        cfg.hidden_size,
        cfg.num_attention_heads,
        q_weight=arr(a.self.query.weight),
        k_weight=arr(a.self.key.weight),
        v_weight=arr(a.self.value.weight),
        q_bias=arr(a.self.query.bias),
        k_bias=arr(a.self.key.bias),
        v_bias=arr(a.self.value.bias),
        o_weight=arr(a.output.dense.weight),
        o_bias=arr(a.output.dense.bias),
    )
    cross = norm_cross = None
    if getattr(layer, "crossattention", None) is not None:
        c = layer.crossattention
        cross = tfcore.MultiHeadAttention(
            cfg.hidden_size,
            cfg.num_attention_heads,
            is_cross_attention=True,
            q_weight=arr(c.self.query.weight),
            k_weight=arr(c.self.key.weight),
            v_weight=arr(c.self.value.weight),
            q_bias=arr(c.self.query.bias),
            k_bias=arr(c.self.key.bias),
            v_bias=arr(c.self.value.bias),
            o_weight=arr(c.output.dense.weight),
            o_bias=arr(c.output.dense.bias),
        )
        norm_cross = tfcore.LayerNorm(
            arr(c.output.LayerNorm.weight), arr(c.output.LayerNorm.bias), eps=cfg.layer_norm_eps
        )
    ffn = tfcore.FeedForward(
        arr(layer.intermediate.dense.weight),
        arr(layer.output.dense.weight),
        up_bias=arr(layer.intermediate.dense.bias),
        down_bias=arr(layer.output.dense.bias),
        activation=cfg.hidden_act,
    )
    n1 = tfcore.LayerNorm(
        arr(a.output.LayerNorm.weight), arr(a.output.LayerNorm.bias), eps=cfg.layer_norm_eps
    )
    n2 = tfcore.LayerNorm(
        arr(layer.output.LayerNorm.weight), arr(layer.output.LayerNorm.bias), eps=cfg.layer_norm_eps
    )
    return tfcore.TransformerBlock(
        attn, ffn, n1, n2, norm_first=False, cross_attention=cross, norm_cross=norm_cross
    )


def llama_layer(layer, cfg, inv_freq):
    a, m = layer.self_attn, layer.mlp
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    attn = tfcore.MultiHeadAttention(
        cfg.hidden_size,
        cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        head_dim=head_dim,
        q_weight=arr(a.q_proj.weight),
        k_weight=arr(a.k_proj.weight),
        v_weight=arr(a.v_proj.weight),
        q_bias=arr(a.q_proj.bias),
        k_bias=arr(a.k_proj.bias),
        v_bias=arr(a.v_proj.bias),
        o_weight=arr(a.o_proj.weight),
        o_bias=arr(a.o_proj.bias),
        is_causal=True,
        rope_inv_freq=np.ascontiguousarray(inv_freq, dtype=np.float32),
    )
    ffn = tfcore.FeedForward(
        arr(m.up_proj.weight),
        arr(m.down_proj.weight),
        gate_weight=arr(m.gate_proj.weight),
        activation=cfg.hidden_act,
    )
    n1 = tfcore.RMSNorm(arr(layer.input_layernorm.weight), eps=cfg.rms_norm_eps)
    n2 = tfcore.RMSNorm(arr(layer.post_attention_layernorm.weight), eps=cfg.rms_norm_eps)
    return tfcore.TransformerBlock(attn, ffn, n1, n2, norm_first=True)


def gpt2_block(block, cfg):
    a, m = block.attn, block.mlp
    attn = tfcore.MultiHeadAttention(
        cfg.n_embd,
        cfg.n_head,
        qkv_weight=arr(a.c_attn.weight),
        qkv_bias=arr(a.c_attn.bias),
        o_weight=arr(a.c_proj.weight),
        o_bias=arr(a.c_proj.bias),
        transposed=True,
        is_causal=True,
    )
    ffn = tfcore.FeedForward(
        arr(m.c_fc.weight),
        arr(m.c_proj.weight),
        up_bias=arr(m.c_fc.bias),
        down_bias=arr(m.c_proj.bias),
        activation=cfg.activation_function,
        transposed=True,
    )
    n1 = tfcore.LayerNorm(arr(block.ln_1.weight), arr(block.ln_1.bias), eps=cfg.layer_norm_epsilon)
    n2 = tfcore.LayerNorm(arr(block.ln_2.weight), arr(block.ln_2.bias), eps=cfg.layer_norm_epsilon)
    return tfcore.TransformerBlock(attn, ffn, n1, n2, norm_first=True)
