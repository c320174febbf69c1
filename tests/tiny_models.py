"""Tiny Hugging Face checkpoints (random weights, save_pretrained) shared by the tests that
only need *a* model of a family: save_tiny("bert" | "gpt2" | "llama" | "mixtral" | "t5" | "bart" | "led" | "mamba" |
"mamba2" | "jamba" | "rwkv" | "siglip" | "swinv2" | "pvt_v2" | "segformer", path, **config)."""

from __future__ import annotations

import torch

DEFAULTS = {
    "bert": dict(
        vocab_size=60,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    ),
    "gpt2": dict(vocab_size=60, n_embd=16, n_layer=1, n_head=2, n_positions=64),
    "llama": dict(
        vocab_size=60,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=32,
    ),
    "mixtral": dict(
        vocab_size=60,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=24,
        num_local_experts=4,
        num_experts_per_tok=2,
        experts_implementation="eager",
    ),
    "rwkv": dict(vocab_size=60, hidden_size=16, num_hidden_layers=2, intermediate_size=24, rescale_every=1),
    "t5": dict(
        vocab_size=60, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4, decoder_start_token_id=0
    ),
    "mamba": dict(vocab_size=60, hidden_size=16, state_size=8, num_hidden_layers=2, expand=2, conv_kernel=4),
    "mamba2": dict(
        vocab_size=60, hidden_size=16, num_heads=4, head_dim=8, n_groups=2, state_size=8, num_hidden_layers=2
    ),
    "jamba": dict(
        vocab_size=60,
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_experts=4,
        num_experts_per_tok=2,
        attn_layer_period=2,
        attn_layer_offset=1,
        expert_layer_period=2,
        expert_layer_offset=0,
        mamba_d_state=8,
        mamba_dt_rank=4,
        experts_implementation="eager",
    ),
    "bart": dict(
        vocab_size=60,
        d_model=16,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=24,
        decoder_ffn_dim=24,
        max_position_embeddings=64,
    ),
    # LED: BART with a Longformer encoder (window 4 tokens, so inputs past 4 slide)
    "led": dict(
        vocab_size=60,
        d_model=16,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=24,
        decoder_ffn_dim=24,
        max_encoder_position_embeddings=64,
        max_decoder_position_embeddings=32,
        attention_window=4,
    ),
    # the wave-2 encoders: ELECTRA with its embeddings projection, ALBERT with 3 layers over 2
    # shared groups, MPNet with its relative position bias
    "electra": dict(
        vocab_size=60,
        embedding_size=12,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=64,
    ),
    "albert": dict(
        vocab_size=60,
        embedding_size=12,
        hidden_size=16,
        num_hidden_layers=3,
        num_hidden_groups=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=64,
    ),
    "mpnet": dict(
        vocab_size=60,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=64,
    ),
    # 801 samples -> 39 frames through kernels 10,3,3 / strides 5,2,2
    "wav2vec2": dict(
        vocab_size=20,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=24,
        conv_dim=(8, 8, 8),
        conv_kernel=(10, 3, 3),
        conv_stride=(5, 2, 2),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
    ),
    # 16x16 images of 4x4 patches: a 4x4 map in 3-windows (padded, shifted), then 2x2
    "swinv2": dict(image_size=16, patch_size=4, embed_dim=8, depths=[2, 1], num_heads=[2, 2], window_size=3),
    # 16x16 images: a 4x4 map with a 2x2 spatial reduction, then 2x2 with full attention
    "pvt_v2": dict(
        image_size=16,
        num_encoder_blocks=2,
        depths=[1, 1],
        hidden_sizes=[8, 16],
        num_attention_heads=[1, 2],
        patch_sizes=[7, 3],
        strides=[4, 2],
        sr_ratios=[2, 1],
        mlp_ratios=[2, 2],
    ),
    # PVT v2's tiny shapes with SegFormer's all-MLP decoder (logits at the 4x4 first stage)
    "segformer": dict(
        num_encoder_blocks=2,
        depths=[1, 1],
        hidden_sizes=[8, 16],
        num_attention_heads=[1, 2],
        sr_ratios=[2, 1],
        mlp_ratios=[2, 2],
        decoder_hidden_size=12,
        num_labels=3,
    ),
    # 12x12 images of 4x4 patches, texts of up to 8 tokens
    "siglip": dict(
        text_config=dict(
            vocab_size=60,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=8,
            bos_token_id=0,
            eos_token_id=2,
        ),
        vision_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=12,
            patch_size=4,
        ),
    ),
}


def save_tiny(kind: str, path, seed: int = 0, **config):
    """Write a tiny `kind` checkpoint (DEFAULTS[kind] updated with config) to path; returns path."""
    from transformers import (
        AlbertConfig,
        AlbertModel,
        BartConfig,
        BartForConditionalGeneration,
        BertConfig,
        BertModel,
        ElectraConfig,
        ElectraModel,
        GPT2Config,
        GPT2LMHeadModel,
        JambaConfig,
        JambaForCausalLM,
        LEDConfig,
        LEDForConditionalGeneration,
        LlamaConfig,
        LlamaForCausalLM,
        Mamba2Config,
        Mamba2ForCausalLM,
        MambaConfig,
        MambaForCausalLM,
        MixtralConfig,
        MixtralForCausalLM,
        MPNetConfig,
        MPNetModel,
        PvtV2Config,
        PvtV2Model,
        RwkvConfig,
        RwkvForCausalLM,
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SiglipConfig,
        SiglipModel,
        Swinv2Config,
        Swinv2Model,
        T5Config,
        T5ForConditionalGeneration,
        Wav2Vec2Config,
        Wav2Vec2ForCTC,
    )

    model_cls, config_cls = {
        "albert": (AlbertModel, AlbertConfig),
        "bart": (BartForConditionalGeneration, BartConfig),
        "led": (LEDForConditionalGeneration, LEDConfig),
        "electra": (ElectraModel, ElectraConfig),
        "mpnet": (MPNetModel, MPNetConfig),
        "bert": (BertModel, BertConfig),
        "gpt2": (GPT2LMHeadModel, GPT2Config),
        "llama": (LlamaForCausalLM, LlamaConfig),
        "mixtral": (MixtralForCausalLM, MixtralConfig),
        "rwkv": (RwkvForCausalLM, RwkvConfig),
        "t5": (T5ForConditionalGeneration, T5Config),
        "mamba": (MambaForCausalLM, MambaConfig),
        "mamba2": (Mamba2ForCausalLM, Mamba2Config),
        "jamba": (JambaForCausalLM, JambaConfig),
        "siglip": (SiglipModel, SiglipConfig),
        "swinv2": (Swinv2Model, Swinv2Config),
        "pvt_v2": (PvtV2Model, PvtV2Config),
        "segformer": (SegformerForSemanticSegmentation, SegformerConfig),
        "wav2vec2": (Wav2Vec2ForCTC, Wav2Vec2Config),
    }[kind]
    torch.manual_seed(seed)
    model_cls(config_cls(**{**DEFAULTS[kind], **config})).save_pretrained(path)
    return path


def causal_lms():
    """Factories of the small causal LMs the precision tests run against HF (odd sizes)."""
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        OPTConfig,
        OPTForCausalLM,
    )

    return {
        "gpt2": lambda: GPT2LMHeadModel(
            GPT2Config(vocab_size=97, n_embd=60, n_layer=2, n_head=5, n_positions=64)
        ),
        "llama-gqa": lambda: LlamaForCausalLM(
            LlamaConfig(
                vocab_size=97,
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=8,
                num_key_value_heads=2,
                intermediate_size=97,
            )
        ),
        "opt": lambda: OPTForCausalLM(
            OPTConfig(
                vocab_size=97,
                hidden_size=60,
                num_hidden_layers=2,
                ffn_dim=131,
                num_attention_heads=5,
                max_position_embeddings=64,
            )
        ),
    }


def save_tiny_tokenizer(path, corpus=None, vocab_size: int = 60):
    """A tokenizer for the tiny checkpoints in path (tokenizer.json + the transformers files,
    so tfcore.text and transformers.AutoTokenizer both load it); returns its vocabulary size.

    corpus=None: a word-level vocabulary "<pad>", "<|endoftext|>", "w2" ... "w{vocab_size-1}"
    (texts like "w5 w17 w3"). corpus=[texts]: a byte-level BPE trained on them with at most
    vocab_size tokens (real-looking text: spaces, punctuation, newlines)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<|endoftext|>"]
    if corpus is None:
        vocab = {w: i for i, w in enumerate(specials + [f"w{i}" for i in range(2, vocab_size)])}
        tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    else:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(corpus, trainer)
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    ).save_pretrained(str(path))
    return tok.get_vocab_size()
