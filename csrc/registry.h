/* registry.h — THE list of everything tfcore._C exports. Module state (tfcore.h), type
 * registration, GC traverse and clear (core/module.c) are generated from these lists.
 *
 * Adding a type is one X(...) line here plus its file csrc/layers/<file>.c, which defines
 * `PyType_Spec tf_<file>_..._spec` under the name given; adding a module-function table is
 * one line plus csrc/functions/<file>.c defining `PyMethodDef <table>[]`.
 * tests/test_layout.py checks that every file named here exists and defines its symbol. */
#ifndef TFCORE_REGISTRY_H
#define TFCORE_REGISTRY_H

/* X(Name as in tfcore._C, its PyType_Spec, the layers/ file that defines it) */
#define TF_TYPES(X)                                                           \
    X(Linear, tf_linear_spec, linear)                                         \
    X(LayerNorm, tf_layer_norm_spec, norm)                                    \
    X(RMSNorm, tf_rms_norm_spec, norm)                                        \
    X(Embedding, tf_embedding_spec, embedding)                                \
    X(FeedForward, tf_feed_forward_spec, feed_forward)                        \
    X(MultiHeadAttention, tf_multi_head_attention_spec, multi_head_attention) \
    X(TransformerBlock, tf_transformer_block_spec, transformer_block)         \
    X(KVCache, tf_kv_cache_spec, kv_cache)                                    \
    X(RecurrentState, tf_recurrent_state_spec, recurrent_state)               \
    X(WindowAttention, tf_window_attention_spec, window_attention)            \
    X(SwinLayer, tf_swin_layer_spec, swin_layer)                              \
    X(MixtureOfExperts, tf_mixture_of_experts_spec, mixture_of_experts)       \
    X(Conv1d, tf_conv1d_spec, conv)                                           \
    X(Conv2d, tf_conv2d_spec, conv)

/* X(its PyMethodDef table, the functions/ file that defines it) */
#define TF_FUNCTIONS(X)                                                      \
    X(tf_runtime_methods, runtime)                                           \
    X(tf_scaled_dot_product_attention_methods, scaled_dot_product_attention) \
    X(tf_window_attention_methods, window_attention)                         \
    X(tf_sliding_window_attention_methods, sliding_window_attention)         \
    X(tf_block_sparse_attention_methods, block_sparse_attention)             \
    X(tf_position_bias_methods, position_bias)                               \
    X(tf_disentangled_attention_methods, disentangled_attention)             \
    X(tf_rotary_embedding_methods, rotary_embedding)                         \
    X(tf_activation_methods, activation)                                     \
    X(tf_bfloat16_methods, bfloat16)                                         \
    X(tf_linear_attention_methods, linear_attention)                         \
    X(tf_state_space_methods, state_space)                                   \
    X(tf_rwkv_methods, rwkv)

#endif /* TFCORE_REGISTRY_H */
