"""Safetensors reading: zero-copy views, dtypes, sharded checkpoints, and malformed files
that must raise CheckpointError (never crash)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tfcore
from tfcore.safetensors import Checkpoint, CheckpointError, SafetensorsFile, save_file


def write_raw(path, header: dict, data: bytes, header_len=None):
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write((len(raw) if header_len is None else header_len).to_bytes(8, "little"))
        f.write(raw)
        f.write(data)
    return path


def test_round_trip_and_zero_copy(rng, tmp_path):
    a = rng.standard_normal((3, 5)).astype(np.float32)
    b = np.arange(7, dtype=np.int64)
    save_file({"a": a, "b": b}, tmp_path / "x.safetensors", metadata={"format": "np"})
    f = SafetensorsFile(tmp_path / "x.safetensors")
    assert f.keys() == ["a", "b"] and f.metadata == {"format": "np"}
    va = f.float32("a")
    assert np.array_equal(va, a) and np.array_equal(f.raw("b"), b)
    assert not va.flags.writeable  # a view of the read-only map, not a copy
    assert np.shares_memory(va, f.raw("a"))


def test_reads_what_torch_safetensors_writes(tmp_path):
    from safetensors.torch import save_file as torch_save

    t = {
        "f32": torch.randn(4, 3),
        "f16": torch.randn(5).half(),
        "bf16": torch.randn(2, 7).bfloat16(),
        "i64": torch.arange(6),
        "f64": torch.randn(3).double(),
    }
    torch_save(t, str(tmp_path / "t.safetensors"))
    f = SafetensorsFile(tmp_path / "t.safetensors")
    for name, ten in t.items():
        if name == "i64":
            assert np.array_equal(f.raw(name), ten.numpy())
        else:
            want = ten.float().numpy()
            assert f.float32(name).dtype == np.float32
            assert np.array_equal(f.float32(name), want)  # conversions to float32 are exact


def test_sharded_checkpoint(rng, tmp_path):
    a, b = rng.standard_normal((2, 2)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    save_file({"a": a}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({"b": b}, tmp_path / "model-00002-of-00002.safetensors")
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps(
            {
                "metadata": {},
                "weight_map": {
                    "a": "model-00001-of-00002.safetensors",
                    "b": "model-00002-of-00002.safetensors",
                },
            }
        )
    )
    ck = Checkpoint(tmp_path)
    assert sorted(ck.keys()) == ["a", "b"]
    assert np.array_equal(ck.float32("b"), b) and ck.nbytes() == a.nbytes + b.nbytes


@pytest.mark.parametrize(
    "header,data,header_len,msg",
    [
        (
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
            b"\0" * 4,
            None,
            "outside the 4-byte data section",
        ),
        (
            {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
            b"\0" * 8,
            None,
            "12 bytes but its data_offsets span 8",
        ),
        ({"a": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "unknown dtype 'Q7'"),
        ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "invalid shape"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8, None, "outside"),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\0" * 12,
            None,
            "overlap",
        ),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, 10**9, "header length"),
        ({"a": [1, 2]}, b"", None, "must be an object"),
        (
            {"a": {"dtype": "F32", "shape": [[[[[1]]]]], "data_offsets": [0, 4]}},
            b"\0" * 4,
            None,
            "nested deeper|invalid shape",
        ),
        ({"__metadata__": {"k": 1}}, b"", None, "__metadata__"),
    ],
)
def test_malformed_files_raise(tmp_path, header, data, header_len, msg):
    p = write_raw(tmp_path / "bad.safetensors", header, data, header_len)
    with pytest.raises(CheckpointError, match=msg):
        SafetensorsFile(p)


def test_garbage_and_truncated_files(tmp_path):
    (tmp_path / "short.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="too short"):
        SafetensorsFile(tmp_path / "short.safetensors")
    raw = b"{not json"
    (tmp_path / "junk.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw)
    with pytest.raises(CheckpointError, match="not valid UTF-8 JSON"):
        SafetensorsFile(tmp_path / "junk.safetensors")
    save_file({"a": np.ones(1000, np.float32)}, tmp_path / "full.safetensors")
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "full.safetensors").read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        SafetensorsFile(tmp_path / "cut.safetensors")
    assert isinstance(CheckpointError("x"), ValueError) and isinstance(
        CheckpointError("x"), tfcore.TfcoreError
    )


def test_missing_directory_pieces(tmp_path):
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        Checkpoint(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": {"a": "../etc/passwd"}}')
    with pytest.raises(CheckpointError, match="invalid shard"):
        Checkpoint(tmp_path)


def test_model_loading_errors(rng, tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    BertModel(cfg).save_pretrained(tmp_path)
    ck = tmp_path / "model.safetensors"
    tensors = {k: SafetensorsFile(ck).raw(k).copy() for k in SafetensorsFile(ck).keys()}
    # missing key
    broken = dict(tensors)
    del broken["encoder.layer.0.output.dense.weight"]
    save_file(broken, ck)
    with pytest.raises(CheckpointError, match="missing 'encoder.layer.0.output.dense.weight'"):
        tfcore.models.BertModel.from_pretrained(tmp_path)
    # wrong shape
    broken = dict(tensors)
    broken["encoder.layer.0.output.dense.weight"] = np.zeros((16, 31), np.float32)
    save_file(broken, ck)
    with pytest.raises(CheckpointError, match=r"has shape \(16, 31\), expected \(16, 32\)"):
        tfcore.models.BertModel.from_pretrained(tmp_path)
    # unsupported model type / malformed config
    save_file(tensors, ck)
    (tmp_path / "config.json").write_text('{"model_type": "hyena"}')
    with pytest.raises(
        CheckpointError, match="model_type .hyena. is not a supported model; tfcore supports .*bert"
    ):
        tfcore.AutoModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("[" * 100000)
    with pytest.raises(CheckpointError, match="not valid JSON"):
        tfcore.AutoModel.from_pretrained(tmp_path)
