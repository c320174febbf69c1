"""8 Python threads calling the same model and the same layers at once, for a while: every
result equals the serial one bit for bit, and nothing crashes or deadlocks."""

from __future__ import annotations

import os
import pickle
import shutil
import threading
import time

import numpy as np
from tiny_models import save_tiny, save_tiny_tokenizer

import tfcore

THREADS = 8
SECONDS = 3.0


def test_eight_threads_share_models_and_layers(tmp_path):
    save_tiny(
        "bert",
        tmp_path / "bert",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    )
    save_tiny("llama", tmp_path / "llama", hidden_size=32, intermediate_size=64)
    save_tiny_tokenizer(tmp_path / "bert")  # for the tfcore.eval helpers (texts in)
    save_tiny_tokenizer(tmp_path / "llama")
    save_tiny("mixtral", tmp_path / "mixtral", hidden_size=32, intermediate_size=40)
    rwkv = tfcore.AutoModelForCausalLM.from_pretrained(save_tiny("rwkv", tmp_path / "rwkv"))
    bert = tfcore.AutoModel.from_pretrained(tmp_path / "bert")
    mixtral = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path / "mixtral")
    # the same weights as a PyTorch pytorch_model.bin (read by tfcore's restricted unpickler)
    import torch
    import transformers

    (tmp_path / "bert-bin").mkdir()
    shutil.copy(tmp_path / "bert" / "config.json", tmp_path / "bert-bin")
    torch.save(
        transformers.BertModel.from_pretrained(tmp_path / "bert").state_dict(),
        tmp_path / "bert-bin" / "pytorch_model.bin",
    )
    # a task head (token classification) and an encoder-decoder with per-layer biases (UMT5)
    torch.manual_seed(0)
    transformers.BertForTokenClassification(
        transformers.BertConfig.from_pretrained(tmp_path / "bert", num_labels=5)
    ).save_pretrained(tmp_path / "bert-tok")
    tagger = tfcore.AutoModelForTokenClassification.from_pretrained(tmp_path / "bert-tok")
    transformers.UMT5ForConditionalGeneration(
        transformers.UMT5Config(vocab_size=60, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4)
    ).save_pretrained(tmp_path / "umt5")
    umt5 = tfcore.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "umt5")
    bart = tfcore.AutoModelForSeq2SeqLM.from_pretrained(save_tiny("bart", tmp_path / "bart"))
    led = tfcore.AutoModelForSeq2SeqLM.from_pretrained(save_tiny("led", tmp_path / "led"))
    # DeBERTa-v3-style disentangled attention (c2p/p2c computed in per-thread kernel buffers)
    transformers.DebertaV2ForSequenceClassification(
        transformers.DebertaV2Config(
            vocab_size=60,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=48,
            relative_attention=True,
            position_buckets=4,
            max_relative_positions=9,
            pos_att_type=["c2p", "p2c"],
            share_att_key=True,
            norm_rel_ebd="layer_norm",
            position_biased_input=False,
            type_vocab_size=0,
        )
    ).save_pretrained(tmp_path / "deberta")
    deberta = tfcore.AutoModelForSequenceClassification.from_pretrained(tmp_path / "deberta")
    llama = tfcore.AutoModelForCausalLM.from_pretrained(
        tmp_path / "llama", dtype="int8" if "int8" in tfcore.supported_dtypes() else "float32"
    )
    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    lin = tfcore.Linear(r(96, 32), r(96), activation="gelu")
    conv = tfcore.Conv2d(r(16, 3, 3, 3), r(16), stride=2, padding=1, activation="silu")
    dwconv = tfcore.Conv2d(r(16, 1, 5, 5), r(16), padding="same", groups=16)
    conv1 = tfcore.Conv1d(r(8, 4, 3), r(8), stride=2, padding=1, dtype="int8")
    img, fmap, fmap_res, wave = r(2, 3, 17, 13), r(2, 9, 7, 16), r(2, 9, 7, 16), r(3, 4, 41)
    # a tiny CLIP (both towers, conv patch embedding) and torch-free preprocessing
    torch.manual_seed(0)
    clip_cfg = transformers.CLIPConfig(
        text_config=dict(
            vocab_size=60,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=20,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=24,
            patch_size=6,
        ),
        projection_dim=16,
    )
    transformers.CLIPModel(clip_cfg).eval().save_pretrained(tmp_path / "clip")
    clip = tfcore.AutoModel.from_pretrained(tmp_path / "clip")
    siglip_cfg = transformers.SiglipConfig(
        text_config={**clip_cfg.text_config.to_dict(), "bos_token_id": 0, "eos_token_id": 2},
        vision_config=clip_cfg.vision_config.to_dict(),
    )
    transformers.SiglipModel(siglip_cfg).eval().save_pretrained(tmp_path / "siglip")
    siglip = tfcore.AutoModel.from_pretrained(tmp_path / "siglip")
    transformers.Swinv2Model(
        transformers.Swinv2Config(
            image_size=24, patch_size=4, embed_dim=12, depths=[2, 1], num_heads=[3, 3], window_size=3
        )
    ).eval().save_pretrained(tmp_path / "swinv2")
    swinv2 = tfcore.AutoModel.from_pretrained(tmp_path / "swinv2")
    swinv2_px = r(2, 3, 23, 29)  # padded image, windows and merged map
    pvt = tfcore.AutoModel.from_pretrained(save_tiny("pvt_v2", tmp_path / "pvt_v2"))
    seg = tfcore.models.SegformerForSemanticSegmentation.from_pretrained(
        save_tiny("segformer", tmp_path / "seg")
    )
    transformers.CvtModel(
        transformers.CvtConfig(embed_dim=[8, 12, 16], num_heads=[1, 2, 2], depth=[1, 2, 3])
    ).eval().save_pretrained(tmp_path / "cvt")
    cvt = tfcore.AutoModel.from_pretrained(tmp_path / "cvt")
    transformers.BeitModel(
        transformers.BeitConfig(
            image_size=16,
            patch_size=4,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=24,
            use_relative_position_bias=True,
            use_shared_relative_position_bias=True,
        )
    ).eval().save_pretrained(tmp_path / "beit")
    beit = tfcore.AutoModel.from_pretrained(tmp_path / "beit")
    os.environ["TFCORE_CONV_ROUTE"] = "gemm"  # the GEMM route of Conv2d / Conv1d, built here
    try:
        patch_conv = tfcore.Conv2d(r(16, 3, 4, 4), r(16), stride=4, activation="gelu")
        grouped_conv = tfcore.Conv1d(r(16, 4, 17), r(16), padding=8, groups=4)
    finally:
        del os.environ["TFCORE_CONV_ROUTE"]
    patch_img, grouped_seq = r(2, 3, 23, 29), r(2, 37, 16)
    clip_px, clip_ids = r(3, 3, 24, 24), rng.integers(3, 59, size=(2, 7))
    clip_ids[:, -1] = 59  # the highest id: CLIP's pooled position
    proc = tfcore.image.ImageProcessor(size={"shortest_edge": 24}, crop_size=24, do_center_crop=True)
    photo = rng.integers(0, 256, size=(31, 45, 3), dtype=np.uint8)
    q, k, v = r(2, 4, 9, 8), r(2, 2, 13, 8), r(2, 2, 13, 8)
    ids = rng.integers(1, 60, size=(3, 11))
    mask = (np.arange(11)[None] < np.array([[11], [6], [2]])).astype(np.int64)
    x = r(5, 32)
    corpus = r(40, 32)
    # the attention variants: shared layers with in-kernel position biases, and the sparse kernels
    t5_attn = tfcore.MultiHeadAttention(
        32,
        4,
        qkv_weight=r(96, 32),
        o_weight=r(32, 32),
        scale=1.0,
        is_causal=True,
        relative_attention_bias=r(32, 4),
        relative_attention_max_distance=20,
    )
    alibi_attn = tfcore.MultiHeadAttention(32, 4, qkv_weight=r(96, 32), o_weight=r(32, 32), alibi=True)
    qk_norm_attn = tfcore.MultiHeadAttention(  # Qwen3's per-head q/k RMSNorm before rotary
        32,
        4,
        num_key_value_heads=2,
        qkv_weight=r(64, 32),
        o_weight=r(32, 32),
        is_causal=True,
        rope_theta=10000.0,
        q_norm_weight=r(8),
        k_norm_weight=r(8),
    )
    softcap_attn = tfcore.MultiHeadAttention(  # Gemma 2's soft-capped scores, sliding window
        32,
        4,
        num_key_value_heads=2,
        head_dim=12,
        qkv_weight=r(96, 32),
        o_weight=r(32, 48),
        is_causal=True,
        rope_theta=10000.0,
        scale=0.2,
        softcap=2.0,
        sliding_window=9,
    )
    torch.manual_seed(0)
    transformers.Gemma2ForCausalLM(
        transformers.Gemma2Config(
            vocab_size=60,
            hidden_size=32,
            intermediate_size=40,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=12,
            sliding_window=3,
        )
    ).save_pretrained(tmp_path / "gemma2")
    gemma2 = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path / "gemma2")
    h = r(2, 37, 32)
    ql, kl, vl = r(2, 4, 70, 8), r(2, 4, 70, 8), r(2, 4, 70, 8)
    glob = np.zeros((2, 70), bool)
    glob[:, [0, 33]] = True
    qkv_map = r(2, 9, 11, 3, 2, 8)
    table = r(25, 2)
    state_init = r(3, 4, 8, 8)
    u6 = r(4, 8)  # RWKV-6 bonus
    # a tiny RetNet (fla layout; no HF class): generate() carries a RecurrentState per call
    import json as _json

    from safetensors.numpy import save_file as _save
    from test_retnet import CFG as RETNET_CFG
    from test_retnet import tiny_weights as retnet_weights

    (tmp_path / "retnet").mkdir()
    _save(retnet_weights(np.random.default_rng(0)), str(tmp_path / "retnet" / "model.safetensors"))
    (tmp_path / "retnet" / "config.json").write_text(_json.dumps(RETNET_CFG))
    retnet = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path / "retnet")
    # a tiny RWKV-6 (fla layout): generate() with beams carries its own RecurrentState per call
    from test_rwkv6_model import CFG as RWKV6_CFG
    from test_rwkv6_model import tiny_weights as rwkv6_weights

    (tmp_path / "rwkv6").mkdir()
    _save(rwkv6_weights(np.random.default_rng(0)), str(tmp_path / "rwkv6" / "model.safetensors"))
    (tmp_path / "rwkv6" / "config.json").write_text(_json.dumps(RWKV6_CFG))
    rwkv6 = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path / "rwkv6")

    def recurrent_state():
        # a private state per call: bf16 store, beam reorder, read back as float32
        s = tfcore.RecurrentState(2, 3, {"state": (4, 8, 8), "z": (4, 8)}, dtype="bfloat16")
        s.set(1, "state", state_init)
        s.reorder(np.array([2, 2, 0]))
        return s.get(1, "state")

    la_gate = -np.abs(r(2, 4, 70, 8))
    la_layer = tfcore.LinearAttention(
        32,
        4,
        q_weight=r(32, 32),
        k_weight=r(32, 32),
        v_weight=r(32, 32),
        o_weight=r(32, 32),
        feature_map="performer",
        feature_map_weights=r(16, 8),
    )
    la_x = r(2, 21, 32) * 0.3
    moe = tfcore.MixtureOfExperts(
        r(5, 32),
        [
            tfcore.FeedForward(r(40, 32), r(32, 40), gate_weight=r(40, 32), activation="silu")
            for _ in range(5)
        ],
    )
    hm = r(3, 19, 32)
    # state-space models: each call starts its own state (a RecurrentState / HybridCache per
    # generate(), fresh arrays for the kernels) while the weights are shared
    from tiny_models import save_tiny as _save_tiny

    ssm_models = {
        k: tfcore.AutoModelForCausalLM.from_pretrained(_save_tiny(k, tmp_path / k))
        for k in ("mamba", "mamba2", "jamba")
    }
    # the wave-2 encoders (ALBERT runs one block object at several depths)
    wave2 = {
        k: tfcore.AutoModel.from_pretrained(_save_tiny(k, tmp_path / k))
        for k in ("electra", "albert", "mpnet")
    }
    w2v = tfcore.AutoModelForCTC.from_pretrained(_save_tiny("wav2vec2", tmp_path / "wav2vec2"))
    w2v_x = r(2, 801)
    ssm_x, ssm_A, ssm_bc = r(2, 37, 24), -np.exp(r(24, 8)), r(2, 37, 8)
    ssd_x, ssd_dt, ssd_A, ssd_bc = r(2, 37, 4, 6), r(2, 37, 4), -np.exp(r(4)), r(2, 37, 2, 8)

    def ssm_kernels():
        state = np.zeros((2, 24, 8), np.float32)
        y = tfcore.functional.selective_scan(
            tfcore.functional.causal_conv1d(
                ssm_x, ssm_x[0, :4].T.copy(), state=np.zeros((2, 24, 3), np.float32), activation="silu"
            ),
            ssm_x,
            ssm_A,
            ssm_bc,
            ssm_bc,
            z=ssm_x,
            state=state,
        )
        return np.concatenate([y.ravel(), state.ravel()])

    def ssd_kernel():
        state = np.zeros((2, 4, 6, 8), np.float32)
        y = tfcore.functional.ssd_scan(ssd_x, ssd_dt, ssd_A, ssd_bc, ssd_bc, state=state, chunk_size=8)
        g = tfcore.functional.gated_rms_norm(y, ssd_x, ssd_x[0, 0, 0], n_groups=2)
        return np.concatenate([y.ravel(), state.ravel(), g.ravel()])

    work = {
        "ssm-kernels": ssm_kernels,
        "ssd-kernel": ssd_kernel,
        **{
            f"{k}-generate": (lambda m=m: m.generate(ids[:2, :4] % 60, max_new_tokens=5, num_beams=2))
            for k, m in ssm_models.items()
        },
        **{k: (lambda m=m: m(ids, attention_mask=mask).last_hidden_state) for k, m in wave2.items()},
        "wav2vec2-ctc": lambda: w2v(w2v_x).logits,
        "recurrent-state": recurrent_state,
        "retnet-generate": lambda: retnet.generate(ids[:2, :4] % 61, max_new_tokens=5, num_beams=2),
        "rwkv6-generate": lambda: rwkv6.generate(ids[:2, :4] % 61, max_new_tokens=5, num_beams=2),
        "linear-attention": lambda: tfcore.functional.linear_attention(
            ql, kl, vl, gate=la_gate, chunk_size=16
        ),
        "linear-attention-layer": lambda: la_layer(la_x),
        "retention-recurrent": lambda: tfcore.functional.linear_attention(
            ql, kl, vl, decay=[0.9, 0.8, 0.7, 1.0], mode="recurrent", feature_map="elu+1", normalize=True
        ),
        "t5-bias": lambda: t5_attn(h),
        "alibi": lambda: alibi_attn(h),
        "qk-norm": lambda: qk_norm_attn(h),
        "softcap-window": lambda: softcap_attn(h),
        "gemma2-generate": lambda: gemma2.generate(ids[:2, :4] % 60, max_new_tokens=6, num_beams=2),
        "longformer": lambda: tfcore.functional.sliding_window_attention(
            ql, kl, vl, 5, dilation=2, global_attention_mask=glob
        ),
        "block-sparse": lambda: tfcore.functional.block_sparse_attention(
            ql,
            kl,
            vl,
            np.array([[0, 1, 2], [0, 2, 3], [1, 3, 4], [2, 4, 6], [0, 4, 5], [5, 6, 4], [6, 5, 0]]),
            10,
            global_blocks=(0,),
        ),
        "swin-window": lambda: tfcore.functional.window_attention(
            qkv_map, 3, 1, relative_position_bias_table=table
        ),
        "bert": lambda: bert(ids, attention_mask=mask).last_hidden_state,
        "deberta": lambda: deberta(ids, attention_mask=mask).logits,
        "generate": lambda: llama.generate(ids[:2, :4], max_new_tokens=6),
        "token-classification": lambda: tagger(ids, attention_mask=mask).logits,
        "umt5-generate": lambda: umt5.generate(ids, attention_mask=mask, max_new_tokens=5, num_beams=2),
        "bart-generate": lambda: bart.generate(
            ids, attention_mask=mask, max_new_tokens=5, num_beams=2, no_repeat_ngram_size=2
        ),
        "led-generate": lambda: led.generate(
            ids, attention_mask=mask, global_attention_mask=(ids == ids[:, :1]), max_new_tokens=5, num_beams=2
        ),
        "generate-int8-cache": lambda: llama.generate(ids[:1, :5], max_new_tokens=5, cache_dtype="int8"),
        "linear": lambda: lin(x),
        "moe": lambda: moe(hm),
        "moe-route": lambda: moe.route(hm)[1],
        "mixtral-generate": lambda: mixtral.generate(ids[:2, :4], max_new_tokens=5),
        "rwkv-generate": lambda: rwkv.generate(ids[:2, :4] % 60, max_new_tokens=5, num_beams=2),
        "rwkv6-wkv": lambda: tfcore.functional.rwkv6_wkv(
            ql, kl, vl, -np.abs(ql), u6, initial_state=state_init[:2], return_state=True
        )[1],
        "rwkv-wkv": lambda: tfcore.functional.rwkv4_wkv(
            h, h, h[0, 0], h[0, 1], receptance=h, state=tuple(np.zeros((2, 32), np.float32) for _ in range(3))
        ),
        "linear-pickled": lambda: pickle.loads(pickle.dumps(lin))(x),
        "conv2d-nchw": lambda: conv(img),
        "conv2d-depthwise-nhwc-residual": lambda: dwconv(fmap, fmap_res, channels_last=True),
        "conv1d-int8": lambda: conv1(wave),
        "conv2d-pickled": lambda: pickle.loads(pickle.dumps(conv))(img),
        "clip": lambda: clip(input_ids=clip_ids, pixel_values=clip_px).logits_per_image,
        "siglip": lambda: siglip(input_ids=clip_ids, pixel_values=clip_px).logits_per_image,
        "swinv2": lambda: swinv2(swinv2_px).last_hidden_state,
        "pvt_v2": lambda: pvt(swinv2_px).last_hidden_state,  # 23x29: odd maps under the reduction
        "segformer": lambda: seg(swinv2_px).logits,
        "cvt": lambda: cvt(swinv2_px).last_hidden_state,  # depthwise Q/K/V, class token
        "beit": lambda: beit(swinv2_px).last_hidden_state,  # another grid: resized bias tables
        "conv2d-gemm-route-nchw": lambda: patch_conv(patch_img),
        "conv1d-gemm-route-grouped-residual": lambda: grouped_conv(
            grouped_seq, grouped_seq, channels_last=True
        ),
        "image-preprocessing": lambda: proc(photo)["pixel_values"],
        "bin-load": lambda: (
            tfcore.AutoModel.from_pretrained(tmp_path / "bert-bin")(
                ids, attention_mask=mask
            ).last_hidden_state
        ),
        "semantic-search": lambda: np.array(
            [
                [h["corpus_id"], h["score"]]
                for row in tfcore.eval.semantic_search(x, corpus, top_k=3, corpus_chunk_size=7)
                for h in row
            ]
        ),
        "sdpa": lambda: tfcore.functional.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=True
        ),
    }
    # GGUF: loads of one file from every thread, and one shared memory-mapped reader
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz"))
    import harness

    (tmp_path / "m.gguf").write_bytes(harness.tiny_llama_gguf(3))
    from tfcore.gguf import GGUFFile

    shared_gguf = GGUFFile(tmp_path / "m.gguf")
    work["gguf-load-generate"] = lambda: tfcore.AutoModelForCausalLM.from_pretrained(
        tmp_path / "m.gguf"
    ).generate(ids[:1, :3] % 8, max_new_tokens=4)
    work["gguf-int4-load-generate"] = lambda: tfcore.AutoModelForCausalLM.from_pretrained(
        tmp_path / "m.gguf", dtype="int4"
    ).generate(ids[:1, :3] % 8, max_new_tokens=4)
    work["gguf-shared-dequantize"] = lambda: shared_gguf.float32("blk.0.ffn_down.weight")
    # int4: a shared 4-bit model (decode kernel and prefill slices) and a shared int4 Linear
    llama4 = tfcore.AutoModelForCausalLM.from_pretrained(tmp_path / "llama", dtype="int4_g32")
    lin4 = tfcore.Linear(r(96, 70), r(96), activation="silu", dtype="int4_g32")
    x4 = r(11, 70)
    work["int4-generate"] = lambda: llama4.generate(ids[:2, :4], max_new_tokens=6)
    work["int4-linear-decode-and-prefill"] = lambda: np.concatenate([lin4(x4[:3]), lin4(x4)])
    texts = [" ".join(f"w{w}" for w in rng.integers(2, 60, n)) for n in (3, 9, 1, 14, 6)]
    work.update(
        {
            "eval-embed": lambda: tfcore.eval.embed(bert, texts, batch_size=2, show_progress=False),
            "eval-score": lambda: tfcore.eval.score(llama, texts, batch_size=2, show_progress=False)[
                "log_likelihood"
            ],
            "eval-generate": lambda: np.array(
                tfcore.eval.generate(llama, texts, batch_size=2, max_new_tokens=4, show_progress=False)
            ),
        }
    )
    # speech: Whisper's generate keeps its call's features per thread; the audio helpers
    from test_whisper import MULTILINGUAL, save_tiny_whisper

    save_tiny_whisper(tmp_path / "whisper", MULTILINGUAL)
    whisper = tfcore.models.WhisperForConditionalGeneration.from_pretrained(tmp_path / "whisper")
    speech = rng.standard_normal(22050).astype(np.float32) * 0.1
    fe = tfcore.audio.WhisperFeatureExtractor()
    mel = np.stack([fe(speech[:16000] * s, sampling_rate=16000)["input_features"][0] for s in (1.0, 0.5)])
    long_mel = np.ascontiguousarray(np.concatenate([mel[:1], mel[:1, :, :500]], axis=2))  # 3500 frames
    work.update(
        {
            "whisper-generate": lambda: whisper.generate(mel, max_new_tokens=4, language="en"),
            "whisper-beam": lambda: whisper.generate(mel[:1], max_new_tokens=3, num_beams=2, language="de"),
            "audio-features": lambda: fe(tfcore.audio.resample(speech, 22050, 16000))["input_features"],
            # long-form: two windows, timestamps, the language detected (per-thread call state)
            "whisper-long-form": lambda: whisper.generate(long_mel, max_new_tokens=4, return_timestamps=True),
            "whisper-detect": lambda: whisper.detect_language(mel),
        }
    )
    serial = {name: fn() for name, fn in work.items()}
    failures, counts = [], [0] * THREADS
    deadline = time.monotonic() + SECONDS

    def worker(i):
        names = list(work)
        j = i
        try:
            while time.monotonic() < deadline:
                name = names[j % len(names)]
                got = work[name]()
                if not np.array_equal(got, serial[name]):
                    failures.append(f"thread {i}: {name} differs from the serial result")
                    return
                j += 1
                counts[i] += 1
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(f"thread {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60 + SECONDS)
    assert not any(t.is_alive() for t in threads), "deadlock: a thread is still running"
    assert not failures, failures
    assert min(counts) >= 5, counts  # every thread got through several calls of each kind
