"""Conv1d and Conv2d against the float64 NumPy reference (tests/reference/conv.py) and torch:
strides, padding, dilation, groups (depthwise), odd sizes, both layouts, fused activation and
residual, BatchNorm folding, bfloat16 and int8."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from reference import dense
from reference.conv import conv as conv_ref
from reference.conv import round_bf16

import tfcore

ACTS = [None, "gelu", "gelu_tanh", "relu", "silu", "tanh"]

# (in_channels, out_channels, kernel, stride, padding, dilation, groups, spatial size)
GEOMETRIES_2D = [
    (3, 8, (3, 3), 1, 1, 1, 1, (13, 11)),  # an image stem: 3 channels, odd map
    (3, 16, (4, 4), 4, 0, 1, 1, (17, 23)),  # a patch embedding whose stride does not divide
    (8, 8, (3, 3), 2, 1, 1, 8, (15, 9)),  # depthwise, stride 2 (CvT's K/V projections)
    (6, 4, (5, 3), (2, 1), (2, 0), (2, 1), 2, (17, 21)),  # per-axis everything, 2 groups
    (16, 32, (1, 1), 1, 0, 1, 1, (7, 7)),  # pointwise
    (64, 64, (7, 7), 1, 3, 1, 64, (14, 14)),  # depthwise 7x7 (ConvNeXt-like)
    (20, 30, (3, 3), 2, 1, 1, 10, (9, 10)),  # grouped, channels not a multiple of 16
    (5, 7, (2, 2), 3, 3, 2, 1, (5, 4)),  # padding larger than the kernel
]

GEOMETRIES_1D = [
    (80, 24, (3,), 1, 1, 1, 1, (37,)),  # Whisper conv1 (mel bins -> width), 37 frames
    (24, 24, (3,), 2, 1, 1, 1, (37,)),  # Whisper conv2 (stride 2)
    (1, 16, (10,), 5, 0, 1, 1, (401,)),  # wav2vec2 feature encoder's first layer
    (16, 16, (9,), 1, 4, 1, 4, (53,)),  # wav2vec2 positional conv (grouped; its kernel is even in HF)
    (12, 12, (5,), 3, 2, 3, 12, (61,)),  # depthwise, dilated
]

# Geometries conv.c runs as GEMMs over im2col rows instead of a oneDNN convolution
# (non-overlapping patches; grouped kernels with >= 4 channels per group and >= 16 taps)
GEOMETRIES_GEMM = [
    (16, 24, (8, 8), 8, 0, 1, 1, (29, 35)),  # SegFormer / PVT reduction, map not a multiple of 8
    (3, 20, (4, 2), (4, 2), 0, 1, 1, (17, 13)),  # per-axis patches
    (12, 12, (1, 1), 1, 0, 1, 1, (7, 9)),  # stride-1 1x1: the map itself is the GEMM's rows
    (16, 8, (5, 5), 1, 2, 1, 4, (11, 9)),  # grouped 5x5, 4 groups of 4 channels, padded
    (12, 12, (4, 5), (2, 1), (1, 2), (2, 1), 3, (13, 15)),  # grouped, per-axis stride / dilation
    (32, 32, (32,), 1, 16, 1, 4, (37,)),  # wav2vec2's positional conv: even kernel, 4 groups
    (8, 16, (17,), 2, 3, 2, 2, (61,)),  # grouped 1-D, strided and dilated
    (8, 24, (16,), 16, 0, 1, 1, (67,)),  # 1-D patches (frames), length not a multiple
]


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def make_case(rng, geometry, batch=2):
    C, OC, k, stride, padding, dilation, groups, sp = geometry
    fan_in = C // groups * int(np.prod(k))
    w = rand(rng, OC, C // groups, *k, scale=fan_in**-0.5)
    b = rand(rng, OC)
    x = rand(rng, batch, C, *sp)
    return w, b, x, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def layer_type(w):
    return tfcore.Conv1d if w.ndim == 3 else tfcore.Conv2d


def to_last(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def to_first(a):
    return np.ascontiguousarray(np.moveaxis(a, -1, 1))


def tol(w):
    # fp32 accumulation of fan_in products of OC(1) terms (weights scaled by fan_in**-0.5):
    # the error grows ~sqrt(fan_in) * eps * |y|; this is the bound test_linear uses for K
    fan_in = int(np.prod(w.shape[1:]))
    return 2e-6 * fan_in + 1e-5


@pytest.mark.parametrize("geometry", GEOMETRIES_2D + GEOMETRIES_1D + GEOMETRIES_GEMM, ids=str)
def test_float32_matches_reference_both_layouts(rng, geometry):
    w, b, x, geo = make_case(rng, geometry)
    layer = layer_type(w)(w, b, **geo)
    ref = conv_ref(x, w, b, **geo)
    first = layer(x)
    last = layer(to_last(x), channels_last=True)
    assert first.shape == ref.shape and first.dtype == np.float32
    assert np.abs(first - ref).max() < tol(w)
    assert last.shape == to_last(ref).shape
    assert np.abs(to_first(last) - ref).max() < tol(w)
    assert layer.in_channels == x.shape[1] and layer.out_channels == w.shape[0]


@pytest.mark.parametrize("act", ACTS)
def test_fused_activation(rng, act):
    w, b, x, geo = make_case(rng, GEOMETRIES_2D[3])
    ref = dense.activation(conv_ref(x, w, b, **geo), act)
    for channels_last in (False, True):
        layer = tfcore.Conv2d(w, b, activation=act, **geo)
        y = layer(to_last(x), channels_last=True) if channels_last else layer(x)
        y = to_first(y) if channels_last else y
        assert np.abs(y - ref).max() < tol(w)


@pytest.mark.parametrize(
    "geometry",
    [
        GEOMETRIES_2D[0],
        GEOMETRIES_2D[2],
        GEOMETRIES_1D[1],
        GEOMETRIES_GEMM[0],
        GEOMETRIES_GEMM[2],
        GEOMETRIES_GEMM[4],
    ],
    ids=str,
)
def test_residual_and_in_place_accumulation(rng, geometry):
    w, b, x, geo = make_case(rng, geometry)
    layer = layer_type(w)(w, b, activation="gelu", **geo)
    ref = dense.activation(conv_ref(x, w, b, **geo), "gelu")
    r = rand(rng, *ref.shape)
    # channels first: the residual is added by the reorder back from channels last
    assert np.abs(layer(x, r) - (ref + r)).max() < tol(w)
    acc = r.copy()
    assert layer(x, acc, out=acc) is acc
    assert np.abs(acc - (ref + r)).max() < tol(w)
    # channels last: the residual is a post-op of the convolution itself
    rl = to_last(r)
    assert np.abs(to_first(layer(to_last(x), rl, channels_last=True)) - (ref + r)).max() < tol(w)
    acc = rl.copy()
    layer(to_last(x), acc, channels_last=True, out=acc)
    assert np.abs(to_first(acc) - (ref + r)).max() < tol(w)
    np.testing.assert_array_equal(r, to_first(rl))  # the residual itself is not modified


@pytest.fixture
def gemm_route(monkeypatch):
    """Take the GEMM route for every eligible geometry (by default AVX2 CPUs take it for
    patch embeddings only: conv.c's gemm_route)."""
    monkeypatch.setenv("TFCORE_CONV_ROUTE", "gemm")


@pytest.mark.parametrize("geometry", GEOMETRIES_GEMM, ids=str)
def test_gemm_route_is_taken_and_matches_the_reference(rng, gemm_route, geometry):
    """The geometries above run as GEMMs (implementation says so), at batch 1 and 3, with a
    fused activation; the unpacked weights are the given ones (the route's (tap, channel)
    order undone)."""
    w, b, _, geo = make_case(rng, geometry)
    layer = layer_type(w)(w, b, activation="gelu", **geo)
    assert layer.implementation.startswith("gemm over im2col rows"), layer.implementation
    np.testing.assert_array_equal(layer.weight, w)
    np.testing.assert_array_equal(layer.bias, b)
    for batch in (1, 3):
        x = rand(rng, batch, w.shape[1] * geo["groups"], *geometry[-1])
        ref = dense.activation(conv_ref(x, w, b, **geo), "gelu")
        assert np.abs(layer(x) - ref).max() < tol(w)
        assert np.abs(to_first(layer(to_last(x), channels_last=True)) - ref).max() < tol(w)


def test_gemm_route_over_several_panels(rng, gemm_route):
    """A grouped kernel-128 convolution (wav2vec2-like, 2 groups of 64 channels) on 2 x 300
    frames: 600 output rows of 8192 taps are gathered in panels of 256 rows (8 MB), so panel
    boundaries fall inside and across the batch's maps."""
    w, b, x, geo = make_case(rng, (128, 128, (128,), 1, 64, 1, 2, (300,)))
    layer = tfcore.Conv1d(w, b, **geo)
    assert layer.implementation.startswith("gemm over im2col rows (2 x Linear")
    ref = conv_ref(x, w, b, **geo)
    assert np.abs(layer(x) - ref).max() < tol(w)
    assert np.abs(to_first(layer(to_last(x), channels_last=True)) - ref).max() < tol(w)


def test_other_geometries_stay_on_onednn(rng, gemm_route):
    """Depthwise, small grouped kernels and overlapping dense kernels run oneDNN's convolution
    even when the route is asked for; TFCORE_CONV_ROUTE=onednn keeps every geometry there."""
    for geometry in (GEOMETRIES_2D[0], GEOMETRIES_2D[2], GEOMETRIES_2D[5], GEOMETRIES_1D[3]):
        w, b, _, geo = make_case(rng, geometry)
        assert not layer_type(w)(w, b, **geo).implementation.startswith("gemm")
    w, b, _, geo = make_case(rng, GEOMETRIES_GEMM[0])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TFCORE_CONV_ROUTE", "onednn")
        assert not tfcore.Conv2d(w, b, **geo).implementation.startswith("gemm")


def test_default_route_follows_onednn_isa(rng):
    """Without the override: a patch embedding with >= 256 channels and a stride-1 1x1 run as
    GEMMs everywhere; the 64-channel 8x8/8 reduction and grouped kernels only where oneDNN
    would use its avx512_core convolution."""
    avx512 = tfcore._C.config()["onednn_isa"].startswith("avx512_core")
    w = rand(rng, 256, 3, 16, 16)
    assert tfcore.Conv2d(w, stride=16).implementation.startswith("gemm")
    assert tfcore.Conv2d(rand(rng, 8, 16, 1, 1)).implementation.startswith("gemm")
    reduction = tfcore.Conv2d(rand(rng, 64, 64, 8, 8), stride=8)
    grouped = tfcore.Conv1d(rand(rng, 64, 16, 32), padding=16, groups=4)
    for layer in (reduction, grouped):
        assert layer.implementation.startswith("gemm") == avx512, layer.implementation


def test_matches_torch_modules(rng):
    """torch.nn.Conv2d / Conv1d with their own 'same' padding (even kernel: the extra zero at
    the end) and no bias."""
    for nsp, k, dil in ((2, (4, 2), (1, 2)), (1, (6,), (3,))):
        C, OC = 6, 10
        t = (torch.nn.Conv2d if nsp == 2 else torch.nn.Conv1d)(
            C, OC, k, padding="same", dilation=dil, bias=False
        )
        x = rand(rng, 3, C, *((11, 8) if nsp == 2 else (29,)))
        with torch.no_grad():
            ref = t(torch.from_numpy(x)).numpy()
        w = t.weight.detach().numpy()
        layer = (tfcore.Conv2d if nsp == 2 else tfcore.Conv1d)(w, padding="same", dilation=dil)
        y = layer(x)
        assert y.shape == ref.shape
        assert np.abs(y - ref).max() < 1e-5  # both fp32, different summation order
        total = [d * (kk - 1) for d, kk in zip(dil, k)]
        assert layer.padding == tuple((t_ // 2, t_ - t_ // 2) for t_ in total)


def test_batch_norm_folded_matches_torch(rng):
    C, OC = 8, 12
    conv = torch.nn.Conv2d(C, OC, 3, stride=2, padding=1, bias=True)
    bn = torch.nn.BatchNorm2d(OC, eps=1e-3).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(OC))
        bn.running_var.copy_(torch.rand(OC) + 0.1)
        bn.weight.copy_(torch.randn(OC))
        bn.bias.copy_(torch.randn(OC))
    x = rand(rng, 2, C, 13, 10)
    with torch.no_grad():
        ref = torch.relu(bn(conv(torch.from_numpy(x).double().float()))).numpy()
    f = lambda t: t.detach().numpy()  # noqa: E731
    layer = tfcore.Conv2d(
        f(conv.weight),
        f(conv.bias),
        stride=2,
        padding=1,
        activation="relu",
        batch_norm=(f(bn.running_mean), f(bn.running_var), f(bn.weight), f(bn.bias), bn.eps),
    )
    assert np.abs(layer(x) - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())
    # without affine parameters and without a conv bias
    layer = tfcore.Conv2d(
        f(conv.weight),
        stride=2,
        padding=1,
        batch_norm=(f(bn.running_mean), f(bn.running_var), None, None, 1e-5),
    )
    s = 1 / np.sqrt(f(bn.running_var).astype(np.float64) + 1e-5)
    want = (conv_ref(x, f(conv.weight), stride=2, padding=1) - f(bn.running_mean)[:, None, None]) * s[
        :, None, None
    ]
    assert np.abs(layer(x) - want).max() < 1e-4 * max(1.0, np.abs(want).max())
    np.testing.assert_allclose(
        layer.weight, f(conv.weight) * s[:, None, None, None].astype(np.float32), rtol=1e-6
    )


@pytest.mark.parametrize(
    "geometry",
    [
        GEOMETRIES_2D[0],
        GEOMETRIES_2D[3],
        GEOMETRIES_2D[5],
        GEOMETRIES_1D[0],
        GEOMETRIES_GEMM[0],
        GEOMETRIES_GEMM[5],
    ],
    ids=str,
)
def test_bfloat16_is_the_convolution_of_bf16_rounded_values(rng, path, geometry):
    """dtype='bfloat16' rounds weights and x to bf16 (ties to even) and accumulates in fp32:
    natively (AVX512_BF16) or as a float32 convolution of the rounded values: either way the
    reference over the rounded values matches to fp32 accumulation error."""
    w, b, x, geo = make_case(rng, geometry)
    layer = layer_type(w)(w, b, dtype="bfloat16", **geo)
    assert layer.dtype == "bfloat16"
    ref = conv_ref(round_bf16(x), round_bf16(w), b, **geo)
    assert np.abs(layer(x) - ref).max() < tol(w)
    assert np.abs(to_first(layer(to_last(x), channels_last=True)) - ref).max() < tol(w)
    np.testing.assert_array_equal(layer.weight, round_bf16(w))


def int8_bound(x, w, w_eff, geo):
    """y_int8 - y = Σ x (w_eff - w) + Δx w_eff over each receptive field, where w_eff are the
    dequantized weights the convolution multiplies with (layer.weight, checked separately)
    and |Δx| <= sx / 2 (one scale for the tensor, max|x| / 127): evaluated by the reference on
    absolute values, plus fp32 accumulation."""
    sx = np.abs(x).max() / 127
    return (
        conv_ref(np.abs(x), np.abs(w_eff.astype(np.float64) - w), **geo)
        + conv_ref(np.ones_like(x), np.abs(w_eff), **geo) * sx / 2
        + tol(w)
    )


@pytest.mark.parametrize(
    "geometry",
    [
        GEOMETRIES_2D[0],
        GEOMETRIES_2D[2],
        GEOMETRIES_2D[4],
        GEOMETRIES_1D[2],
        GEOMETRIES_GEMM[0],
        GEOMETRIES_GEMM[3],
    ],
    ids=str,
)
def test_int8_within_the_quantization_bound(rng, path, geometry):
    w, b, x, geo = make_case(rng, geometry)
    layer = layer_type(w)(w, b, activation=None, dtype="int8", **geo)
    assert layer.dtype == "int8" and layer.quant_max in (63, 64, 127)
    # the weights: per output channel to 127 steps of max|w| / 127, rounded; without VNNI
    # oneDNN halves those integers once more (64 steps), or Linear quantizes to 63 steps (the
    # geometries run as GEMMs): within 1.5 of the finer steps
    s127 = np.abs(w).reshape(w.shape[0], -1).max(1).reshape((-1,) + (1,) * (w.ndim - 1)) / 127
    w_eff = layer.weight
    half_steps = 1.0 if layer.quant_max == 127 else 3.0
    assert (np.abs(w_eff - w) <= s127 * half_steps / 2 * 1.0001).all()
    ref = conv_ref(x, w, b, **geo)
    bound = int8_bound(x, w, w_eff, geo)
    for y in (layer(x), to_first(layer(to_last(x), channels_last=True))):
        err = np.abs(y - ref)
        assert (err <= bound).all(), float((err / bound).max())
        # and a real approximation, not just within a loose bound
        assert err.max() < 0.05 * np.abs(ref).max()


def test_zero_input_and_weight_values(rng):
    """An all-zero input (int8 scale of zero) and an all-zero weight channel stay exact."""
    w, b, x, geo = make_case(rng, GEOMETRIES_2D[0])
    w[2] = 0
    for dt in ("float32", "bfloat16", "int8"):
        layer = tfcore.Conv2d(w, b, dtype=dt, **geo)
        y = layer(np.zeros_like(x))
        np.testing.assert_allclose(y, np.broadcast_to(b[None, :, None, None], y.shape), atol=1e-6)
        assert np.abs(layer(x)[:, 2] - b[2]).max() < 1e-6


def test_attributes_and_weight_round_trip(rng):
    w, b, x, geo = make_case(rng, GEOMETRIES_2D[3])
    layer = tfcore.Conv2d(w, b, **geo)
    assert layer.kernel_size == (5, 3) and layer.stride == (2, 1) and layer.dilation == (2, 1)
    assert layer.padding == ((2, 2), (0, 0)) and layer.groups == 2
    np.testing.assert_array_equal(layer.weight, w)
    np.testing.assert_array_equal(layer.bias, b)
    assert layer.activation is None and layer.dtype == "float32" and layer.quant_max is None
    assert "Conv2d(6, 4" in repr(layer) and "groups=2" in repr(layer)
    assert isinstance(layer.implementation, str) and layer.implementation
    w1 = rand(rng, 4, 3, 5)
    c1 = tfcore.Conv1d(w1, stride=[2], padding="valid", activation="gelu_new")
    assert c1.kernel_size == (5,) and c1.stride == (2,) and c1.padding == ((0, 0),)
    assert c1.bias is None and c1.activation == "gelu_tanh"
    np.testing.assert_array_equal(c1.weight, w1)


def test_output_into_out_and_large_batch(rng):
    w, b, x, geo = make_case(rng, GEOMETRIES_2D[1], batch=9)
    layer = tfcore.Conv2d(w, b, **geo)
    ref = conv_ref(x, w, b, **geo)
    out = np.empty(ref.shape, np.float32)
    assert layer(x, out=out) is out
    assert np.abs(out - ref).max() < tol(w)
    # each image of the batch independently gives the same values
    assert np.abs(layer(x[3:4]) - out[3:4]).max() < 1e-5


def test_threads_share_one_layer(rng):
    w, b, x, geo = make_case(rng, GEOMETRIES_2D[2])
    layer = tfcore.Conv2d(w, b, activation="silu", **geo)
    want = layer(x)
    errors = []

    def work(channels_last):
        xi = to_last(x) if channels_last else x
        for _ in range(30):
            y = layer(xi, channels_last=channels_last)
            y = to_first(y) if channels_last else y
            if not np.array_equal(y, want):
                errors.append(float(np.abs(y - want).max()))

    ts = [threading.Thread(target=work, args=(i % 2 == 1,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int8"])
def test_pickle_round_trip(rng, dtype):
    import pickle

    w, b, x, geo = make_case(rng, GEOMETRIES_2D[3])
    layer = tfcore.Conv2d(w, b, activation="relu", dtype=dtype, **geo)
    again = pickle.loads(pickle.dumps(layer))
    assert repr(again) == repr(layer) and again.padding == layer.padding
    y, y2 = layer(x), again(x)
    if dtype == "int8" and layer.quant_max != 127:
        # without VNNI the halved integers do not all survive a second quantization
        assert np.abs(y2 - y).max() < 0.05 * np.abs(y).max()
    else:
        np.testing.assert_array_equal(y2, y)
    same = tfcore.Conv1d(rand(rng, 4, 2, 4), padding="same")
    assert pickle.loads(pickle.dumps(same)).padding == ((1, 2),)


_WHISPER_STEM_CHILD = """
import numpy as np, tfcore
rng = np.random.default_rng(0)
w = (rng.standard_normal((512, 512, 3)) * 0.02).astype(np.float32)  # Whisper base's conv2
layer = tfcore.Conv1d(w, np.zeros(512, np.float32), stride=2, padding=1, activation="gelu")
x = rng.standard_normal((1, 512, 3000)).astype(np.float32)
print("CALLS", flush=True)
a = layer(x)
b = layer(x)
print("SAME", bool(np.array_equal(a, b)), flush=True)
"""


def test_long_maps_run_an_optimised_kernel_not_the_reference():
    """oneDNN's AVX2 convolution (brgconv) picks its output-channel block from the output
    length too: weights packed for the representative call and run on Whisper's 1500-long
    stride-2 stem fell to oneDNN's reference convolution (~100x slower). The layer repacks for
    such lengths (once, kept in the layer): no reference convolution runs, and the first
    (repacking) and the second (cached) call agree."""
    import os
    import subprocess
    import sys

    from conftest import package_parent

    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ONEDNN_VERBOSE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _WHISPER_STEM_CHILD],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=package_parent(),  # the tfcore under test (a source checkout as cwd would shadow it)
    )
    assert out.returncode == 0, out.stderr[-3000:]
    calls = out.stdout.split("CALLS", 1)[1]
    convs = [line for line in calls.splitlines() if "exec,cpu,convolution" in line]
    assert len(convs) == 2, calls[-2000:]
    assert not any(",ref" in line for line in convs), convs
    assert "SAME True" in calls


@pytest.mark.parametrize("length", [1500, 3000, 37])
def test_long_whisper_stem_matches_torch(rng, length):
    """The Whisper stem's geometry at lengths whose kernel wants another weight layout than
    the packed one (repacked) and at a short one (packed), from several threads at once."""
    w = rand(rng, 512, 512, 3, scale=(512 * 3) ** -0.5)  # Whisper base's conv2
    b = rand(rng, 512)
    x = rand(rng, 1, 512, length)
    layer = tfcore.Conv1d(w, b, stride=2, padding=1, activation="gelu")
    with torch.no_grad():
        ref = torch.nn.functional.gelu(
            torch.nn.functional.conv1d(
                torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=2, padding=1
            )
        ).numpy()
    results = [None] * 3

    def work(i):
        results[i] = layer(x)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for y in results:
        assert np.abs(y - ref).max() < tol(w)  # the fp32 bound of the other conv tests
    assert np.abs(layer(x) - ref).max() < tol(w)
