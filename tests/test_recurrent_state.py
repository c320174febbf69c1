"""RecurrentState: per-layer named state tensors of recurrent models (linear attention,
RetNet, GLA, RWKV, Mamba) as zero-copy NumPy views; reorder/reset in place; bf16 storage."""

from __future__ import annotations

import gc
import sys
import threading

import numpy as np
import pytest

import tfcore

LINEAR = {"state": (4, 8, 6), "z": (4, 8)}  # [B, H, Dk, Dv] and [B, H, Dk] per layer


def test_shapes_dtype_and_zero_start():
    s = tfcore.RecurrentState(3, 2, LINEAR)
    assert (s.num_layers, s.batch_size, s.dtype) == (3, 2, "float32")
    for layer in range(3):
        assert s.names(layer) == ("state", "z")
        assert s.shapes(layer) == {"state": (4, 8, 6), "z": (4, 8)}
        st, z = s.get(layer, "state"), s.get(layer, "z")
        assert st.shape == (2, 4, 8, 6) and z.shape == (2, 4, 8)
        assert st.dtype == np.float32 and not st.any() and not z.any()
    assert s.nbytes == 3 * 2 * (4 * 8 * 6 + 4 * 8) * 4
    assert "num_layers=3" in repr(s) and "'state': (4, 8, 6)" in repr(s)


def test_per_layer_shapes_for_hybrids():
    # Jamba-like: Mamba layers with conv/ssm tensors, an attention layer without state
    shapes = [{"conv": (16, 3), "ssm": (16, 4)}, {}, {"shift": (16,), "wkv": (2, 8, 8)}]
    s = tfcore.RecurrentState(3, 5, shapes)
    assert s.names(1) == ()
    assert s.get(0, "conv").shape == (5, 16, 3)
    assert s.get(2, "wkv").shape == (5, 2, 8, 8)
    assert s.nbytes == 5 * (16 * 3 + 16 * 4 + 16 + 2 * 8 * 8) * 4
    assert "varies by layer" in repr(s)
    with pytest.raises(tfcore.TfcoreValueError, match="layer 1 has no state 'conv'"):
        s.get(1, "conv")


def test_views_are_zero_copy_and_writable():
    s = tfcore.RecurrentState(2, 3, LINEAR)
    view = s.get(1, "state")
    assert np.shares_memory(view, s.get(1, "state"))
    assert np.shares_memory(view, s.raw(1, "state"))
    assert not np.shares_memory(view, s.get(0, "state"))
    view[...] = 2.5  # a layer updating its state in place
    assert (s.get(1, "state") == 2.5).all() and not s.get(0, "state").any()
    # the view keeps the memory alive after the state is gone
    del s
    gc.collect()
    assert (view == 2.5).all()


def test_set_copies_and_checks():
    s = tfcore.RecurrentState(1, 2, LINEAR)
    rng = np.random.default_rng(0)
    value = rng.standard_normal((2, 4, 8)).astype(np.float32)
    s.set(0, "z", value)
    np.testing.assert_array_equal(s.get(0, "z"), value)
    assert not np.shares_memory(value, s.get(0, "z"))
    with pytest.raises(tfcore.TfcoreValueError, match=r"shape \(2, 4, 7\), expected \(2, 4, 8\)"):
        s.set(0, "z", value[..., :7].copy())
    with pytest.raises(tfcore.TfcoreTypeError, match="float64"):
        s.set(0, "z", value.astype(np.float64))
    bad = value.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(tfcore.TfcoreValueError, match="NaN"):
        s.set(0, "z", bad)
    np.testing.assert_array_equal(s.get(0, "z"), value)  # rejected calls change nothing


def test_reorder_in_place_matches_numpy_take():
    rng = np.random.default_rng(1)
    s = tfcore.RecurrentState(2, 4, LINEAR)
    want = {}
    for layer in range(2):
        for name in s.names(layer):
            v = rng.standard_normal(s.get(layer, name).shape).astype(np.float32)
            s.set(layer, name, v)
            want[layer, name] = v
    view = s.get(1, "state")
    idx = np.array([3, 3, 0, 1])
    s.reorder(idx)
    for (layer, name), v in want.items():
        np.testing.assert_array_equal(s.get(layer, name), v[idx])
    np.testing.assert_array_equal(view, want[1, "state"][idx])  # in place: old views follow
    s.reorder(np.array([0, 1, 2, 3], np.int32))
    np.testing.assert_array_equal(s.get(0, "z"), want[0, "z"][idx])


def test_reset_zeroes_in_place_and_counts_tokens():
    s = tfcore.RecurrentState(1, 1, LINEAR)
    view = s.get(0, "state")
    view += 1.0
    s.advance(7)
    s.advance(1)
    assert s.get_seq_length() == 8
    s.reset()
    assert not view.any() and s.get_seq_length() == 0


def test_bfloat16_storage_rounds_and_halves_memory():
    f32 = tfcore.RecurrentState(2, 2, LINEAR)
    bf16 = tfcore.RecurrentState(2, 2, LINEAR, dtype="bfloat16")
    assert bf16.dtype == "bfloat16" and bf16.nbytes * 2 == f32.nbytes
    rng = np.random.default_rng(2)
    v = rng.standard_normal((2, 4, 8, 6)).astype(np.float32)
    bf16.set(1, "state", v)
    got = bf16.get(1, "state")
    assert got.dtype == np.float32 and not np.shares_memory(got, bf16.raw(1, "state"))
    # bf16 keeps 8 significant bits: relative error <= 2**-8 (half an ulp of 2**-7)
    assert np.all(np.abs(got - v) <= np.abs(v) * 2.0**-8)
    raw = bf16.raw(1, "state")
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal((raw.astype(np.uint32) << 16).view(np.float32), got)
    bf16.reorder(np.array([1, 0]))
    np.testing.assert_array_equal(bf16.get(1, "state"), got[[1, 0]])


@pytest.mark.parametrize(
    "args,kwargs,exc,match",
    [
        ((0, 1, LINEAR), {}, tfcore.TfcoreValueError, "positive"),
        ((1, -2, LINEAR), {}, tfcore.TfcoreValueError, "positive"),
        ((1, 1, LINEAR), {"dtype": "int8"}, tfcore.TfcoreValueError, "dtype"),
        ((1, 1, "state"), {}, tfcore.TfcoreTypeError, "dict"),
        ((2, 1, [LINEAR]), {}, tfcore.TfcoreValueError, "one per layer"),
        ((1, 1, [3]), {}, tfcore.TfcoreTypeError, r"shapes\[0\]"),
        ((1, 1, {"s": 4}), {}, tfcore.TfcoreTypeError, "tuple of ints"),
        ((1, 1, {"s": (4, 0)}), {}, tfcore.TfcoreValueError, "positive"),
        ((1, 1, {"s": (4, -1)}), {}, tfcore.TfcoreValueError, "positive"),
        ((1, 1, {"s": (4.0,)}), {}, tfcore.TfcoreTypeError, "ints"),
        ((1, 1, {"": (4,)}), {}, tfcore.TfcoreTypeError, "names"),
        ((1, 1, {3: (4,)}), {}, tfcore.TfcoreTypeError, "names"),
        ((1, 1, {"s": (1,) * 9}), {}, tfcore.TfcoreValueError, "at most 8"),
        ((1000, 1000, {"s": (1000, 1000)}), {}, tfcore.TfcoreValueError, "GiB"),
        ((1, 1, {"s": (10**30,)}), {}, tfcore.TfcoreValueError, "positive"),
    ],
)
def test_constructor_validation(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        tfcore.RecurrentState(*args, **kwargs)


def test_method_validation():
    s = tfcore.RecurrentState(2, 2, LINEAR)
    with pytest.raises(tfcore.TfcoreValueError, match="layer 2 is out of range"):
        s.get(2, "state")
    with pytest.raises(tfcore.TfcoreValueError, match="out of range"):
        s.names(-1)
    with pytest.raises(tfcore.TfcoreTypeError, match="layer must be an int"):
        s.get("0", "state")
    with pytest.raises(tfcore.TfcoreTypeError, match="name must be a str"):
        s.get(0, 1)
    with pytest.raises(tfcore.TfcoreTypeError):
        s.get(0)
    with pytest.raises(tfcore.TfcoreValueError, match="beam_idx"):
        s.reorder(np.array([0, 2]))
    with pytest.raises(tfcore.TfcoreValueError, match="beam_idx"):
        s.reorder(np.array([0]))
    with pytest.raises(tfcore.TfcoreTypeError, match="beam_idx"):
        s.reorder(np.array([0.0, 1.0]))
    with pytest.raises(tfcore.TfcoreValueError, match="advance"):
        s.advance(-1)
    with pytest.raises(tfcore.TfcoreTypeError, match="advance"):
        s.advance(1.5)


def test_no_reference_leaks():
    s = tfcore.RecurrentState(2, 3, LINEAR, dtype="bfloat16")
    v = np.ones((3, 4, 8), np.float32)
    idx = np.array([2, 1, 0])
    before = sys.getrefcount(v), sys.getrefcount(idx), sys.getrefcount(s)
    for _ in range(2000):
        s.set(1, "z", v)
        s.get(1, "z")
        s.raw(0, "state")
        s.reorder(idx)
        try:
            s.get(0, "nope")
        except tfcore.TfcoreValueError:
            pass
    assert (sys.getrefcount(v), sys.getrefcount(idx), sys.getrefcount(s)) == before


def test_threads_each_with_their_own_state_and_one_shared():
    """Private states give the serial result; concurrent reorders of one shared state either
    run or raise 'in use' (never corrupt it: each reorder here is a permutation)."""
    rng = np.random.default_rng(3)
    init = rng.standard_normal((4, 4, 8, 6)).astype(np.float32)
    shared = tfcore.RecurrentState(1, 4, LINEAR)
    shared.set(0, "state", init)
    errors = []

    def work(i):
        try:
            own = tfcore.RecurrentState(2, 4, LINEAR)
            for _ in range(200):
                own.set(1, "state", init)
                own.reorder(np.array([1, 2, 3, 0]))
                np.testing.assert_array_equal(own.get(1, "state"), init[[1, 2, 3, 0]])
                try:
                    shared.reorder(np.array([3, 2, 1, 0]))
                except tfcore.TfcoreValueError as e:
                    assert "in use" in str(e)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    got = shared.get(0, "state")
    assert np.array_equal(got, init) or np.array_equal(got, init[::-1])
