"""ELECTRA, ALBERT and MPNet encoders (issue 18) against Hugging Face transformers on tiny
random models with odd sizes: every hidden state and attention map, padded batches both ways,
the ELECTRA discriminator, ALBERT's shared layers held once, MPNet's relative position bias
past its bucket range, bf16 / int8. The task heads are in test_encoder_heads.py; the real
all-mpnet-base-v2 weights in test_mpnet_real_weights.py.

Tolerance: float32 on both sides through <= 6 layers of width <= 44 (activations O(1));
observed differences ~1e-6; TOL = 3e-5 as in test_encoder_heads (a wrong weight, position or
bias moves outputs by O(0.1)). bf16 / int8: closeness to the float32 outputs relative to their
scale, as for the other encoders (0.05 / 0.1)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import tfcore
from tfcore import models

TOL = 3e-5
T = 23


def _config(kind, **kw):
    import transformers

    common = dict(attn_implementation="eager", max_position_embeddings=64)
    common.update(kw)
    if kind == "electra":
        sizes = dict(embedding_size=28, hidden_size=44)
        sizes.update(common)
        return transformers.ElectraConfig(
            vocab_size=97, num_hidden_layers=3, num_attention_heads=4, intermediate_size=71,
            hidden_act="gelu_new", **sizes,
        )  # fmt: skip
    if kind == "albert":
        # 5 layers over 2 groups of 2: int(i / 2.5) -> groups 0,0,0,1,1, 10 blocks in all
        return transformers.AlbertConfig(
            vocab_size=89, embedding_size=20, hidden_size=36, num_hidden_layers=5, num_hidden_groups=2,
            inner_group_num=2, num_attention_heads=3, intermediate_size=53, **common,
        )  # fmt: skip
    return transformers.MPNetConfig(
        vocab_size=83, hidden_size=40, num_hidden_layers=3, num_attention_heads=5, intermediate_size=67, **common
    )  # fmt: skip


HF_BASE = {"electra": "ElectraModel", "albert": "AlbertModel", "mpnet": "MPNetModel"}
PAD = {"electra": 0, "albert": 0, "mpnet": 1}


def _save(kind, path, cls_name=None, **kw):
    import transformers

    torch.manual_seed(0)
    ref = getattr(transformers, cls_name or HF_BASE[kind])(_config(kind, **kw)).eval()
    ref.save_pretrained(path, safe_serialization=True)
    return ref


def _padded(rng, kind, V, lengths, T=T):
    mask = (np.arange(T)[None] < np.asarray(lengths)[:, None]).astype(np.int64)
    ids = rng.integers(3, V, size=(len(lengths), T))
    return np.where(mask == 1, ids, PAD[kind]), mask


@pytest.mark.parametrize("kind", sorted(HF_BASE))
def test_every_hidden_state_and_attention_map_matches_hf(rng, tmp_path, kind):
    ref = _save(kind, tmp_path)
    ours = tfcore.AutoModel.from_pretrained(tmp_path)
    assert type(ours).__name__ == HF_BASE[kind] and ours.unexpected_keys == []
    ids, mask = _padded(rng, kind, ref.config.vocab_size, [T, 11, 4])
    with torch.no_grad():
        want = ref(
            torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            output_hidden_states=True,
            output_attentions=True,
        )
    got = ours(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    assert len(got.hidden_states) == len(want.hidden_states)
    for a, b in zip(got.hidden_states, want.hidden_states):
        assert a.shape == tuple(b.shape) and np.abs(a - b.numpy()).max() < TOL
    assert len(got.attentions) == len(want.attentions)
    for a, b in zip(got.attentions, want.attentions):
        assert a.shape == tuple(b.shape) and np.abs(a - b.numpy()).max() < TOL
    if want.get("pooler_output") is not None:
        assert np.abs(got.pooler_output - want.pooler_output.numpy()).max() < TOL
    else:
        assert got.get("pooler_output") is None
    # the padding-free default: real tokens equal HF's, padded positions are zeros
    fast = ours(ids, attention_mask=mask)
    real = mask.astype(bool)
    want_h = want.last_hidden_state.numpy()
    assert np.abs(fast.last_hidden_state[real] - want_h[real]).max() < TOL
    assert not fast.last_hidden_state[~real].any()


def test_electra_discriminator_matches_hf(rng, tmp_path):
    ref = _save("electra", tmp_path, "ElectraForPreTraining")
    ours = models.ElectraForPreTraining.from_pretrained(tmp_path)
    assert ours.unexpected_keys == []
    ids, mask = _padded(rng, "electra", ref.config.vocab_size, [T, 9])
    with torch.no_grad():
        want = ref(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    got = ours(ids, attention_mask=mask, padding_free=False).logits
    assert got.shape == want.shape == (2, T)  # one replaced-token score per position
    assert np.abs(got - want).max() < TOL


def test_electra_without_projection(rng, tmp_path):
    """embedding_size == hidden_size: HF builds no embeddings_project."""
    ref = _save("electra", tmp_path, embedding_size=44)
    assert not hasattr(ref, "embeddings_project")
    ours = models.ElectraModel.from_pretrained(tmp_path)
    assert ours.embeddings_project is None
    ids = rng.integers(3, 97, size=(2, 13))
    with torch.no_grad():
        want = ref(torch.from_numpy(ids)).last_hidden_state.numpy()
    assert np.abs(ours(ids).last_hidden_state - want).max() < TOL


def test_albert_shares_each_group_once(tmp_path):
    """5 layers, 2 groups of 2 inner layers: 10 block applications, 4 distinct blocks, in
    HF's order; the weights in memory are one group's each (not per layer)."""
    _save("albert", tmp_path)
    ours = models.AlbertModel.from_pretrained(tmp_path)
    layers = ours.encoder.layers
    assert len(layers) == 10
    assert len({id(b) for b in layers}) == 4
    assert ours.group_of_layer == [0, 0, 0, 1, 1]
    assert [id(b) for b in layers[:6]] == [id(layers[0]), id(layers[1])] * 3
    assert [id(b) for b in layers[6:]] == [id(layers[6]), id(layers[7])] * 2
    assert layers[0] is not layers[6]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""), reason="ASan's allocator")
def test_albert_base_holds_one_layer_of_weights(tmp_path):
    """An ALBERT-base-shaped model (12 layers, one shared group): loading it grows resident
    memory by about one layer's packed weights (7.1M floats, 28 MB), not twelve (340 MB)."""
    from transformers import AlbertConfig, AlbertModel

    torch.manual_seed(0)
    cfg = AlbertConfig(
        vocab_size=300, embedding_size=128, hidden_size=768, num_attention_heads=12, intermediate_size=3072
    )
    AlbertModel(cfg).save_pretrained(tmp_path, safe_serialization=True)
    # warm-up (oneDNN's kernels, allocator arenas), kept alive so the measured load cannot
    # reuse its memory
    warm = models.AlbertModel.from_pretrained(tmp_path)
    before = _rss_bytes()
    ours = models.AlbertModel.from_pretrained(tmp_path)
    grown = _rss_bytes() - before
    assert len(ours.encoder.layers) == 12 and len({id(b) for b in ours.encoder.layers}) == 1
    assert grown < 100 * 2**20, f"loading grew resident memory by {grown / 2**20:.0f} MiB"
    del warm


def test_mpnet_relative_bias_past_its_bucket_range(rng, tmp_path):
    """150 tokens: distances beyond max_distance 128 share the last bucket; right and left
    padding agree on the real tokens (the bias depends on distances only)."""
    ref = _save("mpnet", tmp_path, max_position_embeddings=160)
    ours = models.MPNetModel.from_pretrained(tmp_path)
    ids, mask = _padded(rng, "mpnet", 83, [150, 97, 131], T=150)
    with torch.no_grad():
        want = ref(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
    real = mask.astype(bool)
    for pf in (True, False):
        got = ours(ids, attention_mask=mask, padding_free=pf).last_hidden_state
        assert np.abs(got[real] - want[real]).max() < TOL


@pytest.mark.parametrize("kind", sorted(HF_BASE))
@pytest.mark.parametrize("dtype,tol", [("bfloat16", 0.05), ("int8", 0.1)])
def test_bf16_and_int8_load_and_run(rng, tmp_path, kind, dtype, tol):
    if dtype not in tfcore.supported_dtypes():
        pytest.skip(f"{dtype} is not supported on this CPU")
    ref = _save(kind, tmp_path)
    ids, mask = _padded(rng, kind, ref.config.vocab_size, [T, 11])
    full = tfcore.AutoModel.from_pretrained(tmp_path)(ids, attention_mask=mask).last_hidden_state
    low_model = tfcore.AutoModel.from_pretrained(tmp_path, dtype=dtype)
    assert low_model.dtype == dtype
    low = low_model(ids, attention_mask=mask).last_hidden_state
    real = mask.astype(bool)
    assert np.isfinite(low).all()
    assert np.abs(full[real] - low[real]).max() < tol * np.abs(full[real]).max()


@pytest.mark.parametrize(
    "kind,key,value,words",
    [
        ("albert", "num_hidden_groups", 0, "num_hidden_groups"),
        ("albert", "inner_group_num", "2", "inner_group_num"),
        ("mpnet", "relative_attention_num_buckets", 16, "relative_attention_num_buckets"),
    ],
)
def test_bad_config_values_raise_clear_errors(tmp_path, kind, key, value, words):
    import json

    _save(kind, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg[key] = value
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(tfcore.CheckpointError, match=words):
        tfcore.AutoModel.from_pretrained(tmp_path)
